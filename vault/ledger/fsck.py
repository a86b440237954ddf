"""fsck: verify the whole ledger as if the database were hostile.

Recomputes every leaf hash, tile and root from the entries alone; checks indexes are contiguous,
every stored tile equals its recomputation, the stored tree state matches, every commitment has a
matching opening, and every checkpoint — in the database and in ``checkpoints.log`` — is signed by
the log key and commits to the recomputed root at its size.

With the host's MAC key it also checks the batch rows (vault/ledger/batches.py): every tag
verifies, batches are contiguous and do not overlap, every entry lies in one — except entries
before the first batch that a signed checkpoint covers (a ledger older than batch rows) — each
entry's recomputed leaf hash is the one its authenticated batch recorded, and the tree after each
batch has the batch's root. Since the tiles and tree state are not trusted, this is what names
the exact entry an insider changed or inserted, even with every tile recomputed to match.

Problems are reported precisely: the first bad index (an entry whose bytes changed, one inserted
outside the sequencer, the first entry of a forged batch row or of a run of entries whose batch
row is missing), or the checkpoint that disagrees.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from vault.db import Conn
from vault.keys.hostmac import HostMac
from vault.ledger.batches import Batch, stream_batches
from vault.ledger.tiles import read_state
from vault.ledger.tree import TreeEdge
from verify.canonical import check_opening, parse_canonical
from verify.checkpoint import Checkpoint, open_checkpoint
from verify.errors import VerificationError
from verify.merkle import HASH_SIZE, leaf_hash
from verify.note import Verifier

CHUNK = 10_000
# Time given to a checkpoint stored by another node to reach this node's checkpoints.log.
LOG_GRACE_SECONDS = 2.0


@dataclass
class FsckReport:
    """What fsck found. ``ok`` only when ``problems`` is empty."""

    size: int = 0
    checkpoints_checked: int = 0
    batches_checked: int | None = None  # None: no host MAC key, batch rows not checked
    problems: list[str] = field(default_factory=list)
    first_bad_index: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad(self, message: str, index: int | None = None) -> None:
        self.problems.append(message)
        if index is not None and (self.first_bad_index is None or index < self.first_bad_index):
            self.first_bad_index = index


def _read_log(path: Path, report: FsckReport) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    if not path.exists():
        return out
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            note = json.loads(line)["note"]
            if not isinstance(note, str):
                raise TypeError("note is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            report.bad(f"{path}:{lineno}: unreadable checkpoint line ({exc})")
            continue
        out.append((lineno, note))
    return out


class _BatchCheck:
    """The batch rows against the entries, one entry at a time in index order. A row whose tag
    does not verify is reported (at its first index) and otherwise ignored: the entries it
    claims are checked against the authenticated rows alone."""

    def __init__(self, conn: Conn, mac: HostMac, report: FsckReport, signed: int) -> None:
        self._rows = aiter(stream_batches(conn))
        self._mac = mac
        self._report = report
        self._signed = signed  # entries before this are authentic by a checkpoint's signature
        self._batch: Batch | None = None  # the current authenticated batch
        self._end = -1  # where the authenticated batches before it end (-1: none yet)
        self._started = False
        self._outside = False  # inside a run of entries in no batch (reported once)
        report.batches_checked = 0

    async def _next(self) -> None:
        """Move to the next authenticated batch row (None after the last)."""
        if self._batch is not None:
            self._end = max(self._end, self._batch.end)
        r = self._report
        async for b in self._rows:
            r.batches_checked = (r.batches_checked or 0) + 1
            if not b.verifies(self._mac):
                r.bad(
                    f"batch row of entries {b.first}..{b.end - 1} does not verify with the host "
                    f"MAC key (forged or altered): entry {b.first} is not authenticated by it",
                    b.first,
                )
                continue
            if b.first < self._end:
                r.bad(f"batch row of entries {b.first}..{b.end - 1} overlaps another", b.first)
            self._batch = b
            return
        self._batch = None

    async def _at(self, idx: int) -> Batch | None:
        """The authenticated batch holding entry ``idx``, if any."""
        if not self._started:
            self._started = True
            await self._next()
        while self._batch is not None and self._batch.end <= idx:
            await self._next()
        b = self._batch
        return b if b is not None and b.first <= idx else None

    async def entry(self, idx: int, leaf: bytes, edge: TreeEdge) -> None:
        """Check entry ``idx`` (its leaf hash ``leaf``), already appended to ``edge``."""
        b = await self._at(idx)
        if b is None:
            if idx < self._signed and self._end < 0:
                return  # before the first batch row (a ledger older than them), and signed
            if not self._outside:
                self._outside = True
                self._report.bad(
                    f"entry {idx} is in no batch the host MAC key authenticates: written outside "
                    "the sequencer, or its batch row is missing",
                    idx,
                )
            return
        self._outside = False
        if b.leaf(idx) != leaf:
            self._report.bad(
                f"entry {idx}: its bytes do not hash to the leaf its authenticated batch records",
                idx,
            )
        if idx == b.end - 1 and edge.root() != b.root:
            self._report.bad(
                f"the tree after entry {idx} differs from the authenticated root of its batch: "
                f"an entry before {b.first} differs from the one the sequencer appended"
            )

    async def finish(self, size: int) -> None:
        """After the last entry (the ledger has ``size``): batch rows for entries not there."""
        await self._at(size)
        if self._batch is not None:
            self._report.bad(
                f"entry {size} is missing: an authenticated batch records entries up to "
                f"{self._batch.end - 1}",
                size,
            )


async def fsck(
    conn: Conn, verifier: Verifier, log_path: Path, mac: HostMac | None = None
) -> FsckReport:
    """Run every check; see the module docstring. Without ``mac`` (the host's MAC key) the
    batch rows are not checked, and ``batches_checked`` stays None."""
    report = FsckReport()

    # Checkpoints to check, from the database and from the file, keyed by size.
    wanted: dict[int, list[tuple[str, Checkpoint]]] = {}
    db_notes: set[str] = set()
    for row in await conn.fetch("SELECT id, note FROM ledger_checkpoints ORDER BY id"):
        where = f"checkpoint #{row['id']} in the database"
        db_notes.add(row["note"])
        try:
            cp = open_checkpoint(row["note"], verifier)
        except VerificationError as exc:
            report.bad(f"{where}: {exc}")
            continue
        wanted.setdefault(cp.size, []).append((where, cp))
    log_notes = set()
    for lineno, note in _read_log(log_path, report):
        where = f"{log_path.name} line {lineno}"
        log_notes.add(note)
        try:
            cp = open_checkpoint(note, verifier)
        except VerificationError as exc:
            report.bad(f"{where}: {exc}")
            continue
        wanted.setdefault(cp.size, []).append((where, cp))
    if db_notes - log_notes:
        # Another process's checkpoint stored a moment ago may still be on its way into this
        # node's log (its checkpointer copies each one it verifies): look once more.
        await asyncio.sleep(LOG_GRACE_SECONDS)
        log_notes |= {note for _n, note in _read_log(log_path, FsckReport())}
    for note in sorted(db_notes - log_notes):
        report.bad(
            f"a checkpoint in the database is not in {log_path.name}: {note.splitlines()[1:2]}"
        )

    # Stream the entries, rebuilding the tree.
    edge = TreeEdge()
    stored_tiles: dict[tuple[int, int], bytes] = {
        (r["level"], r["idx"]): bytes(r["hashes"])
        for r in await conn.fetch("SELECT level, idx, hashes FROM ledger_tiles WHERE level > 0")
    }
    expected = 0
    if 0 in wanted:
        _check_roots(report, wanted.pop(0), edge)
    signed = max(wanted, default=0)  # entries up to here are covered by a signed checkpoint
    async with conn.transaction(isolation="repeatable_read"):
        batches = None if mac is None else _BatchCheck(conn, mac, report, signed)
        cursor = conn.cursor("SELECT idx, data FROM ledger_entries ORDER BY idx", prefetch=CHUNK)
        level0: dict[int, bytes] = {}
        window, openings = -1, {}
        async for row in cursor:
            idx, data = row["idx"], bytes(row["data"])
            if idx != expected:
                report.bad(f"entry {expected} is missing (next entry is {idx})", expected)
                break
            tile_index = idx // 256
            if tile_index not in level0:
                level0 = {tile_index: await _tile(conn, 0, tile_index)}
            lh = leaf_hash(data)
            stored = level0[tile_index][(idx % 256) * HASH_SIZE : (idx % 256 + 1) * HASH_SIZE]
            if stored and stored != lh:
                report.bad(f"entry {idx}: its bytes do not hash to the stored leaf hash", idx)
            if idx // CHUNK != window:
                window = idx // CHUNK
                openings = await _openings(conn, window * CHUNK, (window + 1) * CHUNK)
            _check_entry(report, idx, data, openings.get(idx, []))
            for key, content in edge.append([lh]).items():
                full = key[0] > 0 and len(content) == 256 * HASH_SIZE
                if full and stored_tiles.get(key, b"")[: len(content)] != content:
                    report.bad(f"tile {key[0]}/{key[1]} differs from its recomputation")
            if batches is not None:
                await batches.entry(idx, lh, edge)
            expected = idx + 1
            if expected in wanted:
                _check_roots(report, wanted.pop(expected), edge)
        if batches is not None:
            await batches.finish(expected)
    report.size = expected
    state_size, state_root = await read_state(conn)
    if state_size != expected:
        report.bad(
            f"tree state says {state_size} entries but entries run to {expected}",
            min(expected, state_size),
        )
    elif state_root != edge.root():
        report.bad("stored tree root differs from the root recomputed from the entries")
    for size, items in sorted(wanted.items()):
        for where, _cp in items:
            report.bad(
                f"{where} is for size {size} but the ledger has {expected} entries", expected
            )
    return report


def _check_roots(report: FsckReport, items: list[tuple[str, Checkpoint]], edge: TreeEdge) -> None:
    root = edge.root()
    for where, cp in items:
        report.checkpoints_checked += 1
        if cp.root_hash != root:
            report.bad(
                f"{where} (size {cp.size}) does not match the root recomputed from the entries: "
                f"an entry before index {cp.size} was altered",
                cp.size - 1,
            )


async def _tile(conn: Conn, level: int, index: int) -> bytes:
    value = await conn.fetchval(
        "SELECT hashes FROM ledger_tiles WHERE level=$1 AND idx=$2", level, index
    )
    return b"" if value is None else bytes(value)


async def _openings(conn: Conn, start: int, end: int) -> dict[int, list[asyncpg.Record]]:
    """The openings of entries [start, end), by entry index (one query per window)."""
    out: dict[int, list[asyncpg.Record]] = {}
    for row in await conn.fetch(
        "SELECT idx, field, salt, value FROM ledger_openings WHERE idx >= $1 AND idx < $2",
        start,
        end,
    ):
        out.setdefault(row["idx"], []).append(row)
    return out


def _check_entry(report: FsckReport, idx: int, data: bytes, openings: list[asyncpg.Record]) -> None:
    try:
        entry = parse_canonical(data)
    except VerificationError as exc:
        report.bad(f"entry {idx}: not canonical JSON: {exc}", idx)
        return
    commits = entry.get("commitments", {})
    have = {r["field"]: r for r in openings}
    for name, expected in commits.items():
        row = have.get(name)
        if row is None:
            report.bad(f"entry {idx}: no opening for commitment {name!r}", idx)
            continue
        try:
            check_opening(name, json.loads(bytes(row["value"])), bytes(row["salt"]), expected)
        except VerificationError as exc:
            report.bad(f"entry {idx}: {exc}", idx)
