"""Helpers to open a real ledger on a test database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from vault.config import DatabaseConfig, LedgerConfig
from vault.db import Database, open_database
from vault.keys.hostmac import HostMac
from vault.ledger import Ledger
from verify.note import Signer

TEST_MAC = HostMac(bytes([7]) * 32)  # the test suite's host secret (every process)

ORIGIN = "test.evidence-vault.local/ledger"


@asynccontextmanager
async def open_ledger(
    dsn: str, tmp: Path, *, signer: Signer | None = None, **ledger_cfg: object
) -> AsyncIterator[tuple[Ledger, Database]]:
    cfg = LedgerConfig(origin=ORIGIN, **ledger_cfg)  # type: ignore[arg-type]
    async with open_database(DatabaseConfig(dsn=dsn), tmp) as db:
        ledger = Ledger(
            db.pool, signer or Signer.generate(ORIGIN), cfg, tmp / "checkpoints.log", mac=TEST_MAC
        )
        try:
            yield ledger, db
        finally:
            await ledger.close()
