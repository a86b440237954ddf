"""PostgreSQL: the embedded server or a DSN, connection with backoff, migrations, the app role.

Guarantees:
- With no DSN, an embedded server from the ``pgserver`` wheel runs in ``<data>/pg``; it is shared
  by every process on that data directory (pgserver counts handles) and stopped when the last
  one exits. Starting it is retried with backoff for up to ``EMBEDDED_START_SECONDS`` (a server
  killed a moment ago leaves backends exiting and a ``postmaster.pid`` behind); a
  ``postmaster.pid`` whose process is gone, a zombie or not a postgres server is removed, but
  never while a postgres process still works in that directory.
- ``is_outage`` (``OUTAGES`` and a closed connection or pool) says an exception means the
  database (or the way to it) is down, as opposed to a bug or a refused statement: callers map
  exactly these to ``Unavailable`` (503, retry).
- Migrations are applied at start in one transaction under an advisory lock, each recorded in
  ``schema_migrations``; a database whose schema is newer than this code is refused
  (:class:`SchemaTooNew`) before anything is changed.
- The pool acts as the app role (a session default set at connection start, so a pool reset
  keeps it): it owns no ledger table and cannot update, delete or truncate entries or checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from vault.config import DatabaseConfig
from vault.errors import ConfigError, SchemaTooNew, Unavailable
from vault.retry import backoff
from vault.schema import APPEND_ONLY_TABLES

log = logging.getLogger("evault.db")

# A connection, whether taken from a pool or opened alone.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
# Anything that runs a query: a pool (one statement per connection taken) or a connection.
Db: TypeAlias = "asyncpg.Pool[asyncpg.Record] | Conn"

MIGRATION_LOCK = 0x65766D67  # "evmg"
EMBEDDED_DB = "evault"
_ROLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
EMBEDDED_START_SECONDS = 60.0

OUTAGES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # refused, lost, rejected (includes "does not exist")
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up, cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # disk full, out of memory, too many clients
    OSError,  # socket gone, connection refused or reset
    TimeoutError,  # connect or pool acquire timed out
)
"""The database is unavailable: retry later. Anything else from a query is a bug or a refusal."""


def is_outage(exc: BaseException) -> bool:
    """``exc`` means the database is down or the pool closed under the caller (shutdown), not a
    bug: one of ``OUTAGES``, asyncpg's InterfaceError about a closed connection or pool (its
    other InterfaceErrors are misuse, i.e. bugs), or asyncpg's InternalClientError (its protocol
    state confused: raised when a connection the server is ending goes back to the pool, e.g.
    "cannot switch to state 15; another operation (2) is in progress" on a fast shutdown)."""
    if isinstance(exc, (*OUTAGES, asyncpg.InternalClientError)):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and (
        "closed" in str(exc) or "closing" in str(exc)
    )


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations shipped with this code, in order."""
    out = []
    for res in resources.files("vault.migrations").iterdir():
        m = re.fullmatch(r"(\d{3})_([a-z0-9_]+)\.sql", res.name)
        if m:
            out.append(Migration(int(m[1]), m[2], res.read_text(encoding="utf-8")))
    out.sort(key=lambda m: m.version)
    if [m.version for m in out] != list(range(1, len(out) + 1)):
        raise RuntimeError("migrations must be numbered 001, 002, ... without gaps")
    return out


async def migrate(conn: Conn) -> list[int]:
    """Apply pending migrations in one transaction; return the versions applied."""
    known = migrations()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        newest = max(applied, default=0)
        supported = max((m.version for m in known), default=0)
        if newest > supported:
            raise SchemaTooNew(
                f"the database schema is at version {newest}, this program knows up to "
                f"{supported}: upgrade evidence-vault before starting it against this database"
            )
        done = []
        for m in known:
            if m.version in applied:
                continue
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name
            )
            done.append(m.version)
    return done


async def ensure_app_role(conn: Conn, role: str) -> None:
    """Create the app role where allowed, and grant it what the service needs and no more."""
    if not _ROLE_RE.match(role):
        raise ConfigError(f"database.app_role: {role!r} is not a plain lower-case role name")
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    if not exists:
        try:
            async with conn.transaction():  # a savepoint: a lost race must not abort the caller
                await conn.execute(f"CREATE ROLE {role} NOLOGIN")
        except asyncpg.DuplicateObjectError:
            pass  # created concurrently by another process: same outcome
    me = await conn.fetchval("SELECT current_user")
    if me == role:
        return
    await conn.execute(f"GRANT {role} TO CURRENT_USER")
    await conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    # Grant what is needed and revoke only what must never be held: no revoke-then-grant
    # window, so another process already running as the role is never refused meanwhile.
    tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    for (table,) in tables:
        if table in APPEND_ONLY_TABLES:
            allowed, forbidden = "SELECT, INSERT", "UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES"
        elif table == "schema_migrations":
            allowed, forbidden = "SELECT", "INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES"
        else:
            allowed, forbidden = "SELECT, INSERT, UPDATE, DELETE", "TRUNCATE, TRIGGER, REFERENCES"
        await conn.execute(f"GRANT {allowed} ON TABLE {table} TO {role}")
        await conn.execute(f"REVOKE {forbidden} ON TABLE {table} FROM {role}")
    await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")


class EmbeddedServer:
    """A pgserver instance in ``<data>/pg``, shared by every process on that directory."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    async def start(self) -> str:
        """Start (or join) the server and make sure the database exists; retried with backoff
        within ``EMBEDDED_START_SECONDS``, then ``Unavailable`` with the last cause."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        deadline = time.monotonic() + EMBEDDED_START_SECONDS
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._start_once()
            except Exception as exc:  # retried, then raised as Unavailable with this cause
                with contextlib.suppress(Exception):  # a dead server's handle may not close
                    await self.stop(forget=True)
                delay = backoff(attempt, 0.25, 4.0)
                if time.monotonic() + delay > deadline:
                    raise Unavailable(
                        f"the embedded PostgreSQL in {self.pgdata} did not start: {exc}"
                    ) from exc
                log.warning(
                    "embedded PostgreSQL not answering (attempt %d): %s; retrying in %.2fs",
                    attempt,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _start_once(self) -> str:
        await asyncio.to_thread(_clear_stale, self.pgdata)
        self._server = await asyncio.to_thread(_get_server, self.pgdata)
        admin_dsn: str = self._server.get_uri("postgres")
        conn = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", EMBEDDED_DB):
                # Another process on this data directory may create it first: same outcome.
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await conn.execute(f"CREATE DATABASE {EMBEDDED_DB}")
        finally:
            await conn.close()
        uri: str = self._server.get_uri(EMBEDDED_DB)
        return uri

    async def stop(self, *, forget: bool = False) -> None:
        """Release this process's handle (the server stops with the last one); ``forget``
        also drops pgserver's cached instance so the next start looks at the server afresh."""
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(server.cleanup)
            if forget:
                type(server)._instances.pop(server.pgdata, None)


def _get_server(pgdata: Path) -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (services, CI); its fallback is fine.
        warnings.simplefilter("ignore")
        import pgserver
        from pgserver.postgres_server import PostgresServer

        try:
            return pgserver.get_server(  # type: ignore[attr-defined]
                pgdata, cleanup_mode="stop"
            )
        except BaseException:
            # pgserver caches the instance before its server runs: forget a failed one, or
            # every later attempt in this process would be handed the broken instance.
            PostgresServer._instances.pop(pgdata.expanduser().resolve(), None)
            raise


def _clear_stale(pgdata: Path) -> None:
    """``remove_stale_pidfile`` under pgserver's own start lock (no process is starting the
    server meanwhile, so a fresh postmaster.pid is never mistaken for the stale one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import PostgresServer

    with PostgresServer._lock:
        remove_stale_pidfile(pgdata)


def _proc_state(pid: int) -> tuple[str, str, str] | None:
    """(state letter, command name, working directory) of a live process; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        state = stat[stat.rindex(")") + 2 :].split(" ", 1)[0]
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    except (OSError, ValueError):
        return None
    try:
        cwd = str(Path(f"/proc/{pid}/cwd").readlink())
    except OSError:
        cwd = ""
    return state, comm, cwd


def _postgres_working_in(pgdata: Path) -> bool:
    """A live (not zombie) postgres process has ``pgdata`` as its working directory."""
    target = str(pgdata.resolve())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _proc_state(int(entry.name))
            if found and found[0] != "Z" and found[1].startswith("postgres") and found[2] == target:
                return True
    return False


def remove_stale_pidfile(pgdata: Path) -> bool:
    """Remove ``pgdata/postmaster.pid`` and the socket lock file it names when the server it
    names is certainly not running: the process is gone, a zombie (a killed postmaster nobody
    reaped still "exists" for PostgreSQL's own check), or another program, and no postgres
    process still works in ``pgdata`` (its backends hold the shared memory the file protects).
    True if removed. Only on Linux (/proc); elsewhere PostgreSQL's own stale-lock check applies."""
    pidfile = pgdata / "postmaster.pid"
    if not Path("/proc/self/stat").exists():
        return False
    try:
        lines = pidfile.read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return False
    found = _proc_state(pid)
    alive = found is not None and found[0] != "Z" and found[1].startswith("postgres")
    if alive or _postgres_working_in(pgdata):
        return False
    log.warning("removing the stale %s of process %d (not a running server)", pidfile, pid)
    if len(lines) > 4 and lines[3].strip().isdigit() and lines[4].strip():
        lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(lock.read_text().splitlines()[0]) == pid:
                lock.unlink()
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
    return True


async def connect_with_retry(
    dsn: str, cfg: DatabaseConfig, **kwargs: Any
) -> asyncpg.Connection[asyncpg.Record]:
    """Connect, retrying with exponential backoff; Unavailable with the cause at the end."""
    last: BaseException | None = None
    for attempt in range(1, cfg.connect_attempts + 1):
        try:
            return await asyncpg.connect(dsn, timeout=10, **kwargs)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            last = exc
            if attempt == cfg.connect_attempts:
                break
            delay = backoff(attempt, cfg.connect_backoff, 10.0)
            log.warning(
                "database unreachable (attempt %d): %s; retrying in %.1fs", attempt, exc, delay
            )
            await asyncio.sleep(delay)
    raise Unavailable(
        f"PostgreSQL unreachable after {cfg.connect_attempts} attempts ({_redact(dsn)}): {last}"
    ) from last


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name`` (host, socket and options kept)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _redact(dsn: str) -> str:
    return re.sub(r"://([^:@/]*):[^@/]*@", r"://\1:***@", dsn)


@dataclass
class Database:
    """An open database: a pool acting as the app role, and the owner DSN for admin tasks."""

    pool: asyncpg.Pool[asyncpg.Record]
    dsn: str
    app_role: str


@asynccontextmanager
async def open_database(cfg: DatabaseConfig, data_dir: Path) -> AsyncIterator[Database]:
    """Start or reach PostgreSQL, migrate, and yield a :class:`Database`; stop what was started."""
    embedded = None if cfg.dsn else EmbeddedServer(data_dir / "pg")
    dsn = cfg.dsn if embedded is None else await embedded.start()
    try:
        conn = await connect_with_retry(cfg.migrate_dsn or dsn, cfg)
        try:
            await migrate(conn)
            async with conn.transaction():
                # Serialised with other processes: concurrent GRANTs collide in the catalog.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                await ensure_app_role(conn, cfg.app_role)
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=cfg.pool_size,
            server_settings={"role": cfg.app_role},
        )
        try:
            yield Database(pool=pool, dsn=dsn, app_role=cfg.app_role)
        finally:
            await pool.close()
    finally:
        if embedded is not None:
            await embedded.stop()
