"""A forged ledger entry, seen through the real CLI and a real `evault serve`: fsck names it,
no checkpoint is signed over it, and the service reports itself not ready, saying why."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.api.service_fixtures import free_port
from tests.ledger_forgery import connect_as, forge_appended_entry

EVAULT = [sys.executable, "-m", "api.cli"]


def _run(data: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EVAULT, "--data", str(data), *args], capture_output=True, text=True, env=env, timeout=120
    )


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


async def _forge(dsn: str, role: str) -> int:
    conn = await connect_as(dsn, role)
    try:
        source = await conn.fetchval("SELECT max(idx) FROM ledger_entries WHERE kind = 'note'")
        return await forge_appended_entry(conn, source, {"text": "forged"})
    finally:
        await conn.close()


@pytest.mark.parametrize("role", ["evault_app", "superuser"])
def test_attack_forged_entry_stops_checkpoints_and_readiness(
    tmp_path: Path, pg_dsn: str, role: str
) -> None:
    data = tmp_path / "data"
    env = dict(os.environ, EVAULT_DATABASE_DSN=pg_dsn)
    assert _run(data, "init", env=env).returncode == 0
    assert _run(data, "ledger", "note", "one", "two", env=env).returncode == 0
    log_before = (data / "checkpoints.log").read_text()
    forged = asyncio.run(_forge(pg_dsn, role))

    fsck = _run(data, "ledger", "fsck", env=env)
    assert fsck.returncode == 1, fsck.stdout
    assert f"first bad index {forged}" in fsck.stdout, fsck.stdout
    cp = _run(data, "ledger", "checkpoint", env=env)
    assert cp.returncode != 0 and f"entry {forged}" in cp.stdout + cp.stderr
    assert (data / "checkpoints.log").read_text() == log_before

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (data / "serve.log").open("w") as log:
        proc = subprocess.Popen(
            [*EVAULT, "--data", str(data), "serve", "--listen", f"127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            status, body = 0, b""
            while time.monotonic() < deadline and status != 503:
                assert proc.poll() is None, (data / "serve.log").read_text()
                with contextlib.suppress(OSError):
                    status, body = _get(url + "/readyz")
                time.sleep(0.2)
            assert status == 503, (status, body, (data / "serve.log").read_text())
            ready = json.loads(body)
            reason = f"checkpoints stopped: entry {forged} not authenticated"
            assert ready["checks"]["ledger_checkpoints"] == reason
            _, metrics = _get(url + "/metrics")
            assert b"evault_ledger_checkpoints_stopped 1.0" in metrics
            assert b'evault_integrity_failures_total{source="checkpointer"} 1.0' in metrics
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert f"entry {forged} not authenticated" in (data / "serve.log").read_text()
    assert (data / "checkpoints.log").read_text() == log_before
