"""Tagged evidence and rendition rows: the writes that bind them and the reads that verify them.

See the package docstring for the guarantees. Column names in SQL built here come from the
constant tuples of ``vault.evidence.model`` only, never from callers' input.
"""

from __future__ import annotations

import logging
import operator
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg

from vault.db import Conn, Db
from vault.errors import IntegrityError, NotFound
from vault.events import emit
from vault.evidence.model import (
    EVIDENCE_BOUND,
    EVIDENCE_TABLE,
    EVIDENCE_WORKING,
    RENDITION_BOUND,
    RENDITION_TABLE,
    RENDITION_WORKING,
    Evidence,
    NewEvidence,
    NewRendition,
    Rendition,
    Row,
    evidence_values,
    rendition_values,
)
from vault.keys.hostmac import HostMac, RowTampered
from vault.metrics import INTEGRITY_FAILURES
from vault.policy.decide import rendition_label
from vault.policy.labels import Caveat, Label, Level

log = logging.getLogger("evault.evidence")

#: The kind of a released redacted copy: its own label decides access, not joined with its
#: source's (``vault.redaction.release``).
RELEASED = "released"

_EV_COLUMNS = ("id", *EVIDENCE_BOUND, "tag", "state_idx", *EVIDENCE_WORKING)
_RD_COLUMNS = ("id", *RENDITION_BOUND, "tag", "state_idx", *RENDITION_WORKING)
_ANNOUNCED: set[tuple[str, tuple[str, ...]]] = set()
_MAX_ANNOUNCED = 10_000


def evidence_columns(alias: str = "e") -> str:
    """Every column an :class:`Evidence` needs (and its tag), for ``SELECT`` from ``alias``."""
    return ", ".join(f"{alias}.{c}" for c in _EV_COLUMNS)


def rendition_columns(alias: str = "r") -> str:
    """Every column a :class:`Rendition` needs (and its tag), for ``SELECT`` from ``alias``."""
    return ", ".join(f"{alias}.{c}" for c in _RD_COLUMNS)


# -- verification ------------------------------------------------------------------------------


_EVIDENCE_RAW = operator.itemgetter("id", "state_idx", *EVIDENCE_BOUND)
_RENDITION_RAW = operator.itemgetter("id", "state_idx", *RENDITION_BOUND)
"""What a row's tag covers, as read (the memo compares it in value and type)."""


def check_evidence(mac: HostMac, row: Row, *, remember: bool = True) -> None:
    """Raise RowTampered unless ``row`` (with the bound columns, ``tag``, ``state_idx``)
    carries the tag of its values (a tag verified before for equal values is not hashed again;
    ``remember``: see ``HostMac.check_row_memo``)."""
    raw = (EVIDENCE_TABLE, *_EVIDENCE_RAW(row))
    mac.check_row_memo(
        row["tag"],
        raw,
        lambda: (EVIDENCE_TABLE, [row["id"]], evidence_values(row), row["state_idx"]),
        remember=remember,
    )


def check_rendition(mac: HostMac, row: Row, *, remember: bool = True) -> None:
    """Raise RowTampered unless the rendition ``row`` carries the tag of its values."""
    raw = (RENDITION_TABLE, *_RENDITION_RAW(row))
    mac.check_row_memo(
        row["tag"],
        raw,
        lambda: (RENDITION_TABLE, [row["id"]], rendition_values(row), row["state_idx"]),
        remember=remember,
    )


def evidence_of(row: Row) -> Evidence:
    """An :class:`Evidence` from a row that was verified (``check_evidence``)."""
    return Evidence(
        **{c: row[c] for c in _EV_COLUMNS if c not in ("tag", "label_caveats")},
        label_caveats=tuple(row["label_caveats"]),
    )


def rendition_of(row: Row) -> Rendition:
    """A :class:`Rendition` from a row that was verified (``check_rendition``)."""
    return Rendition(
        **{c: row[c] for c in _RD_COLUMNS if c not in ("tag", "label_caveats")},
        label_caveats=tuple(row["label_caveats"]),
    )


async def alarm(db: Db | None, exc: RowTampered, where: str) -> None:
    """Raise the alarm for a row that does not verify: the metric, an error log line, and (on
    ``db``, once per row and process) an ``integrity.failure`` event. A database that cannot
    take the event (a read-only replica, a lost connection) is logged, never hidden: the metric
    and the log line stand."""
    INTEGRITY_FAILURES.labels(source="state").inc()
    log.error("state tampered: %s (found by %s); run `evault ledger fsck --state`", exc, where)
    key = (exc.table, exc.key)
    if db is None or key in _ANNOUNCED:
        return
    payload = {"source": "state", "table": exc.table, "key": list(exc.key), "found_by": where}
    try:
        await emit(db, "integrity.failure", payload)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as err:
        log.error("the integrity.failure event for %s could not be written: %s", exc, err)
        return
    if len(_ANNOUNCED) < _MAX_ANNOUNCED:
        _ANNOUNCED.add(key)


def _uuid(value: uuid.UUID | str) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def load_evidence(
    db: Db, mac: HostMac, evidence_id: uuid.UUID | str, *, where: str = "read"
) -> Evidence | None:
    """The verified evidence row ``evidence_id``, or None if there is none (or the id cannot
    be one). RowTampered (after the alarm) if it does not verify."""
    eid = _uuid(evidence_id)
    if eid is None:
        return None
    row = await db.fetchrow(f"SELECT {evidence_columns()} FROM evidence e WHERE e.id = $1", eid)  # noqa: S608
    if row is None:
        return None
    try:
        check_evidence(mac, row)
    except RowTampered as exc:
        await alarm(db, exc, where)
        raise
    return evidence_of(row)


async def load_rendition(
    db: Db, mac: HostMac, rendition_id: uuid.UUID | str, *, where: str = "read"
) -> Rendition | None:
    """The verified rendition row ``rendition_id``, or None. RowTampered if it does not verify."""
    rid = _uuid(rendition_id)
    if rid is None:
        return None
    row = await db.fetchrow(f"SELECT {rendition_columns()} FROM renditions r WHERE r.id = $1", rid)  # noqa: S608
    if row is None:
        return None
    try:
        check_rendition(mac, row)
    except RowTampered as exc:
        await alarm(db, exc, where)
        raise
    return rendition_of(row)


async def by_sha256(db: Db, mac: HostMac, sha256: str) -> list[Evidence]:
    """The verified evidence rows whose content is ``sha256`` (at most one in a sound vault).
    RowTampered if one does not verify: a lookup by hash never answers from a forged row."""
    rows = await db.fetch(
        f"SELECT {evidence_columns()} FROM evidence e WHERE e.sha256 = $1 ORDER BY e.id",  # noqa: S608
        sha256,
    )
    out = []
    for row in rows:
        try:
            check_evidence(mac, row)
        except RowTampered as exc:
            await alarm(db, exc, "lookup by sha256")
            raise
        out.append(evidence_of(row))
    return out


async def check_page(
    db: Db | None,
    mac: HostMac,
    rows: Sequence[asyncpg.Record],
    kind: str = EVIDENCE_TABLE,
    *,
    remember: bool = True,
) -> list[asyncpg.Record]:
    """The rows of a page that verify (``kind``: ``evidence`` or ``renditions``), in order; each
    one that does not is left out and raises the alarm. One HMAC per row (``remember``: see
    ``HostMac.check_row_memo``)."""
    check = check_evidence if kind == EVIDENCE_TABLE else check_rendition
    out = []
    for row in rows:
        try:
            check(mac, row, remember=remember)
        except RowTampered as exc:
            await alarm(db, exc, f"listing {kind}")
            continue
        out.append(row)
    return out


async def renditions_of(
    db: Db, mac: HostMac, evidence_id: uuid.UUID, kinds: Iterable[str] | None = None
) -> list[Rendition]:
    """The verified renditions of an evidence item (of ``kinds``, all by default), oldest first;
    one that does not verify is left out and raises the alarm."""
    rows = await db.fetch(
        f"SELECT {rendition_columns()} FROM renditions r WHERE r.evidence_id = $1"  # noqa: S608
        " AND ($2::text[] IS NULL OR r.kind = ANY($2::text[])) ORDER BY r.created_at, r.id",
        evidence_id,
        None if kinds is None else list(kinds),
    )
    return [rendition_of(r) for r in await check_page(db, mac, rows, RENDITION_TABLE)]


async def evidence_rows(db: Db, ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    """The evidence rows of ``ids`` as stored, NOT verified: for callers that verify each
    (``check_evidence``) and report a failure themselves (scrub)."""
    return list(
        await db.fetch(
            f"SELECT {evidence_columns()} FROM evidence e WHERE e.id = ANY($1::uuid[])",  # noqa: S608
            list(ids),
        )
    )


async def rendition_rows(db: Db, evidence_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    """The rendition rows of the items ``evidence_ids`` as stored, NOT verified (as above)."""
    return list(
        await db.fetch(
            f"SELECT {rendition_columns()} FROM renditions r"  # noqa: S608
            " WHERE r.evidence_id = ANY($1::uuid[])",
            list(evidence_ids),
        )
    )


async def holders(db: Db, sha256: str) -> list[tuple[str, asyncpg.Record]]:
    """(table, row) of every evidence and rendition row naming ``sha256``, NOT verified (the
    caller verifies each: decryption decides on them)."""
    ev = await db.fetch(f"SELECT {evidence_columns()} FROM evidence e WHERE e.sha256 = $1", sha256)  # noqa: S608
    rd = await db.fetch(
        f"SELECT {rendition_columns()} FROM renditions r WHERE r.sha256 = $1",  # noqa: S608
        sha256,
    )
    return [(EVIDENCE_TABLE, r) for r in ev] + [(RENDITION_TABLE, r) for r in rd]


# -- writes ------------------------------------------------------------------------------------


def _label(level: int, caveats: Iterable[str]) -> Label:
    try:
        return Label(Level(level), frozenset(Caveat(c) for c in caveats))
    except ValueError as exc:
        raise IntegrityError("a stored label is invalid") from exc


def _label_values(label: Label) -> dict[str, object]:
    return {
        "label_level": int(label.level),
        "label_caveats": [c.value for c in label.sorted_caveats],
    }


def _aware(when: datetime | None) -> datetime | None:
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=UTC)


async def _insert_tagged(
    conn: Conn,
    mac: HostMac,
    table: str,
    row_id: uuid.UUID,
    values: dict[str, object],
    extra_json: tuple[str, str],
    idx: int,
) -> None:
    """Insert row ``row_id`` of ``table`` with its bound ``values``, one unbound JSON column
    (``extra_json``: name, text), its tag over the bound values and ``state_idx`` = ``idx``."""
    tag = mac.row(table, [row_id], values, idx)
    json_name, json_text = extra_json
    names = ["id", *values, json_name, "tag", "state_idx"]
    marks = ", ".join(
        f"${i}" + ("::jsonb" if n == json_name else "") for i, n in enumerate(names, 1)
    )
    await conn.execute(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})",  # noqa: S608
        row_id,
        *values.values(),
        json_text,
        tag,
        idx,
    )


async def insert_evidence(conn: Conn, mac: HostMac, new: NewEvidence, idx: int) -> None:
    """Record an acquisition with its ``acquired`` entry ``idx`` (inside that entry's effect).
    A second row for the same content raises ``asyncpg.UniqueViolationError``."""
    values: dict[str, object] = {
        "sha256": new.sha256,
        "size": new.size,
        "ledger_idx": idx,
        "dock_id": new.dock_id,
        "device_id": new.device_id,
        "officer_id": new.officer_id,
        "recorded_at": _aware(new.recorded_at),
        "acquired_at": _aware(new.acquired_at),
        "file_name": new.file_name,
        "extension": new.extension,
        **_label_values(new.label),
        "category": new.category,
        "disposed_at": None,
    }
    await _insert_tagged(conn, mac, EVIDENCE_TABLE, new.id, values, ("metadata", new.metadata), idx)


async def insert_rendition(conn: Conn, mac: HostMac, new: NewRendition, idx: int) -> Label:
    """Record a rendition with its ``derived`` entry ``idx``; return the label stored: the
    requested label raised to the source's label as it is now (the source row is verified and
    locked against a concurrent relabel). NotFound if the source is gone; RowTampered if it
    does not verify."""
    source = await conn.fetchrow(
        f"SELECT {evidence_columns()} FROM evidence e WHERE e.id = $1 FOR SHARE",  # noqa: S608
        new.evidence_id,
    )
    if source is None:
        raise NotFound(f"evidence {new.evidence_id} does not exist")
    check_evidence(mac, source)
    label = rendition_label(_label(source["label_level"], source["label_caveats"]), new.label)
    if new.kind == RELEASED:  # a legal reviewer's release: the label decided, lower or not
        label = new.label
    values: dict[str, object] = {
        "evidence_id": new.evidence_id,
        "kind": new.kind,
        "sha256": new.sha256,
        "size": new.size,
        "media_type": new.media_type,
        "ledger_idx": idx,
        **_label_values(label),
    }
    await _insert_tagged(conn, mac, RENDITION_TABLE, new.id, values, ("params", new.params), idx)
    return label


async def _retag(
    conn: Conn,
    mac: HostMac,
    table: str,
    key: uuid.UUID,
    changes: Mapping[str, object],
    idx: int,
    row: Row | None = None,
) -> None:
    """Set bound ``changes`` on a row and re-tag it with entry ``idx``, after verifying it as
    stored (``row``: already read ``FOR UPDATE`` by the caller)."""
    bound = EVIDENCE_BOUND if table == EVIDENCE_TABLE else RENDITION_BOUND
    if not set(changes) <= set(bound):
        raise ValueError(f"not bound columns of {table}: {sorted(set(changes) - set(bound))}")
    if row is None:
        cols = evidence_columns() if table == EVIDENCE_TABLE else rendition_columns()
        alias = "e" if table == EVIDENCE_TABLE else "r"
        row = await conn.fetchrow(
            f"SELECT {cols} FROM {table} {alias} WHERE {alias}.id = $1 FOR UPDATE",  # noqa: S608
            key,
        )
        if row is None:
            raise NotFound(f"no {table} row {key}")
    if table == EVIDENCE_TABLE:
        check_evidence(mac, row)
        values = evidence_values(row)
    else:
        check_rendition(mac, row)
        values = rendition_values(row)
    values.update(changes)
    tag = mac.row(table, [key], values, idx)
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(changes, 2))
    n = len(changes) + 2
    await conn.execute(
        f"UPDATE {table} SET {sets}, tag = ${n}, state_idx = ${n + 1} WHERE id = $1",  # noqa: S608
        key,
        *changes.values(),
        tag,
        idx,
    )


async def set_label(
    conn: Conn, mac: HostMac, kind: str, target_id: uuid.UUID, label: Label, idx: int
) -> None:
    """Store ``label`` on evidence or a rendition (``kind``) with its ``labelled`` entry ``idx``
    (the caller has already raised a rendition's label to dominate its source's)."""
    table = EVIDENCE_TABLE if kind == "evidence" else RENDITION_TABLE
    if kind not in ("evidence", "rendition"):
        raise ValueError(f"no evidence rows of kind {kind}")
    await _retag(conn, mac, table, target_id, _label_values(label), idx)


async def raise_renditions(
    conn: Conn, mac: HostMac, evidence_id: uuid.UUID, floor: Label, idx: int
) -> list[tuple[uuid.UUID, Label]]:
    """Raise every rendition of an evidence item below ``floor`` to dominate it, re-tagged with
    entry ``idx``; return the (rendition id, new label) of those changed."""
    rows = await conn.fetch(
        f"SELECT {rendition_columns()} FROM renditions r WHERE r.evidence_id = $1"  # noqa: S608
        " ORDER BY r.id FOR UPDATE",
        evidence_id,
    )
    changed = []
    for r in rows:
        own = _label(r["label_level"], r["label_caveats"])
        raised = rendition_label(floor, own)
        if raised == own:
            check_rendition(mac, r)  # still: never leave a forged row under a new entry
            continue
        await _retag(conn, mac, RENDITION_TABLE, r["id"], _label_values(raised), idx, r)
        changed.append((r["id"], raised))
    return changed


async def set_category(
    conn: Conn, mac: HostMac, evidence_id: uuid.UUID, category: str, idx: int
) -> None:
    """Store the retention category with the entry ``idx`` that decided it."""
    await _retag(conn, mac, EVIDENCE_TABLE, evidence_id, {"category": category}, idx)


async def mark_disposed(conn: Conn, mac: HostMac, evidence_id: uuid.UUID, idx: int) -> bool:
    """Set ``disposed_at`` (now) with the ``disposed`` entry ``idx``; False if it already was."""
    row = await conn.fetchrow(
        f"SELECT {evidence_columns()} FROM evidence e WHERE e.id = $1 FOR UPDATE",  # noqa: S608
        evidence_id,
    )
    if row is None:
        raise NotFound(f"no evidence row {evidence_id}")
    if row["disposed_at"] is not None:
        check_evidence(mac, row)
        return False
    when = datetime.now(UTC)
    await _retag(conn, mac, EVIDENCE_TABLE, evidence_id, {"disposed_at": when}, idx, row)
    return True


async def finish_disposal(db: Db, mac: HostMac, evidence_id: uuid.UUID) -> bool:
    """Once a recorded disposal's blobs are gone: set ``disposed_at``, re-tagged with the
    ``disposed`` entry (``dispositions.ledger_idx``); False if it already was set."""
    async with _transaction(db) as conn:
        idx = await conn.fetchval(
            "SELECT ledger_idx FROM dispositions WHERE evidence_id = $1", evidence_id
        )
        if idx is None:
            raise NotFound(f"evidence {evidence_id} has no recorded disposal")
        return await mark_disposed(conn, mac, evidence_id, idx)


@asynccontextmanager
async def _transaction(db: Db) -> AsyncIterator[Conn]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db
