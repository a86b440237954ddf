"""Shared fixtures: a real PostgreSQL for every test that needs one.

With ``EVAULT_TEST_DSN`` set, tests use that server; otherwise one embedded server (pgserver)
is started for the session. Either way each test gets a fresh database, dropped afterwards:
``pg_dsn`` a copy of a template migrated once per session (``CREATE DATABASE ... TEMPLATE``
costs a file copy where running every migration again costs far more); the services the HTTP
tests start (tests/api/http_fixtures.py) still migrate an empty database of their own.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from vault.db import migrate, with_database

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """DSN of a server where tests may create databases."""
    dsn = os.environ.get("EVAULT_TEST_DSN")
    if dsn:
        yield dsn
        return
    import pgserver

    tmp = Path(tempfile.mkdtemp(prefix="evault-test-pg-"))
    server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
    try:
        yield str(server.get_uri("postgres"))
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
async def pg_template(pg_admin_dsn: str) -> AsyncIterator[str]:
    """Name of a database with every migration applied (by ``vault.db.migrate``, as the
    service does), and nothing else: what ``pg_dsn`` copies. Nobody connects to it after."""
    name = "evault_tpl_" + secrets.token_hex(6)
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    try:
        conn = await asyncpg.connect(with_database(pg_admin_dsn, name))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield name
    finally:
        admin = await asyncpg.connect(pg_admin_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


@pytest.fixture
async def pg_dsn(pg_admin_dsn: str, pg_template: str) -> AsyncIterator[str]:
    """A fresh database at the current schema (a copy of ``pg_template``: migrations applied,
    no rows of any test); dropped after the test."""
    name = "evault_t_" + secrets.token_hex(6)
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    finally:
        await admin.close()
    try:
        yield with_database(pg_admin_dsn, name)
    finally:
        admin = await asyncpg.connect(pg_admin_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent: shared vectors and docs only exist beside a checkout")
    return SHARED
