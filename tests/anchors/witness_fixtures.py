"""Two logs on two databases, each able to act as a witness over real HTTP on loopback (the
witness routes of api.routes_witness in an aiohttp server), for the witness tests."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiohttp import web

from api import problems, routes_witness
from api.routes_witness import WITNESS
from tests.vault_fixtures import TEST_MAC
from vault.anchors.config import AnchorsConfig
from vault.anchors.witness import Witness
from vault.anchors.witness_config import WitnessPeer
from vault.config import DatabaseConfig, LedgerConfig
from vault.db import open_database, with_database
from vault.ledger import Ledger, make_entry
from verify.cosignature import Cosigner
from verify.note import Signer, Verifier


@dataclass
class Log:
    """A ledger, its witness (cosigning for the logs given to :meth:`witness_for`) and the
    URL that witness serves on."""

    name: str
    ledger: Ledger
    cosigner: Cosigner
    tmp: Path
    dsn: str  # a superuser's, for tests that play the database insider
    url: str = ""
    witness: Witness | None = None

    @property
    def origin(self) -> str:
        return self.ledger.signer.name

    def peer(self, **kw: str) -> WitnessPeer:
        """This log's witness as an [[anchors.witnesses]] entry."""
        return WitnessPeer(
            name=kw.get("name", self.name), url=kw.get("url", self.url), vkey=self.cosigner.key.vkey
        )

    async def grow(self, n: int = 1) -> int:
        """Append ``n`` entries and wait for a checkpoint; returns the new size."""
        entries = [make_entry("accessed", {"n": secrets.token_hex(4)}) for _ in range(n)]
        idx = await self.ledger.append(entries, wait_checkpoint=True)
        return idx[-1] + 1


async def _new_db(admin_dsn: str) -> str:
    name = "evault_w_" + secrets.token_hex(6)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return name


async def _drop_db(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@asynccontextmanager
async def open_log(
    admin_dsn: str, tmp: Path, name: str, *, signer: Signer | None = None
) -> AsyncIterator[Log]:
    """A fresh database and ledger of origin ``<name>.test/ledger`` (or ``signer``'s)."""
    db_name = await _new_db(admin_dsn)
    tmp.mkdir(parents=True, exist_ok=True)
    signer = signer or Signer.generate(f"{name}.test/ledger")
    cfg = LedgerConfig(origin=signer.name, checkpoint_interval=0.0, batch_wait=0.0)
    dsn = with_database(admin_dsn, db_name)
    try:
        async with open_database(DatabaseConfig(dsn=dsn), tmp) as db:
            ledger = Ledger(db.pool, signer, cfg, tmp / "checkpoints.log", mac=TEST_MAC)
            try:
                yield Log(name, ledger, Cosigner.generate(f"{name}.test/witness"), tmp, dsn)
            finally:
                await ledger.close()
    finally:
        await _drop_db(admin_dsn, db_name)


@asynccontextmanager
async def serving_witness(log: Log, *logs: Verifier) -> AsyncIterator[Log]:
    """Serve ``log``'s witness of ``logs`` on a loopback port (sets ``log.url``)."""
    log.witness = Witness(
        log.ledger.pool, log.cosigner, {v.name: v for v in logs}, log.tmp / "witness.state"
    )
    app = web.Application(middlewares=[problems.problem_middleware])
    problems.setup(app)
    app[WITNESS] = log.witness
    app.add_routes(routes_witness.routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    log.url = f"http://127.0.0.1:{port}"
    try:
        yield log
    finally:
        await runner.cleanup()


def anchors(*peers: WitnessPeer) -> AnchorsConfig:
    return AnchorsConfig(
        witnesses=peers,
        witness_timeout=1.0,
        witness_retry_seconds=0.05,
        witness_retry_max_seconds=0.2,
    )
