"""Batch rows: the host-authenticated record of what the sequencer appended.

Each committed batch leaves a ``ledger_batches`` row (migration 009): its first index, count,
the tree it leaves (size, root), its leaf hashes and ``HostMac.batch`` over all of them. Only a
holder of the host's MAC key (the service, never PostgreSQL) can make a row that verifies.

:func:`authenticate` is what the checkpointer asks before it signs: are the entries from a
trusted size (an earlier signed checkpoint, or 0) up to the tree it is about to sign covered by
contiguous batches whose tags verify, the last of them leaving exactly that tree? It reads one
short row per batch since the trusted size (PostgreSQL hashes each batch's leaves: the tag
binds that hash, so a wrong one fails like a forged row) and computes one HMAC per batch.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from vault.db import Conn
from vault.errors import LedgerCorrupt, LedgerUnauthenticated
from vault.keys.hostmac import HostMac

# The batch rows starting in [$1, $2), in order: a bounded span of entries per query.
_SPAN_SQL = (
    "SELECT first, count, size, root, leaves, tag FROM ledger_batches"
    " WHERE first >= $1 AND first < $2 ORDER BY first"
)
_NEXT_SQL = "SELECT min(first) FROM ledger_batches WHERE first >= $1"
# Entries whose batch rows one streaming query reads: with at most 16,384 entries per batch,
# at most 2.5 MB of leaf hashes in memory at once.
SPAN = 65536
# The places in the tree of the batches from the one holding entry $1 (or the first) to the
# last starting before $2: PostgreSQL hashes the leaves, so none are transferred.
_SINCE_SQL = (
    "SELECT first, count, size, root, sha256(leaves), tag FROM ledger_batches"
    " WHERE first >= coalesce((SELECT max(first) FROM ledger_batches WHERE first <= $1), 0)"
    " AND first < $2 ORDER BY first"
)


@dataclass(frozen=True)
class Batch:
    """One ``ledger_batches`` row, as stored (not yet verified)."""

    first: int
    count: int
    size: int
    root: bytes
    leaves: bytes
    tag: bytes

    @property
    def end(self) -> int:
        return self.first + self.count

    def verifies(self, mac: HostMac) -> bool:
        """Whether the row is one the sequencer wrote: its tag verifies over all its fields."""
        return (
            self.size == self.end
            and len(self.leaves) == 32 * self.count
            and mac.batch_ok(self.tag, self.first, self.leaves, self.size, self.root)
        )

    def leaf(self, index: int) -> bytes:
        """The authenticated leaf hash of entry ``index`` (within this batch)."""
        at = (index - self.first) * 32
        return self.leaves[at : at + 32]


def _batch(row: asyncpg.Record) -> Batch:
    return Batch(int(row[0]), int(row[1]), int(row[2]), bytes(row[3]), bytes(row[4]), bytes(row[5]))


async def stream_batches(conn: Conn) -> AsyncIterator[Batch]:
    """Every batch row in order of its first index, :data:`SPAN` entries' worth at a time."""
    start = 0
    while True:
        rows = await conn.fetch(_SPAN_SQL, start, start + SPAN)
        for row in rows:
            yield _batch(row)
        start += SPAN
        if not rows:  # skip a gap in one step
            start = await conn.fetchval(_NEXT_SQL, start)
            if start is None:
                return


async def authenticate(conn: Conn, mac: HostMac, start: int, size: int, root: bytes) -> None:
    """Return if entries ``start .. size-1`` lie in contiguous batches whose tags verify and the
    last leaves the tree (``size``, ``root``); raise :class:`LedgerUnauthenticated` naming the
    first entry that does not (or :class:`LedgerCorrupt` if the tree state is behind them).

    ``start`` must be a size already authenticated (a signed checkpoint's, or 0).
    """
    if start >= size:
        return
    rows = await conn.fetch(_SINCE_SQL, start, size)
    pos, last_root = start, b""
    for row in rows:
        first, count, end_size, batch_root, digest, tag = (
            int(row[0]),
            int(row[1]),
            int(row[2]),
            bytes(row[3]),
            bytes(row[4]),
            bytes(row[5]),
        )
        end = first + count
        if end <= pos:
            continue  # ends at or before the trusted size
        if first > pos:
            raise LedgerUnauthenticated(
                pos, f"ledger entry {pos} is in no batch the host key authenticates"
            )
        authentic = end_size == end and hmac.compare_digest(
            tag, mac.batch_of_digest(first, count, digest, end_size, batch_root)
        )
        if not authentic:
            raise LedgerUnauthenticated(
                pos,
                f"the batch row of entries {first}..{end - 1} does not verify with the host MAC "
                f"key: ledger entry {pos} is not authenticated",
            )
        pos, last_root = end, batch_root
    if pos < size:
        raise LedgerUnauthenticated(
            pos, f"ledger entry {pos} is in no batch the host key authenticates"
        )
    if pos > size:
        raise LedgerCorrupt(
            f"the tree state (size {size}) ends inside an authenticated batch ending at {pos}"
        )
    if last_root != root:
        raise LedgerUnauthenticated(
            size - 1,
            f"the tree state's root at size {size} is not the authenticated root of the batch "
            f"ending there: ledger entry {size - 1} is not authenticated",
        )
