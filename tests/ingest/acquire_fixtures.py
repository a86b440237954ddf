"""Helpers for the acquisition tests: an Acquirer on a real database, docks under tmp_path."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.acquire import Acquirer
from ingest.config import DockConfig
from ingest.quarantine import Quarantine
from vault.access import state as access_state
from vault.config import DatabaseConfig, LedgerConfig
from vault.db import Database, open_database
from vault.keys.hostmac import HostMac
from vault.ledger import Ledger
from vault.storage.blobstore import BlobStore, WriteFault
from verify.note import Signer

TEST_MAC = HostMac(bytes([7]) * 32)  # the test suite's host secret (every process)

ORIGIN = "test.evidence-vault.local/ledger"
NAME = "DEV01_OFF123_20250101120000.mp4"


@dataclass
class Env:
    acq: Acquirer
    ledger: Ledger
    db: Database
    store: BlobStore
    tmp: Path

    async def rows(self, sql: str, *args: Any) -> list[Any]:
        return list(await self.db.pool.fetch(sql, *args))

    async def entries(self, kind: str) -> list[dict[str, Any]]:
        rows = await self.rows("SELECT data FROM ledger_entries WHERE kind = $1 ORDER BY idx", kind)
        return [json.loads(bytes(r["data"])) for r in rows]


def dock(tmp: Path, dock_id: str = "dock-01", **kw: Any) -> DockConfig:
    path = tmp / "docks" / dock_id
    path.mkdir(parents=True, exist_ok=True)
    return DockConfig(id=dock_id, path=path, **kw)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def objects(store: BlobStore) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (store.root / "objects").rglob("*") if p.is_file()}


@asynccontextmanager
async def open_acquirer(
    dsn: str, tmp: Path, docks: list[DockConfig], fault: WriteFault | None = None
) -> AsyncIterator[Env]:
    async with open_database(DatabaseConfig(dsn=dsn), tmp) as db:
        cfg = LedgerConfig(origin=ORIGIN, checkpoint_interval=0.0)
        ledger = Ledger(
            db.pool, Signer.generate(ORIGIN), cfg, tmp / "checkpoints.log", mac=TEST_MAC
        )
        store = BlobStore(tmp / "vault", chunk_size=64 << 10, fault=fault)
        quarantine = Quarantine(tmp / "quarantine", ledger)
        acq = Acquirer(store, ledger, quarantine, docks, verifier=ledger.verifier)
        state = access_state.install(access_state.AccessState(TEST_MAC, db.pool))
        try:
            yield Env(acq, ledger, db, store, tmp)
        finally:
            access_state.uninstall(state)
            await ledger.close()
