"""The embedded PostgreSQL after a crash: started again every time, and a live server's lock
files are never touched."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import asyncpg
import pytest

from vault.db import EmbeddedServer, remove_stale_pidfile
from vault.retry import backoff


def _pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])


async def test_attack_sigkilled_postgres_starts_again_every_time(tmp_path: Path) -> None:
    """SIGKILL the postmaster, then start again, eight times (the last with its pid now held
    by a live program that is not postgres): every start answers."""
    pgdata = tmp_path / "pg"
    for round_ in range(8):
        server = EmbeddedServer(pgdata)
        dsn = await server.start()
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
        os.kill(_pid(pgdata), signal.SIGKILL)
        # the handle is that of a dead server: forget it as a crashed process would
        server._server = None
        from pgserver.postgres_server import PostgresServer

        PostgresServer._instances.pop(pgdata.resolve(), None)
        if round_ == 6:
            lines = (pgdata / "postmaster.pid").read_text().split("\n")
            (pgdata / "postmaster.pid").write_text("\n".join([str(os.getpid()), *lines[1:]]))
    last = EmbeddedServer(pgdata)
    try:
        await last.start()
    finally:
        await last.stop()


def test_a_running_servers_pidfile_is_never_removed(pg_admin_dsn: str) -> None:
    if os.environ.get("EVAULT_TEST_DSN"):
        pytest.skip("needs the session's embedded server")
    from pgserver.postgres_server import PostgresServer

    running = [
        s for s in PostgresServer._instances.values() if s.get_uri("postgres") == pg_admin_dsn
    ]
    assert running, "the session's server is in this process"
    for server in running:
        pidfile = server.pgdata / "postmaster.pid"
        before = pidfile.read_text()
        assert remove_stale_pidfile(server.pgdata) is False
        assert pidfile.read_text() == before


def test_backoff_doubles_is_capped_and_never_overflows() -> None:
    assert [backoff(a, 0.5, 10.0) for a in (1, 2, 3, 4, 5, 6)] == [0.5, 1, 2, 4, 8, 10]
    assert backoff(10**9, 2.0, 3600.0) == 3600.0
    assert backoff(0, 2.0, 60.0) == 2.0
