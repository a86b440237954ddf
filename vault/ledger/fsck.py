"""fsck: verify the whole ledger as if the database were hostile.

Recomputes every leaf hash, tile and root from the entries alone; checks indexes are contiguous,
every stored tile equals its recomputation, the stored tree state matches, every commitment has a
matching opening, and every checkpoint — in the database and in ``checkpoints.log`` — is signed by
the log key and commits to the recomputed root at its size. Problems are reported precisely: the
first bad index, or the checkpoint that disagrees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from vault.db import Conn
from vault.ledger.tiles import read_state
from vault.ledger.tree import TreeEdge
from verify.canonical import check_opening, parse_canonical
from verify.checkpoint import Checkpoint, open_checkpoint
from verify.errors import VerificationError
from verify.merkle import HASH_SIZE, leaf_hash
from verify.note import Verifier

CHUNK = 10_000


@dataclass
class FsckReport:
    """What fsck found. ``ok`` only when ``problems`` is empty."""

    size: int = 0
    checkpoints_checked: int = 0
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


async def fsck(conn: Conn, verifier: Verifier, log_path: Path) -> FsckReport:
    """Run every check; see the module docstring."""
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
    async with conn.transaction(isolation="repeatable_read"):
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
            expected = idx + 1
            if expected in wanted:
                _check_roots(report, wanted.pop(expected), edge)
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
