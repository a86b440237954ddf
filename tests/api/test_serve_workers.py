"""`evault serve --workers 3` as a user runs it: real processes on the embedded PostgreSQL, real
HTTP on one port.

Which process answered a request is observed from outside through the per-process metric
files the service keeps in ``<data>/run/metrics`` (prometheus_client's multiprocess files, one
per pid): nothing is added to the responses for the test.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api.service_fixtures import free_port

CLI = [sys.executable, "-m", "api.cli"]
WORKERS = 3
LIST = "/v1/evidence"
PUT = "/v1/docks/{dock}/files/{name}"


@dataclass
class Served:
    data: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    admin: str
    dock: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return (self.data / "serve.log").read_text(errors="replace")[-6000:]

    def children(self) -> set[int]:
        """The pids of the main process's children that are API workers."""
        out = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and b"--worker-fds" in cmd:
                out.add(int(entry.name))
        return out

    def evault(self, *args: str) -> str:
        proc = subprocess.run(
            [*CLI, "--data", str(self.data), *args],
            capture_output=True, text=True, env=self.env, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, f"evault {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout


def served_by(data: Path, route: str, method: str) -> dict[int, float]:
    """Requests to ``route`` answered by each pid, from the per-process histogram files."""
    from prometheus_client.mmap_dict import MmapedDict

    counts: dict[int, float] = {}
    for path in (data / "run" / "metrics").glob("*/histogram_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        d = MmapedDict(str(path), read_mode=True)
        try:
            for key, value, *_ in d.read_all_values():
                _, name, labels, _ = json.loads(key)
                if (
                    name == "evault_http_request_seconds_bucket"
                    and labels.get("route") == route
                    and labels.get("method") == method
                ):  # stored per bucket (not cumulative): their sum is the count
                    counts[pid] = counts.get(pid, 0) + value
        finally:
            d.close()
    return counts


def request(
    svc: Served, method: str, path: str, token: str, body: bytes | None = None, **headers: str
) -> tuple[int, bytes]:
    """One request on a connection of its own (so the kernel may give it to any process)."""
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=60)
    try:
        conn.request(method, path, body, {"Authorization": f"Bearer {token}", **headers})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def until_workers_answer(svc: Served, route: str, method: str, send: object, limit: int) -> None:
    """Call ``send`` (one request each) until a worker answered one, at most ``limit`` times."""
    for _ in range(limit):
        send()  # type: ignore[operator]
        answered = served_by(svc.data, route, method)
        if any(n > 0 for pid, n in answered.items() if pid != svc.proc.pid):
            return
    raise AssertionError(f"no worker answered {method} {route}: {answered}")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("workers") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run(
        [*CLI, "--data", str(data), "init"], check=True, capture_output=True, env=env, timeout=120
    )
    (data / "docks" / "dock-01").mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (data / "serve.log").open("wb")
    proc = subprocess.Popen(
        [*CLI, "--data", str(data), "serve", "--listen", f"127.0.0.1:{port}",
         "--workers", str(WORKERS), "--print-admin-token"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    log.close()
    svc = Served(data, port, env, proc, admin="")
    try:
        deadline = time.monotonic() + 90
        while not svc.admin:
            assert proc.poll() is None, svc.log()
            assert time.monotonic() < deadline, "no admin token: " + svc.log()
            for line in svc.log().splitlines():
                if line.startswith("admin token"):
                    svc.admin = line.rsplit(" ", 1)[1]
            time.sleep(0.2)
        while svc.log().count("API worker serving") < WORKERS - 1:
            assert time.monotonic() < deadline, "workers not serving: " + svc.log()
            time.sleep(0.2)
        svc.evault("principal", "add", "dockw", "--role", "dock", "--dock", "dock-01")
        svc.dock = svc.evault("token", "create", "dockw").split()[0]
        yield svc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in svc.children():
            os.kill(pid, signal.SIGKILL)


def test_lists_are_answered_by_several_processes_and_counted_once(svc: Served) -> None:
    def one(statuses: list[object]) -> None:
        try:
            status, body = request(svc, "GET", LIST, svc.admin)
            statuses.append(status if status == 200 else (status, body[:300]))
        except OSError as exc:
            statuses.append(exc)

    def lists() -> None:
        statuses: list[object] = []
        threads = [threading.Thread(target=one, args=(statuses,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert statuses == [200] * 8, statuses

    until_workers_answer(svc, LIST, "GET", lists, 30)
    # Several processes answered; a scrape (whoever answers it) counts what they all served.
    answered = served_by(svc.data, LIST, "GET")
    assert len([n for n in answered.values() if n > 0]) >= 2, answered
    assert {pid for pid, n in answered.items() if n} <= svc.children() | {svc.proc.pid}
    with urllib.request.urlopen(svc.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("evault_http_request_seconds_count{")
        and f'route="{LIST}"' in ln
        and 'method="GET"' in ln
        and 'status="2xx"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) == sum(answered.values()) >= 8, (line, answered)
    assert "evault_ledger_checkpoint_leader 1.0" in text  # one leader, no pid label
    assert "evault_ledger_entries_total" in text


def test_workers_use_the_main_process_embedded_server(svc: Served) -> None:
    pgdata = str(svc.data / "pg").encode()
    servers = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if b"-D" in cmd and any(arg.rstrip(b"/") == pgdata for arg in cmd):
            servers.append(int(entry.name))
    assert len(servers) == 1, servers  # one postmaster on the data directory
    for pid in svc.children():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert any(v.startswith(b"EVAULT_DATABASE_DSN=") for v in environ), pid


def test_uploads_through_workers_get_receipts_with_covering_checkpoints(svc: Served) -> None:
    receipts: list[dict[str, object]] = []

    def upload() -> None:
        body = os.urandom(2048)
        name = f"CAM1_OFF1_20260101120{len(receipts):03d}_0001.mp4"
        status, raw = request(
            svc, "PUT", f"/v1/docks/dock-01/files/{name}", svc.dock, body,
            **{"X-Content-SHA256": hashlib.sha256(body).hexdigest()},
        )  # fmt: skip
        assert status in (200, 201), (status, raw)
        receipts.append(json.loads(raw))

    until_workers_answer(svc, PUT, "PUT", upload, 30)
    for receipt in receipts:
        note = str(receipt["checkpoint"])
        size = int(note.splitlines()[1])
        assert size > int(str(receipt["ledger_index"])), receipt
    # The uploads are listed, whichever process answers.
    status, raw = request(svc, "GET", LIST + "?limit=100", svc.admin)
    assert status == 200
    listed = {item["id"] for item in json.loads(raw)["items"]}
    assert {r["evidence_id"] for r in receipts} <= listed


def test_one_process_writes_checkpoints_log(svc: Served) -> None:
    lines = [json.loads(x) for x in (svc.data / "checkpoints.log").read_text().splitlines()]
    assert lines, "nothing signed"
    notes = [x["note"] for x in lines]
    assert len(notes) == len(set(notes)), "a checkpoint was written twice"
    sizes = [int(n.splitlines()[1]) for n in notes]
    assert sizes == sorted(set(sizes))
    assert not any(x.get("copied") for x in lines)  # no worker signed one the main copied
    fsck = svc.evault("ledger", "fsck")
    assert fsck.startswith("ok:"), fsck


def test_a_killed_worker_is_started_again(svc: Served) -> None:
    before = svc.children()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        status, _ = request(svc, "GET", "/healthz", svc.admin)
        assert status == 200  # the others keep answering meanwhile
        now = svc.children()
        if victim not in now and len(now) == len(before):
            break
        assert time.monotonic() < deadline, "the worker was not started again: " + svc.log()
        time.sleep(0.2)
    assert "exited with status -9; starting it again" in svc.log()


def test_a_busy_port_is_one_line(svc: Served) -> None:
    proc = subprocess.run(
        [*CLI, "--data", str(svc.data), "serve", "--listen", f"127.0.0.1:{svc.port}",
         "--workers", "2"],
        capture_output=True, text=True, env=svc.env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "already in use" in proc.stderr and "Traceback" not in proc.stderr


def test_sigterm_stops_every_worker(svc: Served) -> None:
    workers = svc.children()
    assert len(workers) == WORKERS - 1
    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(60) == 0, svc.log()
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), pid
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", svc.port)) != 0  # nobody listens any more


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_workers_die_with_a_killed_main_process(pg_dsn: str, tmp_path: Path) -> None:
    """SIGKILL leaves no handler to run: the workers must notice on their own."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["EVAULT_DATABASE_DSN"] = pg_dsn  # a server that outlives the killed process
    subprocess.run(
        [*CLI, "--data", str(data), "init"], check=True, capture_output=True, env=env, timeout=120
    )
    port = free_port()
    log = (data / "serve.log").open("wb")
    proc = subprocess.Popen(
        [*CLI, "--data", str(data), "serve", "--listen", f"127.0.0.1:{port}", "--workers", "3"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    log.close()
    svc = Served(data, port, env, proc, admin="")
    try:
        deadline = time.monotonic() + 90
        while svc.log().count("API worker serving") < 2:
            assert proc.poll() is None and time.monotonic() < deadline, svc.log()
            time.sleep(0.2)
        workers = svc.children()
        assert len(workers) == 2
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in workers):
            assert time.monotonic() < deadline, "workers outlived the main process"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in svc.children():
            os.kill(pid, signal.SIGKILL)
