"""PostgreSQL going away under a running `evault serve` (its embedded server): every route is a
503 problem+json with Retry-After and /readyz a 503 naming the database, and the service
recovers by itself when the database is back; after the server is SIGKILLed, `evault serve`
starts again every time (stale postmaster.pid and socket lock included)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.api.http_fixtures import World, seed_people
from tests.api.service_fixtures import Service, free_port, running_service

# Routes that need the database, and who asks (casesys's token is cached by the service before
# the database stops, so the route itself reaches the database; legal's is not).
ROUTES = [
    ("GET", "/v1/cases", "casesys", None),
    ("GET", "/v1/cases/C1", "casesys", None),
    ("GET", "/v1/evidence", "casesys", None),
    ("PUT", "/v1/cases/DOWN-1", "casesys", b'{"title": "t"}'),
    ("GET", "/v1/jobs/1", "casesys", None),
    ("GET", "/ledger/checkpoint", None, None),
    ("GET", "/v1/cases", "legal", None),  # a token not used before: not 401, but 503
]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")}
    env["PYTHONOPTIMIZE"] = "1"
    return env


def _pg_ctl(pgdata: Path, *args: str) -> None:
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(list(args), pgdata=pgdata, user=user, timeout=60)


def _postmaster(pgdata: Path) -> list[str]:
    return (pgdata / "postmaster.pid").read_text().splitlines()


@contextmanager
def _serve(data: Path, env: dict[str, str]) -> Iterator[Service]:
    """`evault serve` on an initialised data directory, ready; stopped afterwards."""
    port = free_port()
    log = (data / "serve.log").open("a")
    cli = [sys.executable, "-m", "api.cli", "--data", str(data)]
    proc = subprocess.Popen(
        [*cli, "serve", "--listen", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    svc = Service(url=f"http://127.0.0.1:{port}", data=data, env=env, proc=proc)
    try:
        deadline = time.monotonic() + 120
        while not _ready(svc):
            assert proc.poll() is None, (data / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (data / "serve.log").read_text()[-3000:]
            time.sleep(0.3)
        yield svc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _ready(svc: Service) -> bool:
    try:
        return World(svc).call("GET", "/readyz").status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("dbdown") / "data"
    try:
        with running_service(data, None, _env()) as svc:
            svc.env = _env()
            w = World(svc)
            w.tokens = asyncio.run(seed_people(svc))
            yield w
    finally:
        with contextlib.suppress(Exception):  # whatever state a test left it in
            _pg_ctl(data / "pg", "-m", "immediate", "-w", "stop")


def _all_unavailable(w: World) -> None:
    for method, path, who, body in ROUTES:
        r = w.call(method, path, who=who, body=body, headers={"X-Request-Id": "down-1"})
        assert r.status == 503, (path, r.status, r.body[:300])
        problem = r.problem()
        assert problem["status"] == 503 and "unavailable" in problem["type"]
        assert r.headers.get("retry-after", "").isdigit(), r.headers
        assert r.headers["x-request-id"] == "down-1"
    ready = w.call("GET", "/readyz")
    assert ready.status == 503 and ready.headers.get("retry-after", "").isdigit()
    checks = json.loads(ready.body)["checks"]
    assert checks["database"].startswith("unavailable"), checks


def _wait_ready(w: World, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while w.call("GET", "/readyz").status != 200:
        assert time.monotonic() < deadline, (w.svc.data / "serve.log").read_text()[-3000:]
        time.sleep(0.3)


def test_database_stopped_is_503_problem_and_recovers_by_itself(world: World) -> None:
    w = world
    pgdata = w.svc.data / "pg"
    assert w.call("GET", "/v1/cases", who="casesys").status == 200
    socket_dir = _postmaster(pgdata)[4]
    _pg_ctl(pgdata, "-m", "fast", "-w", "stop")
    try:
        _all_unavailable(w)
        _all_unavailable(w)  # and again: nothing is stuck or crashed meanwhile
    finally:
        _pg_ctl(pgdata, "-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(pgdata / "log"), "start")  # fmt: skip
    _wait_ready(w)
    assert w.call("GET", "/v1/cases", who="casesys").status == 200
    assert w.call("PUT", "/v1/cases/DOWN-1", who="casesys", body=b'{"title": "t"}').status == 201
    log = (w.svc.data / "serve.log").read_text()
    assert "Traceback" not in log[log.index("down-1") :], "an outage is not a bug"


def test_killed_postgres_then_the_service_starts_every_time(world: World) -> None:
    """SIGKILL the postmaster under the running service: 503s; then restart `evault serve`
    (which starts the embedded server again) — repeatedly, and once with the dead server's
    pid taken by another program."""
    w = world
    data, env = w.svc.data, w.svc.env
    pgdata = data / "pg"
    _wait_ready(w)
    w.svc.proc.send_signal(signal.SIGTERM)  # the fixture's service: replaced below
    w.svc.proc.wait(60)
    for round_ in range(4):
        with _serve(data, env) as svc:
            v = World(svc, w.tokens)
            r = v.call("PUT", f"/v1/cases/KILL-{round_}", who="casesys", body=b'{"title": "k"}')
            assert r.status == 201, (r.status, r.body)
            os.kill(int(_postmaster(pgdata)[0]), signal.SIGKILL)
            deadline = time.monotonic() + 30
            while (status := v.call("GET", "/v1/cases", who="casesys").status) != 503:
                assert time.monotonic() < deadline, status
                time.sleep(0.2)
            assert v.call("GET", "/readyz").status == 503
        if round_ == 3:  # a live process that is no postgres now holds the recorded pid
            lines = _postmaster(pgdata)
            (pgdata / "postmaster.pid").write_text("\n".join([str(os.getpid()), *lines[1:]]))
    with _serve(data, env) as svc:
        v = World(svc, w.tokens)
        assert v.call("GET", "/v1/cases/KILL-3", who="casesys").status == 200
