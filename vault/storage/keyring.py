"""Data keys: one random key per sealed object, wrapped by a KEK; rotation without re-encryption.

DB-free: the lead persists ``ObjectKey`` rows (table ``object_keys``: object id, content address,
KEK id, wrapped blob) and backs ``KeyRows`` with PostgreSQL; everything here is pure logic over
``vault.storage.kek.KekStore`` and those rows.

Binding. A DEK is wrapped (``vault.storage.kek.Kek.wrap``) for the context ``object id ||
SHA-256``: the 16-byte object id from the sealed header and the 32-byte plaintext SHA-256 (the
content address). A row therefore unwraps only for the sealed object it was made for *and* only
when asked for that content address: a row or file swapped in from another object fails with
``IntegrityError``.

Flow for the caller:

* write: ``dek = new_data_key()``; seal with ``vault.storage.sealing.SealWriter(dek, ...)``; on
  close, ``row = ObjectKey(result.object_id, result.sha256, wrap(store.current(), dek, ...))`` --
  call ``store.current()`` right before inserting the row, never earlier, so a rotation that starts
  meanwhile is covered by its grace period.
* read: fetch the row for the address, ``dek = unwrap(store, row.wrapped, row.object_id,
  row.sha256)``, then ``vault.storage.sealing.SealedReader(dek, f)``.
* rotate (``evault keys rotate``): ``rotate_all`` creates a new KEK (current at once), re-wraps
  every row under older KEKs with compare-and-swap updates, and retires each old KEK only when no
  row uses it. Content is never touched. Readers keep working throughout: until retirement both
  KEKs unwrap, and a row is replaced atomically, so any row a reader sees is valid. The caller
  appends the ``key-rotated`` ledger entry from the returned ``RotationReport``.

Guarantees: ``unwrap`` returns the right DEK or raises (``IntegrityError`` for a wrong binding or
a damaged blob, ``ConfigError``/``Unavailable`` from the KEK store); ``retire`` and ``rotate_all``
never retire a KEK that a row still names, nor the current one. Data keys are ordinary ``bytes``
(Python cannot wipe them); they are never logged or put into messages.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from vault.errors import ConfigError, Conflict
from vault.storage.kek import Kek, KekStore, check_kek_id

__all__ = [
    "KeyRows",
    "ObjectKey",
    "Rewrapped",
    "RotationReport",
    "WrappedKey",
    "in_use",
    "new_data_key",
    "retire",
    "rotate",
    "rotate_all",
    "unwrap",
    "wrap",
]

DEK_SIZE = 32
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A wrapped DEK: the id of the KEK that wrapped it and the 61-byte blob
    (``vault.storage.kek``)."""

    kek_id: str
    blob: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ObjectKey:
    """One row of ``object_keys``: sealed-header object id (primary key), plaintext SHA-256
    (lower-case hex), and the wrapped DEK."""

    object_id: bytes
    sha256: str
    wrapped: WrappedKey


@dataclass(frozen=True, slots=True)
class Rewrapped:
    """A re-wrap to store with compare-and-swap: set ``new`` where the row still holds ``old``."""

    object_id: bytes
    sha256: str
    old: WrappedKey
    new: WrappedKey

    @property
    def row(self) -> ObjectKey:
        return ObjectKey(self.object_id, self.sha256, self.new)


@dataclass(slots=True)
class RotationReport:
    """What ``rotate_all`` did, for the ``key-rotated`` ledger entry."""

    new_kek_id: str
    old_kek_ids: list[str]
    rewrapped: int = 0
    retired: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def _context(object_id: bytes, sha256: str) -> bytes:
    if len(object_id) != 16 or not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
        raise ValueError("object id is 16 bytes; sha256 is 64 lower-case hex digits")
    return object_id + bytes.fromhex(sha256)


def new_data_key() -> bytes:
    """A fresh random 32-byte data key (one per sealed object; never reuse one)."""
    return secrets.token_bytes(DEK_SIZE)


def wrap(kek: Kek, dek: bytes, object_id: bytes, sha256: str) -> WrappedKey:
    """Wrap ``dek`` under ``kek`` bound to the object id and its plaintext SHA-256."""
    return WrappedKey(kek.kek_id, kek.wrap(dek, _context(object_id, sha256)))


def unwrap(store: KekStore, wrapped: WrappedKey, object_id: bytes, sha256: str) -> bytes:
    """The DEK of this object; raises rather than ever returning a wrong key."""
    kek = store.get(check_kek_id(wrapped.kek_id))
    return kek.unwrap(wrapped.blob, _context(object_id, sha256))


def rotate(store: KekStore, keys: Iterable[ObjectKey], new_kek: Kek) -> Iterator[Rewrapped]:
    """Re-wrap each row not already under ``new_kek``; yields the changes to store (CAS).

    Lazy: one row at a time. An undecryptable row raises ``IntegrityError`` (nothing is skipped
    silently: a rotation must not leave rows that only the old KEK could open, unnoticed).
    """
    for row in keys:
        if row.wrapped.kek_id == new_kek.kek_id:
            continue
        dek = unwrap(store, row.wrapped, row.object_id, row.sha256)
        new = wrap(new_kek, dek, row.object_id, row.sha256)
        yield Rewrapped(row.object_id, row.sha256, row.wrapped, new)


def in_use(kek_id: str, keys: Iterable[WrappedKey | ObjectKey]) -> bool:
    """True if any of ``keys`` is wrapped by ``kek_id``."""
    for key in keys:
        wrapped = key.wrapped if isinstance(key, ObjectKey) else key
        if wrapped.kek_id == kek_id:
            return True
    return False


def retire(store: KekStore, kek_id: str, keys: Iterable[WrappedKey | ObjectKey]) -> None:
    """Retire ``kek_id`` unless a row still uses it (``Conflict``); ``keys`` must be all rows."""
    if in_use(kek_id, keys):
        raise Conflict(f"{kek_id} still wraps data keys; rotate them first")
    store.retire(kek_id)


class KeyRows(Protocol):
    """Storage of ``ObjectKey`` rows (PostgreSQL ``object_keys`` in the service)."""

    async def kek_ids(self) -> Sequence[str]:
        """The distinct KEK ids that rows use now."""

    async def under(self, kek_id: str, after: bytes | None, limit: int) -> Sequence[ObjectKey]:
        """Up to ``limit`` rows wrapped by ``kek_id`` with object id > ``after`` (None: from the
        start), ordered by object id."""

    async def replace(self, change: Rewrapped) -> bool:
        """Store ``change.new`` only where the row still holds ``change.old``; True if stored."""

    async def in_use(self, kek_id: str) -> bool:
        """True if any row is wrapped by ``kek_id``."""


def _rewrap_batch(store: KekStore, chunk: Sequence[ObjectKey], new: Kek) -> list[Rewrapped]:
    return list(rotate(store, chunk, new))


def _current_id(store: KekStore) -> str | None:
    try:
        return store.current().kek_id
    except ConfigError:  # no current KEK yet: this rotation creates the first
        return None


async def _rewrap_all(
    store: KekStore, rows: KeyRows, old: str, new: Kek, batch: int, report: RotationReport
) -> None:
    after: bytes | None = None
    while chunk := await rows.under(old, after, batch):
        changes = await asyncio.to_thread(_rewrap_batch, store, chunk, new)
        for change in changes:
            if await rows.replace(change):
                report.rewrapped += 1
        after = chunk[-1].object_id


async def rotate_all(
    store: KekStore,
    rows: KeyRows,
    *,
    batch: int = 500,
    grace_seconds: float = 5.0,
    passes: int = 3,
    retire_old: bool = True,
) -> RotationReport:
    """Create a new current KEK, re-wrap every row under older KEKs, retire those left unused
    (the old ones: every KEK rows named at the start, and the previous current KEK).

    ``grace_seconds`` is waited after creating the KEK (writers that took the old KEK just
    before finish inserting) and again before retiring (readers that fetched an old row finish
    unwrapping); set it above the longest wrap-to-commit time. Rows under an old KEK are scanned
    up to ``passes`` times until none is left; a KEK still in use afterwards is kept (listed in
    ``kept``; run again). KEK store calls run in a worker thread.
    """
    previous = await asyncio.to_thread(_current_id, store)
    new = await asyncio.to_thread(store.create)
    olds = {*await rows.kek_ids(), *([previous] if previous else [])} - {new.kek_id}
    report = RotationReport(new.kek_id, sorted(olds))
    await asyncio.sleep(grace_seconds)
    for old in report.old_kek_ids:
        for _ in range(passes):
            await _rewrap_all(store, rows, old, new, batch, report)
            if not await rows.in_use(old):
                break
    if not retire_old:
        report.kept = list(report.old_kek_ids)
        return report
    await asyncio.sleep(grace_seconds)
    for old in report.old_kek_ids:
        if await rows.in_use(old):
            report.kept.append(old)
        else:
            await asyncio.to_thread(store.retire, old)
            report.retired.append(old)
    return report
