"""Wrapped data keys in PostgreSQL (``object_keys``, migration 006) and key rotation.

Guarantees:

* ``PgKeyRows`` implements ``vault.storage.keyring.KeyRows``: ``replace`` is a compare-and-swap
  (the row changes only while it still holds the old KEK id and blob), so a rotation never
  overwrites a row that changed meanwhile, and a reader always sees one complete, valid row.
* ``insert_key`` never replaces a row: the first sealed object stored for a content stays the
  live one; ``False`` tells the caller its own sealed object lost and may be removed.
* ``rotate_keys`` runs ``vault.storage.keyring.rotate_all`` (new KEK, data keys re-wrapped without
  touching content, old KEKs retired only when no row names them) and then appends one
  ``key-rotated`` ledger entry with what it did (KEK ids and counts; who ran it is committed).
  Only an ``admin`` may rotate (refusals are recorded).
* Nothing here logs or returns a data key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from vault.access.principals import require_admin
from vault.db import Db
from vault.ledger import LedgerWriter, make_entry
from vault.policy.decide import Principal
from vault.storage.kek import FileKekStore, KekStore
from vault.storage.keyring import ObjectKey, Rewrapped, RotationReport, WrappedKey, rotate_all

__all__ = [
    "KekUse",
    "PgKeyRows",
    "delete_key",
    "insert_key",
    "kek_usage",
    "key_for",
    "rotate_keys",
]


def _row(r: asyncpg.Record) -> ObjectKey:
    return ObjectKey(
        bytes(r["object_id"]), r["sha256"], WrappedKey(r["kek_id"], bytes(r["wrapped"]))
    )


class PgKeyRows:
    """``KeyRows`` over the ``object_keys`` table."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def kek_ids(self) -> Sequence[str]:
        rows = await self._db.fetch("SELECT DISTINCT kek_id FROM object_keys ORDER BY kek_id")
        return [r["kek_id"] for r in rows]

    async def under(self, kek_id: str, after: bytes | None, limit: int) -> Sequence[ObjectKey]:
        rows = await self._db.fetch(
            "SELECT object_id, sha256, kek_id, wrapped FROM object_keys WHERE kek_id = $1"
            " AND ($2::bytea IS NULL OR object_id > $2) ORDER BY object_id LIMIT $3",
            kek_id,
            after,
            limit,
        )
        return [_row(r) for r in rows]

    async def replace(self, change: Rewrapped) -> bool:
        status: str = await self._db.execute(
            "UPDATE object_keys SET kek_id = $4, wrapped = $5, updated_at = now()"
            " WHERE object_id = $1 AND kek_id = $2 AND wrapped = $3",
            change.object_id,
            change.old.kek_id,
            change.old.blob,
            change.new.kek_id,
            change.new.blob,
        )
        return status == "UPDATE 1"

    async def in_use(self, kek_id: str) -> bool:
        return bool(
            await self._db.fetchval(
                "SELECT EXISTS (SELECT 1 FROM object_keys WHERE kek_id = $1)", kek_id
            )
        )


async def insert_key(db: Db, key: ObjectKey, chunk_size: int) -> bool:
    """Store the wrapped data key of a sealed object; False if this content has one already."""
    status: str = await db.execute(
        "INSERT INTO object_keys (sha256, object_id, kek_id, wrapped, chunk_size)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sha256) DO NOTHING",
        key.sha256,
        key.object_id,
        key.wrapped.kek_id,
        key.wrapped.blob,
        chunk_size,
    )
    return status == "INSERT 0 1"


async def key_for(db: Db, sha256: str) -> ObjectKey | None:
    """The live sealed object's key for this content, or None when it is stored plain."""
    row = await db.fetchrow(
        "SELECT object_id, sha256, kek_id, wrapped FROM object_keys WHERE sha256 = $1", sha256
    )
    return None if row is None else _row(row)


async def delete_key(db: Db, key: ObjectKey) -> bool:
    """Forget this sealed object's key (after its content was stored plain again)."""
    status: str = await db.execute(
        "DELETE FROM object_keys WHERE sha256 = $1 AND object_id = $2", key.sha256, key.object_id
    )
    return status == "DELETE 1"


async def rotate_keys(
    db: Db,
    ledger: LedgerWriter,
    keks: KekStore,
    actor: Principal,
    *,
    grace_seconds: float = 5.0,
    retire_old: bool = True,
) -> tuple[RotationReport, int]:
    """Rotate the KEK (module docstring); return the report and the ``key-rotated`` index."""
    await require_admin(ledger, actor, "key rotation")
    report = await rotate_all(
        keks, PgKeyRows(db), grace_seconds=grace_seconds, retire_old=retire_old
    )
    entry = make_entry(
        "key-rotated",
        {
            "new_kek": report.new_kek_id,
            "old_keks": report.old_kek_ids,
            "rewrapped": report.rewrapped,
            "retired": report.retired,
            "kept": report.kept,
        },
        {"by": actor.id},
    )
    (idx,) = await ledger.append([entry])
    return report, idx


@dataclass(frozen=True)
class KekUse:
    """One key-encryption key: its id, its state (current, active, retired, unknown: named by
    rows but not in the store) and how many data keys it wraps."""

    kek_id: str
    state: str
    objects: int


async def kek_usage(db: Db, keks: KekStore) -> list[KekUse]:
    """Every KEK the store knows or a row names, with its state and data-key count."""
    counts = {
        r["kek_id"]: int(r["n"])
        for r in await db.fetch("SELECT kek_id, count(*) AS n FROM object_keys GROUP BY kek_id")
    }
    states: dict[str, str] = {}
    if isinstance(keks, FileKekStore) and (keks.directory / "CURRENT").exists():
        states.update(dict.fromkeys(keks.ids(), "active"))
        retired = keks.directory / "retired"
        if retired.is_dir():
            states.update({p.stem: "retired" for p in retired.glob("*.key")})
    if isinstance(keks, FileKekStore) and not (keks.directory / "CURRENT").exists():
        current = None
    else:
        current = keks.current().kek_id
    if current is not None:
        states[current] = "current"
    return [
        KekUse(k, states.get(k, "unknown"), counts.get(k, 0)) for k in sorted({*states, *counts})
    ]
