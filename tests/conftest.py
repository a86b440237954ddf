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
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from vault.db import migrate, with_database

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def pytest_configure(config: pytest.Config) -> None:
    """With PYTHONDONTWRITEBYTECODE set, every Python process the tests start (hundreds of
    `evault` commands and services) would compile each module it imports again, and pytest
    would rewrite every test module at every run. Bytecode goes instead to a cache of the
    user's (``$XDG_CACHE_HOME/evidence-vault/pycache``, PYTHONPYCACHEPREFIX): the checkout
    stays free of it all the same. The xdist workers and every child inherit the setting from
    this process, which configures before it starts them."""
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        prefix = cache / "evidence-vault" / "pycache"
        try:
            prefix.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError:
            return  # no cache: compiled at every start, as asked
        os.environ.pop("PYTHONDONTWRITEBYTECODE")
        os.environ["PYTHONPYCACHEPREFIX"] = str(prefix)
        sys.dont_write_bytecode = False  # this process too, for the test modules it imports
        sys.pycache_prefix = str(prefix)


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


async def _admin(dsn: str, statement: str) -> None:
    """Run one statement (CREATE/DROP DATABASE) on its own connection to ``dsn``."""
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def pg_template(pg_admin_dsn: str) -> AsyncIterator[str]:
    """Name of a database with every migration applied (by ``vault.db.migrate``, as the
    service does), and nothing else: what ``pg_dsn`` copies. Nobody connects to it after."""
    name = "evault_tpl_" + secrets.token_hex(6)
    await _admin(pg_admin_dsn, f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(with_database(pg_admin_dsn, name))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield name
    finally:
        await _admin(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def pg_dsn(pg_admin_dsn: str, pg_template: str) -> AsyncIterator[str]:
    """A fresh database at the current schema (a copy of ``pg_template``: migrations applied,
    no rows of any test); dropped after the test."""
    name = "evault_t_" + secrets.token_hex(6)
    await _admin(pg_admin_dsn, f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    try:
        yield with_database(pg_admin_dsn, name)
    finally:
        await _admin(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent: shared vectors and docs only exist beside a checkout")
    return SHARED


# -- pytest-xdist: which tests share a worker ---------------------------------------------

# Modules that run longest (real processes killed and restarted, browsers, timed loads): handed
# out first, so that the workers do not wait on one of them at the end of the run.
LONGEST_FIRST = (
    "tests/storage",
    "tests/console",
    "tests/access/test_access_cli.py",
    "tests/access/test_access_noleak.py",
    "tests/ingest/test_acquire_crash.py",
    "tests/api/test_openapi_fuzz.py",
)


def _scope_of(nodeid: str) -> str:
    """A module's tests share a worker (module fixtures start once); so do all of tests/storage,
    so that one Ceph per run starts, not one per worker."""
    path = nodeid.split("::", 1)[0]
    return "tests/storage" if path.startswith("tests/storage/") else path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker: the LONGEST_FIRST scopes first, the rest in their usual order (every
    worker sorts alike, so their collections agree)."""
    if not hasattr(config, "workerinput"):
        return

    def rank(item: pytest.Item) -> int:
        scope = _scope_of(item.nodeid)
        first = [k for k, p in enumerate(LONGEST_FIRST) if scope == p or scope.startswith(p + "/")]
        return first[0] if first else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """With ``--dist loadscope``: whole scopes (see ``_scope_of``) per worker, handed out in
    the workers' collection order (the longest first, see above). Any other ``--dist`` keeps
    xdist's own scheduler."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep the order above, not by number of tests

    class ByModule(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _scope_of(nodeid)

    return ByModule(config, log)
