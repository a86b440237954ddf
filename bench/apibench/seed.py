"""Seeding: a million evidence rows and their ledger entries, fast, with the real shapes."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from api.config import Config
from api.runtime import open_runtime
from apibench.common import (
    CHUNK,
    CONFIDENTIAL,
    CS,
    DOCK,
    DOCK_PRINCIPAL,
    INTERNAL,
    MIB,
    PRIVATE,
    REVIEWER,
)
from vault.access import principals, tokens
from vault.access import state as access_state
from vault.access.listing import EvidenceQuery, list_query
from vault.db import Conn
from vault.evidence.model import evidence_values
from vault.ledger import Ledger, Opening, PreparedEntry
from vault.ledger.entry import ENTRY_VERSION, rfc3339
from vault.policy.decide import Role
from vault.policy.labels import Label, Level
from vault.storage.blobstore import BlobStore
from vault.storage.reseal import Resealer
from verify.canonical import COMMITMENT_DOMAIN, check_opening, parse_canonical

# -- seeding ---------------------------------------------------------------------------------


def _canon(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry(kind: str, when: str, fields: dict[str, object], sealed: dict[str, str]) -> PreparedEntry:
    """``make_entry`` for the plain values seeded here (ASCII strings), without its generic
    validation (several times faster); ``check_entry`` proves the output canonical and the
    openings valid."""
    commits, openings = {}, []
    for name in sorted(sealed):
        value, salt = _canon(sealed[name]), secrets.token_bytes(32)
        h = hashlib.sha256(COMMITMENT_DOMAIN + name.encode() + b"\x00" + salt + value)
        commits[name] = h.hexdigest()
        openings.append(Opening(name, salt, value))
    body = {"v": ENTRY_VERSION, "kind": kind, "time": when, **fields, "commitments": commits}
    return PreparedEntry(kind, _canon(body), tuple(openings))


def check_entry(e: PreparedEntry) -> None:
    body = parse_canonical(e.data)
    for o in e.openings:
        check_opening(o.field, json.loads(o.value), o.salt, body["commitments"][o.field])


def evidence_of(seed: bytes, i: int, n_cases: int) -> tuple[uuid.UUID, str, list[int], bool]:
    """Evidence ``i``: id, SHA-256, linked cases (1, or 2 for 5%), first link undone (1%)."""
    d = hashlib.sha256(seed + i.to_bytes(8, "big")).digest()
    cases = [int.from_bytes(d[16:20], "big") % n_cases]
    second = int.from_bytes(d[21:25], "big") % n_cases
    if d[20] < 13 and second != cases[0]:
        cases.append(second)
    return uuid.UUID(bytes=d[:16], version=4), d.hex(), cases, d[25] < 3


def case_id(c: int) -> str:
    return f"BENCH-{c:07d}"


def case_label(c: int) -> Label:
    return CONFIDENTIAL if c % 20 == 7 else INTERNAL


Copies = list[tuple[str, list[str], list[tuple]]]
Chunk = tuple[list[PreparedEntry], Copies]


def _tag(ledger: Ledger, columns: list[str], record: tuple[Any, ...]) -> bytes:
    row = dict(zip(columns, record, strict=False))
    row.update(category="ordinary", disposed_at=None)
    return ledger.mac.row("evidence", [row["id"]], evidence_values(row), row["ledger_idx"])


async def append_bulk(ledger: Ledger, entries: list[PreparedEntry], copies: Copies) -> None:
    """Append ``entries`` in one call; its effect COPYs ``copies`` (table, columns, rows whose
    first element is an offset into the entries, replaced by the ledger index)."""

    async def effect(conn: Conn, indexes: list[int]) -> None:
        for table, columns, rows in copies:
            records = [(indexes[r[0]], *r[1:]) for r in rows]
            if table == "evidence":  # tagged as vault.evidence tags an acquisition
                columns = [*columns, "category", "tag", "state_idx"]
                records = [(*r, "ordinary", _tag(ledger, columns, r), r[0]) for r in records]
            elif table in ("cases", "case_evidence_history"):  # tagged as vault.cases.links does
                records = [
                    (*r, access_state.tag(ledger.mac, table, dict(zip(columns, r, strict=True))))
                    for r in records
                ]
                columns = [*columns, "tag"]
            await conn.copy_records_to_table(table, records=records, columns=columns)

    check_entry(entries[0])
    check_entry(entries[-1])
    await ledger.append(entries, effect=effect)


async def pump(ledger: Ledger, chunks: Iterator[Chunk]) -> int:
    """Append every chunk, building the next one (in a thread) while one is committed."""
    done = 0
    pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
    while (chunk := await pending) is not None:
        pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
        await append_bulk(ledger, *chunk)
        done += len(chunk[0])
    return done


CASE_COLUMNS = [
    "ledger_idx",
    "id",
    "title",
    "label_level",
    "label_caveats",
    "created_at",
    "updated_at",
]
LABEL_COLUMNS = [
    "ledger_idx",
    "target_kind",
    "target_id",
    "label_level",
    "label_caveats",
    "principal_id",
    "at",
]
REF_COLUMNS = ["ledger_idx", "ref_kind", "ref_id"]


def case_chunks(n: int, base: datetime) -> Iterator[Chunk]:
    """``case`` entries (as ``vault.cases.links.create`` writes them) with their rows."""
    for start in range(0, n, CHUNK):
        entries, cases, labels, refs = [], [], [], []
        for k, c in enumerate(range(start, min(n, start + CHUNK))):
            cid, lab, title = case_id(c), case_label(c), f"Bench case {c}"
            when = base + timedelta(seconds=c)
            caveats = [v.value for v in lab.sorted_caveats]
            entries.append(
                entry(
                    "case",
                    rfc3339(when),
                    {"op": "created", "label": lab.to_json()},
                    {"case": cid, "title": title, "by": CS},
                )
            )
            cases.append((k, cid, title, int(lab.level), caveats, when, when))
            labels.append((k, "case", cid, int(lab.level), caveats, CS, when))
            refs.append((k, "case", cid))
        yield (
            entries,
            [
                ("cases", CASE_COLUMNS, cases),
                ("label_history", LABEL_COLUMNS, labels),
                ("ledger_refs", REF_COLUMNS, refs),
            ],
        )


EVIDENCE_COLUMNS = [
    "ledger_idx",
    "id",
    "sha256",
    "size",
    "dock_id",
    "device_id",
    "officer_id",
    "recorded_at",
    "file_name",
    "extension",
    "metadata",
    "acquired_at",
    "label_level",
    "label_caveats",
    "media_status",
]
OFFER_COLUMNS = ["ledger_idx", "evidence_id", "dock_id", "source_name", "reoffer", "offered_at"]
HISTORY_COLUMNS = ["ledger_idx", "case_id", "evidence_id", "action", "principal_id", "at"]


def acquisition(
    k: int, eid: uuid.UUID, sha: str, size: int, i: int, when: datetime, label: Label
) -> tuple[PreparedEntry, tuple, tuple]:
    """The ``acquired`` entry (as ``ingest.record`` writes it), evidence row and offer row."""
    device, officer = f"DSJ-{i % 5000:05d}", f"OFF{i % 3000:05d}"
    recorded = when - timedelta(minutes=30)
    name = f"{device}_{officer}_{recorded:%Y%m%d%H%M%S}.mp4"
    e = entry(
        "acquired",
        rfc3339(when),
        {"evidence_id": str(eid), "sha256": sha, "size": size, "label": str(label)},
        {
            "file_name": name,
            "dock_id": DOCK,
            "device_id": device,
            "officer_id": officer,
            "recorded_at": recorded.isoformat(),
        },
    )
    caveats = [c.value for c in label.sorted_caveats]
    meta = json.dumps({"via": "bench", "source_path": name})
    row = (k, eid, sha, size, DOCK, device, officer, recorded, name, "mp4", meta, when)
    row += (int(label.level), caveats, "ready")
    return e, row, (k, eid, DOCK, name, False, when)


def evidence_chunks(
    seed: bytes, n: int, n_cases: int, base: datetime, span: timedelta
) -> Iterator[Chunk]:
    step = span / max(n, 1)
    for start in range(0, n, CHUNK):
        entries, rows, offers = [], [], []
        for k, i in enumerate(range(start, min(n, start + CHUNK))):
            eid, sha, _, _ = evidence_of(seed, i, n_cases)
            label = PRIVATE if i % 20 == 3 else INTERNAL
            size = 50 * MIB + (i % 997) * 4096
            e, row, offer = acquisition(k, eid, sha, size, i, base + step * i, label)
            entries.append(e)
            rows.append(row)
            offers.append(offer)
        yield (
            entries,
            [("evidence", EVIDENCE_COLUMNS, rows), ("evidence_offers", OFFER_COLUMNS, offers)],
        )


Link = tuple[int, str, uuid.UUID, str, datetime]


def link_chunks(
    seed: bytes, n: int, n_cases: int, base: datetime, span: timedelta
) -> Iterator[Chunk]:
    """Link every evidence item to its cases (``linked``, as ``vault.cases.links.link`` writes it),
    then undo 1% of the first links (``unlinked``)."""
    step = span / max(n, 1)
    pending: list[Link] = []
    undo: list[Link] = []
    for i in range(n):
        eid, sha, cases, unlink = evidence_of(seed, i, n_cases)
        when = base + step * i + timedelta(hours=1)
        pending.extend((c, "linked", eid, sha, when) for c in cases)
        if unlink:
            undo.append((cases[0], "unlinked", eid, sha, when + timedelta(days=1)))
        if len(pending) >= CHUNK or i == n - 1:
            yield _link_chunk(pending)
            pending = []
    for start in range(0, len(undo), CHUNK):
        yield _link_chunk(undo[start : start + CHUNK])


def _link_chunk(links: list[Link]) -> Chunk:
    entries, history, refs = [], [], []
    for k, (c, action, eid, sha, when) in enumerate(links):
        cid = case_id(c)
        fields: dict[str, object] = {"evidence_id": str(eid), "sha256": sha}
        entries.append(entry(action, rfc3339(when), fields, {"case": cid, "by": CS}))
        history.append((k, cid, eid, action, CS, when))
        refs.extend([(k, "case", cid), (k, "evidence", str(eid))])
    return entries, [
        ("case_evidence_history", HISTORY_COLUMNS, history),
        ("ledger_refs", REF_COLUMNS, refs),
    ]


def write_random_file(path: Path, size: int) -> None:
    block = os.urandom(16 * MIB)
    with path.open("wb") as f:
        written = 0
        while written < size:
            n = min(len(block), size - written)
            # vary each block so the file does not repeat (cheap: a counter in front)
            f.write(written.to_bytes(8, "big") + block[8:n])
            written += n


async def store_object(cfg: Config, ledger: Ledger, tmp: Path, size: int) -> tuple[str, str]:
    """A ``size``-byte object in the blob store, recorded as evidence; (evidence id, path)."""
    source = tmp / "range-source.mp4"
    await asyncio.to_thread(write_random_file, source, size)
    store = BlobStore(cfg.path(cfg.store.root))
    fd = os.open(source, os.O_RDONLY)
    try:
        blob = await asyncio.to_thread(store.ingest_file, fd)
    finally:
        os.close(fd)
    source.unlink()
    eid = await record_object(ledger, blob.sha256, blob.size, INTERNAL)
    return str(eid), str(blob.path)


async def record_object(ledger: Ledger, sha256: str, size: int, label: Label) -> uuid.UUID:
    """The ``acquired`` entry and evidence row of a stored object; its evidence id."""
    eid = uuid.uuid4()
    e, row, offer = acquisition(0, eid, sha256, size, 1, datetime.now(UTC), label)
    await append_bulk(
        ledger,
        [e],
        [("evidence", EVIDENCE_COLUMNS, [row]), ("evidence_offers", OFFER_COLUMNS, [offer])],
    )
    return eid


async def store_sealed_object(cfg: Config, tmp: Path, size: int) -> tuple[str, str]:
    """A ``size``-byte confidential object, stored sealed (encrypted at rest, as re-encryption
    stores it) and recorded as evidence; (evidence id, path of a plaintext copy of it)."""
    source = tmp / "sealed-source.mp4"
    await asyncio.to_thread(write_random_file, source, size)
    async with open_runtime(cfg) as rt:
        fd = os.open(source, os.O_RDONLY)
        try:
            blob = await asyncio.to_thread(rt.storage.blobs.ingest_file, fd)
        finally:
            os.close(fd)
        eid = await record_object(rt.ledger, blob.sha256, blob.size, CONFIDENTIAL)
        sealer = Resealer(rt.storage, rt.db.pool, mac=rt.mac, ledger=rt.ledger)
        if not await sealer.seal_object(blob.sha256):
            raise RuntimeError("the confidential object was not sealed")
        await rt.ledger.checkpoint()
    return str(eid), str(source)


async def seed(cfg: Config, args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """Everything the measurements need; returns tokens, the object and timings."""
    out: dict[str, object] = {}
    seed_bytes = secrets.token_bytes(16)
    now = datetime.now(UTC).replace(microsecond=0)
    span = timedelta(days=730)
    base = now - span - timedelta(days=1)
    async with open_runtime(cfg) as rt:
        db, ledger = rt.db.pool, rt.ledger
        admin = await principals.load(db, "admin")
        people = {
            CS: principals.PrincipalSpec(CS, frozenset({Role.CASE_SYSTEM}), Level.CONFIDENTIAL),
            REVIEWER: principals.PrincipalSpec(
                REVIEWER, frozenset({Role.REVIEWER}), Level.INTERNAL
            ),
            DOCK_PRINCIPAL: principals.PrincipalSpec(
                DOCK_PRINCIPAL, frozenset({Role.DOCK}), Level.INTERNAL, dock_ids=frozenset({DOCK})
            ),
        }
        for spec in people.values():
            await principals.add(db, ledger, admin, spec)
        for pid in people:
            issued = await tokens.create(db, ledger, admin, pid, timedelta(days=1), comment="bench")
            out[pid] = issued.token
        t = time.perf_counter()
        await pump(ledger, case_chunks(args.cases, base - timedelta(days=30)))
        out["t_cases"] = time.perf_counter() - t
        t = time.perf_counter()
        await pump(ledger, evidence_chunks(seed_bytes, args.evidence, args.cases, base, span))
        out["t_evidence"] = time.perf_counter() - t
        t = time.perf_counter()
        links = link_chunks(seed_bytes, args.evidence, args.cases, base, span)
        out["links"] = await pump(ledger, links)
        out["t_links"] = time.perf_counter() - t
        # cases the reviewer (cleared for internal) may be assigned to: assignment below a
        # case's label is refused
        cleared = [c for c in range(args.cases) if case_label(c) == INTERNAL]
        assigned = sorted({cleared[secrets.randbelow(len(cleared))] for _ in range(50)})
        for c in assigned:
            await principals.assign(db, ledger, admin, REVIEWER, case_id(c))
        out["reviewer_cases"] = [case_id(c) for c in assigned]
        t = time.perf_counter()
        out["object"] = await store_object(cfg, ledger, tmp, args.range_mib * MIB)
        out["t_object"] = time.perf_counter() - t
        out["ledger_size"] = await ledger.size()
        await ledger.checkpoint()
    return out


async def vacuum(dsn: str) -> float:
    t = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        for table in (
            "ledger_entries",
            "ledger_openings",
            "ledger_refs",
            "cases",
            "label_history",
            "evidence",
            "evidence_offers",
            "case_evidence_history",
            "principals",
            "principal_cases",
            "tokens",
        ):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        # let the seeding's writes reach the disk now, not during the measurements
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    await asyncio.to_thread(os.sync)
    return time.perf_counter() - t


async def explain(cfg: Config, dsn: str, case: str) -> None:
    """EXPLAIN ANALYZE of the list query exactly as ``visibility.list_evidence`` builds it, for
    the case system, with the planner's custom and generic plans (asyncpg prepares statements;
    PostgreSQL may switch to the generic plan after five executions)."""
    conn = await asyncpg.connect(dsn, server_settings={"role": cfg.database.app_role})
    try:
        who = await principals.load(conn, CS)
        sql, values = list_query(who, EvidenceQuery(case_id=case))
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            stmt = await conn.prepare(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            rows = await stmt.fetch(*values)
            print(f"\n-- list query, case {case}, {mode}:")
            for r in rows:
                print("   " + r[0])
    finally:
        await conn.close()
