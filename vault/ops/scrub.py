"""Scrub: the vault keeps checking itself (DESIGN §7: altered, truncated, deleted footage).

A run re-hashes stored objects — every original and rendition of evidence that is not disposed
of (nor being disposed of) — and, by default, runs the ledger fsck. ``mode="full"`` checks every
item; ``mode="sample"`` a uniformly random sample of items (all objects of each).

Guarantees:

- Objects are read only through a :class:`~vault.storage.content.ContentStore`, so what is hashed is
  the plaintext whatever the storage (plain or sealed). An object is ``ok`` only when its bytes
  hash to the recorded SHA-256 and its size is the recorded size; an absent object is
  ``missing``; other bytes, another size, or an object the store refuses as damaged
  (``IntegrityError``: a sealed chunk failing AES-GCM authentication, a foreign or damaged
  header, an impossible length — whether found when opening or while reading) is ``mismatch``;
  an I/O error (EIO, EACCES, a directory in the object's place…) is ``unreadable``. On a store
  that keeps versions (S3 with Object Lock), reads use the object's original version, and an
  object whose key also holds a later version or a delete marker (written through the S3 API
  over the original) is ``mismatch`` too, with the store's reason.
- A failing object is a finding, never the end of the run: it is logged and recorded naming
  the evidence id and the object (``original`` or the rendition kind and id, its SHA-256, the
  status and the store's reason), and the run goes on to the next object; every object of the
  pass is checked.
- Reads are paced by a token bucket: after ``n`` bytes at least ``n / rate`` seconds have
  passed since the start, less at most one second of burst credit after idle time.
- An item with a failing object is marked in ONE transaction: ``integrity`` set (``missing``
  when an object is missing or unreadable — the vault cannot produce its bytes — else
  ``mismatch``), ``last_scrub_at`` set, and, when its integrity changed, an
  ``integrity.failure`` event emitted naming every failing object — a persisting failure is
  announced once, not every run. Items disposed of meanwhile are neither marked nor reported.
  Every failing object adds one to ``evault_integrity_failures{source="scrub"}`` per run.
- Objects are named by evidence and rendition rows that verify (``vault.evidence``); an item
  with a row that does not is marked ``mismatch`` (its forged hash is never trusted) and the
  alarm is raised for the row.
- An item whose objects all verify gets ``last_scrub_at`` and ``integrity = 'ok'`` (a restored
  object clears the mark; the failure stays in the ledger).
- A failing fsck counts in ``evault_integrity_failures{source="fsck"}`` and emits an
  ``integrity.failure`` event when the previous run's fsck passed (or there was none).
- With fsck, ``fsck --state`` (:mod:`vault.statecheck`) compares the tables that decide access
  or point at bytes with the state the ledger implies; findings count in
  ``evault_integrity_failures{source="fsck-state"}``, fail the run, and emit an
  ``integrity.failure`` event (``source: fsck-state``, the count and the tables) when the
  previous run's found none (or none ran).
- Every run that finishes appends one ``scrub`` entry: mode, trigger, counts, bytes, the failing
  evidence ids per status and the failing objects (bounded lists with exact counts, see
  :meth:`~vault.ops.scrubmodel.ScrubReport.entry_fields`), fsck's result and first bad index, and
  the number of ``fsck --state`` findings; the entry is indexed under each failing item, so the
  item's trail shows it.
- At most one run at a time across all processes: a PostgreSQL session advisory lock
  (:data:`SCRUB_LOCK`); a second caller gets :class:`ScrubBusy` at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from vault import evidence as evrows
from vault.access import decisions
from vault.db import Conn, Db
from vault.errors import Conflict, IntegrityError, NotFound, Unavailable
from vault.events import emit
from vault.keys.hostmac import RowTampered
from vault.ledger import Ledger, make_entry
from vault.ledger.entry import rfc3339
from vault.ledger.fsck import fsck
from vault.metrics import INTEGRITY_FAILURES
from vault.ops.scrubmodel import (
    MAX_LISTED,
    MIB,
    Finding,
    Mode,
    RateLimiter,
    ScrubConfig,
    ScrubReport,
)
from vault.statecheck import fsck_state
from vault.storage.content import ContentStore, Readable

__all__ = [
    "MAX_LISTED",
    "SCRUB_LOCK",
    "Finding",
    "Mode",
    "RateLimiter",
    "ScrubBusy",
    "ScrubConfig",
    "ScrubReport",
    "due",
    "run_due",
    "run_scrub",
]

log = logging.getLogger("evault.scrub")

SCRUB_LOCK = 0x65767363  # "evsc"
PAGE = 200
READ_BATCH = 2 * MIB
Status = Literal["ok", "missing", "mismatch", "unreadable"]


class ScrubBusy(Conflict):
    """Another process is running a scrub now; try later."""

    slug = "scrub-busy"
    title = "A scrub is already running"


@dataclass(frozen=True)
class _Object:
    evidence_id: uuid.UUID
    sha256: str
    size: int
    what: str  # "original" or the rendition kind
    rendition_id: uuid.UUID | None


@asynccontextmanager
async def scrub_lock(pool: asyncpg.Pool[asyncpg.Record]) -> AsyncIterator[None]:
    """Hold the scrub advisory lock for the block; :class:`ScrubBusy` if another holds it."""
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", SCRUB_LOCK):
            raise ScrubBusy("a scrub is already running in another process; try again later")
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", SCRUB_LOCK)


async def run_scrub(
    ledger: Ledger,
    content: ContentStore,
    cfg: ScrubConfig,
    *,
    mode: Mode,
    sample: int | None = None,
    trigger: str = "manual",
) -> ScrubReport:
    """One scrub run (see module) under the advisory lock; returns its summary, recorded.

    ``sample``: items to check in ``sample`` mode (default: ``cfg.sample_count(total)``)."""
    async with scrub_lock(ledger.pool):
        return await _Run(ledger, content, cfg, mode, trigger).run(sample)


async def run_due(ledger: Ledger, content: ContentStore, cfg: ScrubConfig) -> ScrubReport | None:
    """The pass that is due (see :func:`due`), decided again under the lock; None when none is
    due. :class:`ScrubBusy` when another process is running one."""
    if await due(ledger.pool, cfg) is None:
        return None
    async with scrub_lock(ledger.pool):
        mode = await due(ledger.pool, cfg)
        if mode is None:
            return None
        return await _Run(ledger, content, cfg, mode, "schedule").run(None)


async def due(db: Db, cfg: ScrubConfig) -> Mode | None:
    """``full`` when no full pass was recorded within ``full_interval_hours``, else ``sample``
    when no pass at all was recorded within ``sample_interval_hours``, else None. Times are
    the ledger's own (``created_at`` of ``scrub`` entries, the database clock)."""
    row = await db.fetchrow(
        "SELECT extract(epoch FROM now() - max(created_at)) AS any_age,"
        " extract(epoch FROM now() - max(created_at) FILTER"
        ' (WHERE position(\'"mode":"full"\'::bytea IN data) > 0)) AS full_age'
        " FROM ledger_entries WHERE kind = 'scrub'"
    )
    assert row is not None

    def overdue(age: Any, hours: float) -> bool:
        return hours > 0 and (age is None or float(age) >= hours * 3600)

    if overdue(row["full_age"], cfg.full_interval_hours):
        return "full"
    if overdue(row["any_age"], cfg.sample_interval_hours):
        return "sample"
    return None


class _Run:
    def __init__(
        self, ledger: Ledger, content: ContentStore, cfg: ScrubConfig, mode: Mode, trigger: str
    ) -> None:
        self.ledger, self.pool, self.content, self.cfg = ledger, ledger.pool, content, cfg
        self.rate = cfg.rate_mb_s * MIB
        self.limiter = RateLimiter(self.rate)
        self.report = ScrubReport(mode, trigger, started=rfc3339())

    async def run(self, sample: int | None) -> ScrubReport:
        started = time.monotonic()
        async for page in self._pages(sample):
            await self._check_page(page)
        if self.cfg.fsck:
            await self._fsck()
            await self._fsck_state()
        self.report.duration_ms = int((time.monotonic() - started) * 1000)
        await self._record()
        return self.report

    async def _pages(self, sample: int | None) -> AsyncIterator[list[asyncpg.Record]]:
        live = (
            "disposed_at IS NULL AND NOT EXISTS"
            " (SELECT 1 FROM dispositions d WHERE d.evidence_id = e.id)"
        )
        if self.report.mode == "sample":
            if sample is None:
                total = await self.pool.fetchval(f"SELECT count(*) FROM evidence e WHERE {live}")  # noqa: S608
                sample = self.cfg.sample_count(total)
            rows = await self.pool.fetch(
                f"SELECT id, integrity FROM evidence e WHERE {live} ORDER BY random() LIMIT $1",  # noqa: S608
                sample,
            )
            for i in range(0, len(rows), PAGE):
                yield rows[i : i + PAGE]
            return
        after = uuid.UUID(int=0)
        while True:
            rows = await self.pool.fetch(
                f"SELECT id, integrity FROM evidence e WHERE {live} AND id > $1"  # noqa: S608
                " ORDER BY id LIMIT $2",
                after,
                PAGE,
            )
            if not rows:
                return
            yield rows
            after = rows[-1]["id"]

    async def _objects(
        self, ids: list[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, list[_Object]], set[uuid.UUID]]:
        """The objects of each item, from rows that verify (``vault.evidence``), and the items
        one of whose rows does not (the alarm is raised for each such row)."""
        mac = self.ledger.mac
        out: dict[uuid.UUID, list[_Object]] = {i: [] for i in ids}
        tampered: set[uuid.UUID] = set()
        for e in await evrows.evidence_rows(self.pool, ids):
            try:
                evrows.check_evidence(mac, e)
            except RowTampered as exc:
                await evrows.alarm(self.pool, exc, "scrub")
                tampered.add(e["id"])
                continue
            out[e["id"]].append(_Object(e["id"], e["sha256"], e["size"], "original", None))
        for r in await evrows.rendition_rows(self.pool, ids):
            try:
                evrows.check_rendition(mac, r)
            except RowTampered as exc:
                await evrows.alarm(self.pool, exc, "scrub")
                tampered.add(r["evidence_id"])
                continue
            out[r["evidence_id"]].append(
                _Object(r["evidence_id"], r["sha256"], r["size"], r["kind"], r["id"])
            )
        return out, tampered

    async def _check_page(self, page: list[asyncpg.Record]) -> None:
        objects, tampered = await self._objects([r["id"] for r in page])
        verified: list[uuid.UUID] = []
        for row in page:
            eid = row["id"]
            self.report.evidence += 1
            failed = [f for o in objects[eid] if (f := await self._check(o)) is not None]
            if eid in tampered:  # a row that does not verify names no bytes worth hashing
                self.report.failed_objects += 1
                INTEGRITY_FAILURES.labels(source="scrub").inc()
                failed.append(Finding(str(eid), "row", "", "mismatch", "row does not verify"))
            if failed:
                await self._mark(eid, failed)
            else:
                verified.append(eid)
                if row["integrity"] != "ok":
                    self.report.restored.append(str(eid))
        if verified:
            await evrows.mark_scrubbed_ok(self.pool, verified)

    async def _check(self, obj: _Object) -> Finding | None:
        """Check one object: None when it verifies, else the finding (never raises for a
        missing, damaged or unreadable object)."""
        self.report.objects += 1
        reason = ""
        try:
            readable = await self.content.open(obj.sha256)
        except NotFound as exc:
            status: Status = "missing"
            reason = exc.detail
        except IntegrityError as exc:  # refused at open: a sealed header or last chunk
            status, reason = "mismatch", exc.detail
        except (Unavailable, OSError) as exc:
            status, reason = "unreadable", _why(exc)
        else:
            try:
                status, reason = await self._hash(readable, obj)
                foreign = await self.content.foreign_versions(obj.sha256)
                if status == "ok" and foreign is not None:
                    status, reason = "mismatch", foreign
            except IntegrityError as exc:
                status, reason = "mismatch", exc.detail
            except (Unavailable, OSError) as exc:
                status, reason = "unreadable", _why(exc)
            finally:
                readable.close()
        if status == "ok":
            self.report.objects_ok += 1
            return None
        self.report.failed_objects += 1
        INTEGRITY_FAILURES.labels(source="scrub").inc()
        log.error(
            "scrub: %s %s object %s of evidence %s: %s",
            status, obj.what, obj.sha256, obj.evidence_id, reason,
        )  # fmt: skip
        return Finding(
            str(obj.evidence_id),
            obj.what,
            obj.sha256,
            status,
            reason,
            None if obj.rendition_id is None else str(obj.rendition_id),
        )

    async def _hash(self, readable: Readable, obj: _Object) -> tuple[Status, str]:
        if readable.size != obj.size:
            return "mismatch", f"size {readable.size}, recorded {obj.size}"
        h = hashlib.sha256()
        chunks = readable.read_range(0, readable.size)
        while n := await asyncio.to_thread(_feed, chunks, h, READ_BATCH):
            self.report.bytes += n
            await self.limiter.consume(n)
        if h.hexdigest() == obj.sha256:
            return "ok", ""
        return "mismatch", "the bytes hash to another SHA-256"

    async def _mark(self, eid: uuid.UUID, failed: Sequence[Finding]) -> None:
        status = "mismatch" if all(f.status == "mismatch" for f in failed) else "missing"
        async with self.pool.acquire() as conn, conn.transaction():
            row = await evrows.lock_for_mark(conn, eid)
            if row is None or row[1]:
                return  # disposed of while we read: its objects are meant to be gone
            await evrows.mark_integrity(conn, eid, status)
            if row[0] != status:
                await emit(conn, "integrity.failure", _event(eid, status, failed))
        self.report.add(failed)

    async def _fsck(self) -> None:
        async with self.pool.acquire() as conn:
            result = await fsck(conn, self.ledger.verifier, self.ledger.log_path, self.ledger.mac)
        r = self.report
        r.fsck_ok, r.fsck_size = result.ok, result.size
        r.fsck_first_bad_index, r.fsck_problems = result.first_bad_index, result.problems
        if result.ok:
            return
        INTEGRITY_FAILURES.labels(source="fsck").inc()
        for problem in result.problems[:20]:
            log.error("scrub: ledger fsck: %s", problem)
        async with self.pool.acquire() as conn, conn.transaction():
            if await _previous_fsck_ok(conn):
                payload = {
                    "source": "fsck",
                    "first_bad_index": result.first_bad_index,
                    "problems": len(result.problems),
                }
                await emit(conn, "integrity.failure", payload)

    async def _fsck_state(self) -> None:
        """Compare the tables with the ledger; announce findings once (like fsck's)."""
        async with self.pool.acquire() as conn:
            result = await fsck_state(conn)
        self.report.state_findings = [f.line() for f in result.findings]
        if result.ok:
            return
        INTEGRITY_FAILURES.labels(source="fsck-state").inc()
        for finding in result.findings[:20]:
            log.error("scrub: ledger fsck --state: %s", finding.line())
        async with self.pool.acquire() as conn, conn.transaction():
            if await _previous_state_ok(conn):
                tables = sorted({f.table for f in result.findings})
                payload = {
                    "source": "fsck-state",
                    "findings": len(result.findings),
                    "tables": tables,
                }
                await emit(conn, "integrity.failure", payload)

    async def _record(self) -> None:
        r = self.report
        entry = make_entry("scrub", r.entry_fields(self.rate))
        failing = {f.evidence_id for f in r.findings}

        async def refs(conn: Conn, indexes: list[int]) -> None:
            await decisions.add_refs(conn, [(indexes[0], "evidence", e) for e in sorted(failing)])

        (r.ledger_index,) = await self.ledger.append([entry], effect=refs)


def _feed(chunks: Iterator[bytes], h: Any, at_least: int) -> int:
    """Hash chunks until ``at_least`` bytes or the end; return the bytes hashed (0: done)."""
    n = 0
    for chunk in chunks:
        h.update(chunk)
        n += len(chunk)
        if n >= at_least:
            break
    return n


def _why(exc: Exception) -> str:
    """The reason of an I/O failure, for logs and findings (``Unavailable`` names no path)."""
    if isinstance(exc, Unavailable):
        return exc.detail
    return os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else type(exc).__name__


def _event(eid: uuid.UUID, status: str, failed: Sequence[Finding]) -> dict[str, Any]:
    objects = [f.fields() for f in failed]
    return {"source": "scrub", "evidence_id": str(eid), "integrity": status, "objects": objects}


async def _previous_fsck_ok(conn: Conn) -> bool:
    """Whether the last recorded scrub's fsck passed (True when there is none)."""
    data = await conn.fetchval(
        "SELECT data FROM ledger_entries WHERE kind = 'scrub'"
        " AND position('\"fsck\":'::bytea IN data) > 0 ORDER BY idx DESC LIMIT 1"
    )
    if data is None:
        return True
    try:
        return json.loads(bytes(data))["fsck"]["ok"] is True
    except (ValueError, KeyError, TypeError):
        return True  # an unreadable entry is fsck's to report; announce this failure


async def _previous_state_ok(conn: Conn) -> bool:
    """Whether the last recorded scrub's fsck --state found nothing (True when none ran)."""
    data = await conn.fetchval(
        "SELECT data FROM ledger_entries WHERE kind = 'scrub'"
        " AND position('\"state_findings\":'::bytea IN data) > 0 ORDER BY idx DESC LIMIT 1"
    )
    if data is None:
        return True
    try:
        return bool(json.loads(bytes(data))["fsck"]["state_findings"] == 0)
    except (ValueError, KeyError, TypeError):
        return True  # an unreadable entry is fsck's to report; announce this failure
