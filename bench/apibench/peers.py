"""What a user would run instead of the service, started by the bench on loopback: nginx serving
the same object files, pgbench running the service's list statement, a bare upload receiver."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from apibench.common import pct
from apibench.service import free_port

# -- nginx -----------------------------------------------------------------------------------

_NGINX_CONF = """\
{user}worker_processes auto;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    default_type video/mp4;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


def nginx_binary() -> str | None:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@contextlib.contextmanager
def nginx(files: dict[str, str], tmp: Path) -> Iterator[tuple[str, int]]:
    """nginx (Debian's package; ``sendfile on``, its default worker count: one per core) on a
    free loopback port with a temporary config, serving each ``files`` path under ``/NAME``
    (symlinks to the very object files); yields (URL, master PID)."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is missing (`make nginx` installs Debian's package)")
    home = tmp / "nginx"
    root = home / "root"
    root.mkdir(parents=True)
    for name, path in files.items():
        (root / name).symlink_to(path)
    port = free_port()
    # as root, nginx's workers would drop to `nobody`, who cannot read the blob store (0400)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = home / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(user=user, tmp=home, port=port, root=root))
    proc = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(home), "-e", str(home / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError("nginx exited: " + (home / "error.log").read_text())
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("nginx not listening in 20 s")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful: the workers finish, then exit
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (nginx's workers)."""
    out = [pid]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                stat = (proc / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                    out.append(int(proc.name))
    return out


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) of these processes so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def reaped_cpu(pid: int) -> float:
    """CPU seconds of the exited, waited-for children of ``pid`` (cutime + cstime)."""
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return 0.0


# -- pgbench ---------------------------------------------------------------------------------


def pgbench_binary() -> str | None:
    """pgbench of the pgserver wheel (the embedded server's version), else the system's."""
    with contextlib.suppress(ImportError):
        import pgserver  # type: ignore[import-untyped]

        shipped = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
        if shipped.exists():
            return str(shipped)
    for candidate in (shutil.which("pgbench"), "/usr/bin/pgbench"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _literal(value: object) -> str:
    """A list-statement value as pgbench's text parameter (PostgreSQL infers the type)."""
    if isinstance(value, list | tuple | frozenset | set):
        return "{" + ",".join(f'"{v}"' for v in value) + "}"
    return str(value)


def pgbench_script(sql: str, values: list[object], case_at: int, width: int, n_cases: int) -> str:
    """A pgbench script running ``sql`` with ``values`` inlined as ``-D`` variables, except
    value ``case_at`` (0-based), the case: a random one per transaction, formatted in SQL the
    way the bench names cases (``BENCH-`` + zero-padded number)."""
    out = sql
    case = f"('BENCH-' || lpad((:case)::text, {width}, '0'))"
    for i in range(len(values), 0, -1):  # $10 before $1
        out = out.replace(f"${i}", case if i - 1 == case_at else f":p{i}")
    return f"\\set case random(0, {n_cases - 1})\n{out};\n"


def pgbench_defines(values: list[object], case_at: int) -> list[str]:
    args = []
    for i, v in enumerate(values, 1):
        if i - 1 != case_at:
            args += ["-D", f"p{i}={_literal(v)}"]
    return args


def run_pgbench(
    dsn: str, role: str, script: str, defines: list[str], clients: int, seconds: float, tmp: Path
) -> dict[str, float]:
    """pgbench ``-M prepared`` (a prepared statement per connection, as asyncpg does) with
    ``clients`` connections on 2 threads for ``seconds``, as ``role`` (the service's own
    database role); latency percentiles from its per-transaction log."""
    binary = pgbench_binary()
    if binary is None:
        raise RuntimeError("pgbench is missing (the pgserver wheel and PostgreSQL ship it)")
    work = tmp / "pgbench"
    work.mkdir(exist_ok=True)
    (work / "list.sql").write_text(script)
    env = {**os.environ, "PGOPTIONS": f"-c role={role}"}
    command = [binary, "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2))]
    command += ["-T", str(max(1, round(seconds))), "-f", str(work / "list.sql"), *defines]
    command += ["-l", "--log-prefix", str(work / "tx"), dsn]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=work, check=False)
    if done.returncode:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr or done.stdout}")
    latencies: list[float] = []
    failed = 0
    for log in work.glob("tx*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if fields[2] in ("failed", "skipped"):
                failed += 1
            else:
                latencies.append(int(fields[2]) / 1e6)
        log.unlink()
    rate = next(
        (
            float(x.split("=", 1)[1].split()[0])
            for x in done.stdout.splitlines()
            if x.startswith("tps =")
        ),
        float("nan"),
    )
    return {
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "rate": rate,
        "requests": len(latencies),
        "errors": failed,
    }


# -- the bare upload receiver ----------------------------------------------------------------


@contextlib.contextmanager
def bare_receiver(folder: Path) -> Iterator[tuple[str, int]]:
    """``apibench/receiver.py`` writing into ``folder``; yields (URL, PID)."""
    script = Path(__file__).with_name("receiver.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield f"http://127.0.0.1:{int(proc.stdout.readline())}", proc.pid
    finally:
        proc.kill()
        proc.wait()


# -- Ceph RGW (optional) ---------------------------------------------------------------------


@contextlib.contextmanager
def rgw(folder: Path) -> Iterator[tuple[Callable[[], str], list[int]]]:
    """The tests' single-node Ceph (``tests/storage/ceph_fixture.py``: one monitor, one
    bluestore OSD, radosgw) started in ``folder``; yields a function returning a new presigned
    PUT URL (path style, SigV4, unsigned payload: the same plain HTTP PUT as the other sides)
    into a bucket made for the bench, and the PIDs of Ceph's daemons. ``RuntimeError`` when
    Ceph is not installed."""
    sys.path.append(str(Path(__file__).resolve().parents[2] / "tests" / "storage"))
    from ceph_fixture import missing, start  # type: ignore[import-not-found]

    reason = missing()
    if reason:
        raise RuntimeError(reason)
    ceph = start(folder)
    try:
        import botocore.session
        from botocore.config import Config as BotoConfig

        client = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=ceph.endpoint,
            region_name=ceph.region,
            aws_access_key_id=ceph.access_key,
            aws_secret_access_key=ceph.secret_key,
            config=BotoConfig(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                request_checksum_calculation="when_required",
            ),
        )
        bucket = "bench-upload"
        client.create_bucket(Bucket=bucket)
        keys = iter(range(1 << 30))

        def url() -> str:
            params = {"Bucket": bucket, "Key": f"upload-{next(keys)}"}
            return str(client.generate_presigned_url("put_object", Params=params, ExpiresIn=3600))

        yield url, [proc.pid for proc in ceph.procs.values()]
    finally:
        ceph.stop()
