"""Appends whose COMMIT failed: their outcome unknown, their callers answered with an error.

A transaction whose COMMIT is interrupted (the connection lost, the server killed) may have
committed or not; the sequencer cannot tell, and fails its callers (an API request is answered
503). Its entries may still be in the log once the database is back. So that the log says the
truth, such entries are followed by an ``unserved`` entry naming them:

- Before the callers get the error, :meth:`DoubtStore.record` writes the in-doubt entries'
  identity (index, leaf hash, kind) to a small file under the ledger's doubt directory
  (written, fsynced, renamed, the directory fsynced), so that a crash of the service too does
  not lose the doubt.
- :class:`Resolver` (a background task of the ledger, run at start and woken by every new
  doubt, retrying while the database is away) takes the ledger lock, so that the in-doubt
  transaction has surely ended, and looks each entry up at its index. An entry whose leaf hash
  is there gets one ``unserved`` entry (``entry``: its index, ``leaf_hash``, ``entry_kind``,
  ``answered``: ``"error"``, ``noted_at``: when the service saw the COMMIT fail); an entry that
  is not there was never written. Then the file is removed.
- Exactly once, whatever crashes: the ``unserved`` append checks, in its own transaction and
  under the ledger lock, that no earlier ``unserved`` entry names the same entry (a resolver
  that appended and crashed before removing the file, or another process sharing the
  directory, finds it and only removes the file). The resolver's own appends are never
  recorded as doubts: its file stays until the lookup says what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from vault.db import Conn, Db
from vault.ledger.batchprep import Prepared
from vault.ledger.entry import PreparedEntry, make_entry, rfc3339
from verify.merkle import leaf_hash

log = logging.getLogger("evault.ledger")

UNSERVED = "unserved"
FORMAT = "evidence-vault in-doubt/1"
# Seconds between two looks at the directory when nothing woke the resolver (another process
# sharing the directory may have left a file); after a failure, retried sooner.
POLL_SECONDS = 30.0
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)

# Unserved entries (a partial index keeps them cheap to list: migration 017).
_UNSERVED_SQL = "SELECT idx, data FROM ledger_entries WHERE kind = 'unserved' AND idx >= $1"
_LOCK_SQL = "SELECT pg_advisory_xact_lock($1)"
_LOOKUP_SQL = "SELECT idx, data FROM ledger_entries WHERE idx = ANY($1::bigint[])"


@dataclass(frozen=True)
class InDoubt:
    """One entry of a transaction whose COMMIT failed: where it would be, and what."""

    index: int
    leaf: bytes  # its leaf hash
    kind: str


@dataclass(frozen=True)
class Doubt:
    """One recorded doubt (one file): the entries of one failed COMMIT."""

    path: Path
    noted_at: str
    entries: tuple[InDoubt, ...]


def in_doubt(written: Prepared, indexes: Iterable[int]) -> list[InDoubt]:
    """The identities of entries ``indexes`` of the batch ``written``."""
    base, leaves = written.base_size, written.leaves
    return [
        InDoubt(i, leaves[(i - base) * 32 : (i - base + 1) * 32], written.kinds[i - base])
        for i in indexes
    ]


def unserved_entry(e: InDoubt, noted_at: str) -> PreparedEntry:
    """The ``unserved`` entry naming in-doubt entry ``e`` (found in the log)."""
    return make_entry(
        UNSERVED,
        {
            "entry": e.index,
            "leaf_hash": e.leaf.hex(),
            "entry_kind": e.kind,
            "answered": "error",
            "noted_at": noted_at,
        },
    )


def named_by(data: bytes) -> int | None:
    """The index an ``unserved`` entry's bytes name (None if they name none)."""
    try:
        index = json.loads(data).get("entry")
    except ValueError:
        return None
    return index if isinstance(index, int) else None


async def unserved_naming(db: Db, indexes: Iterable[int]) -> dict[int, list[tuple[int, bytes]]]:
    """The ``unserved`` entries (index, bytes) naming each of ``indexes`` that has any."""
    wanted = set(indexes)
    if not wanted:
        return {}
    out: dict[int, list[tuple[int, bytes]]] = {}
    for row in await db.fetch(_UNSERVED_SQL, min(wanted)):
        data = bytes(row["data"])
        named = named_by(data)
        if named in wanted:
            out.setdefault(named, []).append((int(row["idx"]), data))
    return out


class DoubtStore:
    """The doubt files of one directory (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def record(self, entries: Sequence[InDoubt]) -> Doubt:
        """Write a doubt durably (fsynced file and directory) before anyone is answered."""
        self.directory.mkdir(parents=True, exist_ok=True)
        noted_at = rfc3339()
        body = {
            "format": FORMAT,
            "noted_at": noted_at,
            "entries": [
                {"index": e.index, "leaf_hash": e.leaf.hex(), "kind": e.kind} for e in entries
            ],
        }
        name = f"{time.time_ns()}-{os.getpid()}-{secrets.token_hex(4)}"
        tmp = self.directory / f".{name}.tmp"
        path = self.directory / f"{name}.json"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, json.dumps(body, sort_keys=True).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.rename(path)
        _fsync_dir(self.directory)
        return Doubt(path, noted_at, tuple(entries))

    def pending(self) -> list[Doubt]:
        """Every doubt recorded here and not yet resolved, oldest first."""
        if not self.directory.is_dir():
            return []
        out = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                body = json.loads(path.read_bytes())
                entries = tuple(
                    InDoubt(int(e["index"]), bytes.fromhex(e["leaf_hash"]), str(e["kind"]))
                    for e in body["entries"]
                )
                out.append(Doubt(path, str(body["noted_at"]), entries))
            except FileNotFoundError:
                continue  # resolved meanwhile by another process
            except (ValueError, KeyError, TypeError) as exc:
                log.error("in-doubt record %s is unreadable (left in place): %s", path, exc)
        return out

    def drop(self, doubt: Doubt) -> None:
        with contextlib.suppress(FileNotFoundError):
            doubt.path.unlink()
        _fsync_dir(self.directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AlreadyExplained(Exception):
    """An ``unserved`` entry naming the in-doubt entry is already in the log."""


Effect = Callable[[Conn, list[int]], Awaitable[None]]
Append = Callable[[list[PreparedEntry], Effect], Awaitable[object]]


class Resolver:
    """Resolves recorded doubts against the log (see the module docstring)."""

    def __init__(
        self, pool: asyncpg.Pool[asyncpg.Record], store: DoubtStore, append: Append, lock_key: int
    ) -> None:
        self._pool = pool
        self.store = store
        self._append = append
        self._lock_key = lock_key
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Resolve what is pending now and whenever woken (or every :data:`POLL_SECONDS`);
        while the database is away, retry with a short backoff."""
        failures = 0
        while True:
            self._wake.clear()
            delay = POLL_SECONDS
            try:
                await self.resolve_pending()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (the database away: retried)
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("in-doubt ledger entries not resolved yet (retrying): %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def resolve_pending(self) -> int:
        """Resolve every recorded doubt; return how many ``unserved`` entries were appended."""
        appended = 0
        for doubt in await asyncio.to_thread(self.store.pending):
            appended += await self.resolve(doubt)
        return appended

    async def resolve(self, doubt: Doubt) -> int:
        """Look ``doubt``'s entries up under the ledger lock; append an ``unserved`` entry for
        each one there that none names yet; then drop the record."""
        by_index = {e.index: e for e in doubt.entries}
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_LOCK_SQL, self._lock_key)  # the in-doubt transaction has ended
            rows = await conn.fetch(_LOOKUP_SQL, list(by_index))
            present = [
                by_index[int(r["idx"])]
                for r in rows
                if leaf_hash(bytes(r["data"])) == by_index[int(r["idx"])].leaf
            ]
            explained = await unserved_naming(conn, [e.index for e in present])
        todo = sorted((e for e in present if e.index not in explained), key=lambda e: e.index)
        if todo:
            names = {e.index for e in todo}

            async def none_yet(tx: Conn, indexes: list[int]) -> None:
                # Under the ledger lock, in the append's transaction: exactly once.
                rows = await tx.fetch(_UNSERVED_SQL, min(names))
                if any(r["idx"] < indexes[0] and named_by(bytes(r["data"])) in names for r in rows):
                    raise AlreadyExplained

            try:
                await self._append([unserved_entry(e, doubt.noted_at) for e in todo], none_yet)
            except AlreadyExplained:  # another resolver was first: look again
                return await self.resolve(doubt)
            for e in todo:
                log.warning(
                    "ledger entry %d (%s) was committed though its caller was answered with an "
                    "error: recorded as unserved",
                    e.index,
                    e.kind,
                )
        await asyncio.to_thread(self.store.drop, doubt)
        return len(todo)
