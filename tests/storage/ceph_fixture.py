"""A real single-node Ceph for the tests: one monitor, one bluestore OSD on a sparse file and
``radosgw`` (beast frontend) on a loopback port, from Debian's packages (``ceph-mon ceph-osd
radosgw ceph-common``; ``make ceph`` installs them).

Run as a script it starts a cluster in a folder and keeps it up until interrupted, printing the
S3 endpoint and credentials as one JSON line::

    python tests/storage/ceph_fixture.py /tmp/ceph-dev

The tests start one cluster per session (``tests/storage/conftest.py``) and make a bucket per
test. Choices, each measured (they are the reasons, keep them):

* bluestore, not memstore: memstore loses everything on a restart and radosgw then hangs;
* ``bluestore block path`` is not set: the OSD creates ``block`` in its data folder (setting the
  path makes a symlink loop);
* ``paxos propose interval`` 0.05: with the default 1 s start-up takes ~17 s instead of a few;
* no ``ceph-mgr``: nothing here needs it (health stays at WARN, which is fine);
* cephx stays on (radosgw does not connect with ``auth ... = none``): one keyring holds the
  keys of the monitor, the admin, the OSD and the gateway, imported by the monitor's mkfs.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = (
    "ceph-authtool",
    "ceph-mon",
    "ceph-osd",
    "radosgw",
    "radosgw-admin",
    "ceph",
    "monmaptool",
)
PACKAGES = "ceph-mon ceph-osd radosgw ceph-common"


def missing() -> str | None:
    """Why a cluster cannot be started here (a missing binary), or None."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return (
            f"Ceph is not installed ({', '.join(absent)} missing): "
            f"`make ceph` or `apt-get install {PACKAGES}`"
        )
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CephCluster:
    """A running single-node cluster and the S3 user made on it."""

    root: Path
    endpoint: str
    access_key: str
    secret_key: str
    region: str = "default"
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_in: float = 0.0

    @property
    def conf(self) -> Path:
        return self.root / "ceph.conf"

    def ceph(self, *args: str, timeout: float = 60) -> str:
        """Run ``ceph`` against this cluster; its stdout."""
        return _run(["ceph", "-c", str(self.conf), *args], timeout)

    def radosgw_admin(self, *args: str, timeout: float = 60) -> str:
        return _run(["radosgw-admin", "-c", str(self.conf), *args], timeout)

    def rss_bytes(self) -> int:
        """Resident memory of the cluster's daemons, summed."""
        total = 0
        for proc in self.procs.values():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def _start_osd_and_gateway(self) -> None:
        c = ["-c", str(self.conf)]
        self.procs["osd.0"] = _daemon(["ceph-osd", *c, "-f", "-i", "0"], self.root)
        _wait(
            lambda: '"num_up_osds":1' in self.ceph("osd", "stat", "-f", "json"),
            60,
            self.root,
            self.procs,
        )
        self.procs["client.rgw"] = _daemon(["radosgw", *c, "-f", "-n", "client.rgw"], self.root)
        _wait(lambda: _answers(self.endpoint), 60, self.root, self.procs)

    def add_gateway(self) -> str:
        """Start one more ``radosgw`` on this cluster, on a port of its own (the same identity
        and pools: it sees every write of the first at once); returns its endpoint. Measured
        here: it answers in about a second. ``restart`` does not bring it back."""
        n = sum(name.startswith("client.rgw") for name in self.procs) + 1
        port = _free_port()
        run = self.root / "run"
        argv = ["radosgw", "-c", str(self.conf), "-f", "-n", "client.rgw"]
        argv += ["--rgw-frontends", f"beast endpoint=127.0.0.1:{port}"]
        argv += [
            "--admin-socket",
            str(run / f"rgw{n}.asok"),
            "--pid-file",
            str(run / f"rgw{n}.pid"),
        ]
        argv += ["--log-file", str(self.root / "log" / f"rgw{n}.log")]
        self.procs[f"client.rgw.{n}"] = _daemon(argv, self.root)
        endpoint = f"http://127.0.0.1:{port}"
        _wait(lambda: _answers(endpoint), 60, self.root, self.procs)
        return endpoint

    def restart(self, sig: int = signal.SIGKILL) -> float:
        """Kill every daemon with ``sig`` (no clean shutdown by default) and start them again
        on the same data and ports; returns the seconds until S3 answered again."""
        self.kill(sig)
        t0 = time.monotonic()
        self.procs = {
            "mon.a": _daemon(["ceph-mon", "-c", str(self.conf), "-f", "-i", "a"], self.root)
        }
        self._start_osd_and_gateway()
        return time.monotonic() - t0

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Signal every daemon and wait for it (SIGKILL after 15 s)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(sig)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self, *, remove: bool = True) -> None:
        """Stop the daemons, remove the folder (unless ``remove`` is False). A cluster whose
        folder is removed is killed at once (SIGKILL): a clean shutdown, some 5 s, would only
        tidy files about to be deleted."""
        self.kill(signal.SIGKILL if remove else signal.SIGTERM)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


def _run(argv: list[str], timeout: float) -> str:
    done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])}... exited {done.returncode}: "
            f"{done.stderr.decode(errors='replace')[-2000:]}"
        )
    return done.stdout.decode()


def _conf(root: Path, fsid: str, mon_v2: int, mon_v1: int, rgw_port: int) -> str:
    return f"""[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{mon_v2},v1:127.0.0.1:{mon_v1}]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
keyring = {root}/keyring
auth allow insecure global id reclaim = false
run dir = {root}/run
admin socket = {root}/run/$name.asok
pid file = {root}/run/$name.pid
log file = {root}/log/$name.log
log to stderr = false
err to stderr = true
mon cluster log file = {root}/log/cluster.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
mon allow pool delete = true
paxos propose interval = 0.05
ms bind port min = 6800
ms bind port max = 7800

[mon]
mon data = {root}/mon/$name
mon initial members = a

[osd]
osd data = {root}/osd/$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 10737418240
bluestore fsck on mkfs = false
bluestore cache autotune = false
bluestore cache size = 67108864
osd memory target = 939524096
osd op num shards = 2
osd op num threads per shard = 1
osd heartbeat grace = 60

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw data = {root}/rgw
rgw thread pool size = 32
rgw dns name = localhost
rgw dynamic resharding = false
"""


def start(root: Path, *, timeout: float = 90.0) -> CephCluster:
    """Make and start a cluster in ``root`` (an absent or empty folder); returns when the S3
    endpoint answers and the S3 user exists. On failure every daemon started is stopped and the
    error names the log folder."""
    t0 = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("run", "log", "mon", "osd", "rgw"):
        (root / sub).mkdir(exist_ok=True)
    fsid = str(uuid.uuid4())
    ports = {_free_port() for _ in range(3)}
    while len(ports) < 3:
        ports.add(_free_port())
    mon_v2, mon_v1, rgw_port = sorted(ports)
    conf = root / "ceph.conf"
    conf.write_text(_conf(root, fsid, mon_v2, mon_v1, rgw_port))
    cluster = CephCluster(
        root=root,
        endpoint=f"http://127.0.0.1:{rgw_port}",
        access_key="EVAULTTEST" + uuid.uuid4().hex[:10].upper(),
        secret_key=uuid.uuid4().hex + uuid.uuid4().hex,
    )
    c = ["-c", str(conf)]
    try:
        keyring = root / "keyring"
        caps = {
            "mon.": ["mon", "allow *"],
            "client.admin": ["mon", "allow *", "osd", "allow *", "mgr", "allow *"],
            "osd.0": ["mon", "allow profile osd", "osd", "allow *"],
            "client.rgw": ["mon", "allow rw", "osd", "allow rwx"],
        }
        for i, (name, cap) in enumerate(caps.items()):
            argv = ["ceph-authtool", str(keyring), *(["--create-keyring"] if i == 0 else [])]
            argv += ["--gen-key", "-n", name]
            for kind, spec in zip(cap[::2], cap[1::2], strict=True):
                argv += ["--cap", kind, spec]
            _run(argv, 30)
        monmap = root / "monmap"
        addrs = f"[v2:127.0.0.1:{mon_v2},v1:127.0.0.1:{mon_v1}]"
        _run(["monmaptool", *c, "--create", "--fsid", fsid, "--addv", "a", addrs, str(monmap)], 30)
        _run(
            [
                "ceph-mon",
                *c,
                "--mkfs",
                "-i",
                "a",
                "--monmap",
                str(monmap),
                "--keyring",
                str(keyring),
            ],
            60,
        )
        cluster.procs["mon.a"] = _daemon(["ceph-mon", *c, "-f", "-i", "a"], root)
        osd_uuid = str(uuid.uuid4())
        osd_id = cluster.ceph("osd", "new", osd_uuid).strip()
        if osd_id != "0":  # the keyring above holds osd.0's key
            raise RuntimeError(f"the first OSD got id {osd_id}, not 0")
        (root / "osd" / osd_id).mkdir()
        _run(["ceph-osd", *c, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid], 120)
        cluster._start_osd_and_gateway()
        cluster.radosgw_admin(
            "user",
            "create",
            "--uid=evault-test",
            "--display-name=evidence-vault tests",
            f"--access-key={cluster.access_key}",
            f"--secret={cluster.secret_key}",
        )
    except BaseException:
        cluster.kill(signal.SIGKILL)
        raise
    cluster.started_in = time.monotonic() - t0
    return cluster


def _daemon(argv: list[str], root: Path) -> subprocess.Popen[bytes]:
    name = argv[0]
    err = open(root / "log" / f"{name}.stderr", "ab")  # noqa: SIM115 - owned by the child
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    finally:
        err.close()


def _die_with_parent() -> None:
    """In the child: SIGKILL when the process that started it ends (a test run killed -9
    leaves no Ceph behind). Linux only; elsewhere nothing."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint, timeout=2) as resp:
            return int(resp.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def _wait(
    ready: object,
    timeout: float,
    root: Path,
    procs: dict[str, subprocess.Popen[bytes]] | None = None,
) -> None:
    assert callable(ready)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except RuntimeError:
            pass
        for name, proc in (procs or {}).items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; logs in {root}/log")
        time.sleep(0.05)
    raise RuntimeError(f"Ceph did not become ready in {timeout:.0f} s; logs in {root}/log")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} FOLDER   (starts a single-node Ceph there)", file=sys.stderr)
        return 2
    reason = missing()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    cluster = start(Path(argv[1]).resolve())
    info = {
        "endpoint": cluster.endpoint,
        "region": cluster.region,
        "access_key": cluster.access_key,
        "secret_key": cluster.secret_key,
        "conf": str(cluster.conf),
        "started_in_s": round(cluster.started_in, 2),
        "rss_bytes": cluster.rss_bytes(),
        "pids": {name: p.pid for name, p in cluster.procs.items()},
    }
    print(json.dumps(info), flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop(remove=False)
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main(sys.argv))
