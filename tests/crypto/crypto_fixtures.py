"""Helpers for the encryption-at-rest tests: storage from the one factory, on a real database."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.acquire import Acquirer
from ingest.config import DockConfig
from ingest.quarantine import Quarantine
from vault.access import principals
from vault.access import state as access_state
from vault.config import DatabaseConfig, KeysConfig, LedgerConfig, StoreConfig
from vault.db import Database, open_database
from vault.jobs import JobRunner
from vault.keys.hostmac import HostMac
from vault.ledger import Ledger
from vault.policy.decide import Principal, Role
from vault.policy.labels import Caveat, Level
from vault.storage.backend import ObjectStore
from vault.storage.content import Readable
from vault.storage.keystore_db import insert_key
from vault.storage.storage import Storage, open_objects, open_storage
from verify.note import Signer

TEST_MAC = HostMac(bytes([7]) * 32)  # the test suite's host secret (every process)

ORIGIN = "test.evidence-vault.local/ledger"
CHUNK = 4096
MARK = bytes(range(64))  # a known 64-byte plaintext run
NAME_FMT = "DEV01_OFF123_2026010112{:02d}00.mp4"


@dataclass
class Cfg:
    """What ``open_storage`` reads of a configuration."""

    data: Path
    store: StoreConfig = field(default_factory=StoreConfig)
    keys: KeysConfig = field(default_factory=lambda: KeysConfig(chunk_size=CHUNK))

    def path(self, p: Path) -> Path:
        return p if p.is_absolute() else self.data / p


@dataclass
class Env:
    db: Database
    ledger: Ledger
    cfg: Cfg
    storage: Storage
    acq: Acquirer
    tmp: Path
    objects: ObjectStore | None = None  # the S3 store, when the test runs on one

    async def rows(self, sql: str, *args: Any) -> list[Any]:
        return list(await self.db.pool.fetch(sql, *args))

    async def entries(self, kind: str) -> list[dict[str, Any]]:
        rows = await self.rows("SELECT data FROM ledger_entries WHERE kind = $1 ORDER BY idx", kind)
        return [json.loads(bytes(r["data"])) for r in rows]

    def reopen(self) -> Storage:
        """A fresh storage (new KEK store: nothing cached) on the same data."""
        return open_storage(self.cfg, self.db.pool, self.objects)

    async def seal(self, data: bytes) -> str:
        """Store ``data`` sealed with its key row, as an acquisition would."""
        blob = self.storage.sealer.seal_chunks([data])
        assert await insert_key(self.db.pool, blob.key, blob.chunk_size)
        return blob.sha256


def dock(tmp: Path, dock_id: str = "dock-01", label: str = "secret", **kw: Any) -> DockConfig:
    path = tmp / "docks" / dock_id
    path.mkdir(parents=True, exist_ok=True)
    return DockConfig(id=dock_id, path=path, label=label, **kw)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def plaintext(size: int, marks: int = 8) -> bytes:
    """Random bytes with ``MARK`` planted ``marks`` times, at chunk boundaries and inside."""
    data = bytearray(os.urandom(size))
    for k in range(marks if size >= len(MARK) else 0):
        at = (k * size // max(marks, 1)) if k % 2 else max(0, k * CHUNK - 32)
        at = min(at, size - len(MARK))
        data[at : at + len(MARK)] = MARK
    return bytes(data)


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def store_holds(root: Path, needle: bytes) -> list[Path]:
    """Every file under the blob store ``root`` that contains ``needle`` anywhere."""
    return [p for p in stored_files(root) if needle in p.read_bytes()]


async def read_all(obj: Readable, start: int = 0, end: int | None = None) -> bytes:
    try:
        return b"".join(obj.read_range(start, obj.size if end is None else end))
    finally:
        obj.close()


@asynccontextmanager
async def open_env(
    dsn: str,
    tmp: Path,
    docks: list[DockConfig],
    *,
    with_storage: bool = True,
    store: StoreConfig | None = None,
) -> AsyncIterator[Env]:
    """``store``: another blob store than the file store under ``tmp`` (an S3 bucket)."""
    cfg = Cfg(tmp, store=store or StoreConfig())
    async with open_objects(cfg) as objects, open_database(DatabaseConfig(dsn=dsn), tmp) as db:
        ledger_cfg = LedgerConfig(origin=ORIGIN, checkpoint_interval=0.0)
        ledger = Ledger(
            db.pool, Signer.generate(ORIGIN), ledger_cfg, tmp / "checkpoints.log", mac=TEST_MAC
        )
        state = access_state.install(access_state.AccessState(TEST_MAC, db.pool))
        storage = open_storage(cfg, db.pool, objects)
        quarantine = Quarantine(tmp / "quarantine", ledger)
        acq = Acquirer(
            storage.blobs,
            ledger,
            quarantine,
            docks,
            verifier=ledger.verifier,
            storage=storage if with_storage else None,
        )
        try:
            yield Env(db, ledger, cfg, storage, acq, tmp, objects)
        finally:
            access_state.uninstall(state)
            await ledger.close()


class _Seed:
    id = "admin"
    roles = ("admin", "auditor")
    clearance = "top_secret"
    caveats = ("commercial_secret", "personal_privacy")


async def admin(env: Env) -> Principal:
    await principals.seed(env.db.pool, env.ledger, [_Seed()])
    return await principals.load(env.db.pool, "admin")


async def legal_reviewer(env: Env, boss: Principal, case_id: str, pid: str = "lr-1") -> Principal:
    spec = principals.PrincipalSpec(
        pid, frozenset({Role.LEGAL_REVIEWER}), Level.TOP_SECRET, frozenset(Caveat)
    )
    await principals.add(env.db.pool, env.ledger, boss, spec)
    await principals.assign(env.db.pool, env.ledger, boss, pid, case_id)
    return await principals.load(env.db.pool, pid)


async def drain(env: Env, handlers: dict[str, Any], limit: int = 100) -> int:
    """Run queued jobs of ``handlers`` until none is left; return how many ran."""
    runner = JobRunner(env.db.pool, handlers, worker="t", concurrency=1, lease=60)
    for n in range(limit):
        if not await runner.run_once():
            return n
    raise AssertionError("jobs keep coming")
