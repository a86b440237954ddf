"""Evidence queries: lists, counts, one item, its renditions, each re-decided on verified rows.

Guarantees:

- ``list_evidence`` / ``count_evidence`` apply the filter inside SQL: pages, counts, cursors and
  filters (by case, officer, device, dock, time range, label, status) never reveal an item the
  caller may not list; filtering by a case the caller may not see yields nothing, like an
  unknown case. Pages use keyset pagination on (acquired_at, id).
- The database is not trusted to apply those filters honestly: each page's items are re-decided
  in Python from their whole link history and their cases' rows, every one verified
  (``pageitems.verify_items``; the same statement selects them, and an item selected again
  exactly as it was verified is not verified again); an item whose rows do not verify is left
  out (alarm raised), and one the verified state does not let the caller list is dropped.
  The cursor still follows the rows the statement returned. ``count_evidence`` counts exactly
  the items such pages would show (the same statement and re-check, streamed): a forged row
  changes no count.
- ``get_evidence`` decides through ``targets.authorize_then`` (recorded in the ledger once what
  the answer needs is read; fails closed) and raises ``NotFound`` identically for a missing and
  an invisible item.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from vault import evidence as evrows
from vault.access import state as access_state
from vault.access.filters import (
    MAX_PAGE,
    Args,
    _caveats,
    as_uuid,
    case_filter,
    current,
    evidence_filter,
    history_column,
    scopes,
)
from vault.access.pageitems import Item, verify_items
from vault.access.targets import authorize_then, evidence_target, rendition_target_of
from vault.db import Db
from vault.errors import BadRequest
from vault.keys.hostmac import HostMac, RowTampered
from vault.ledger import LedgerWriter
from vault.policy.decide import Action, Principal, Target, visible
from vault.policy.labels import Caveat, Label, Level

_T = TypeVar("_T")


@dataclass(frozen=True)
class EvidenceQuery:
    """Filters; every one narrows the caller's visible evidence, none widens it."""

    case_id: str | None = None
    officer_id: str | None = None
    device_id: str | None = None
    dock_id: str | None = None
    acquired_from: datetime | None = None  # inclusive
    acquired_to: datetime | None = None  # exclusive
    recorded_from: datetime | None = None
    recorded_to: datetime | None = None
    level: Level | None = None  # effective level equals
    caveats: frozenset[Caveat] = field(default_factory=frozenset)  # effective caveats include
    status: str | None = None  # media_status
    disposed: bool | None = None
    unlinked: bool = False  # linked to no case the caller may see (its ``cases`` is empty)


class EvidenceSummary(NamedTuple):
    """What a caller allowed to list an item sees of it (``cases``: only the visible ones).
    Immutable; a named tuple because pages build many (a third of a frozen dataclass's cost)."""

    id: str
    sha256: str
    size: int
    file_name: str
    dock_id: str | None
    device_id: str | None
    officer_id: str | None
    recorded_at: datetime | None
    acquired_at: datetime
    label: Label
    category: str
    media_status: str
    disposed_at: datetime | None
    cases: tuple[str, ...]


@dataclass(frozen=True)
class Page:
    """One page. ``tampered``: ids of rows left out because they do not verify (the alarm was
    raised for each); for integrity reports, never shown to a caller as items."""

    items: list[EvidenceSummary]
    next_cursor: str | None
    tampered: tuple[str, ...] = ()


_PLAIN = (
    *("id", "sha256", "size", "file_name", "dock_id", "device_id", "officer_id", "recorded_at"),
    *("acquired_at", "label_level", "label_caveats", "category", "media_status", "disposed_at"),
)
"""The columns of ``EvidenceSummary``'s fields in order (the label as level and caveats)."""
_LINKED = (
    "FROM case_evidence_history lh JOIN cases lc ON lc.id = lh.case_id"
    f" WHERE lh.evidence_id = e.id AND {current('lh')}"
)
_TAGGED = ("ledger_idx", "extension", "tag", "state_idx")
"""The rest of what verifying an evidence row's tag needs (vault.evidence), after the history."""
_LABEL_AT = EvidenceSummary._fields.index("label")  # where level and caveats are selected
_HISTORY_AT = len(EvidenceSummary._fields)  # one more column than fields: the label is two


def _columns(e: str) -> str:
    """Everything a summary needs of ``evidence {e}`` and deciding on it takes: its plain
    columns, its whole link history with the linked cases' rows (``filters.history_column``)
    and its tag's columns, in one statement."""
    plain = ", ".join(f"{e}.{c}" for c in _PLAIN)
    tagged = ", ".join(f"{e}.{c}" for c in _TAGGED)
    return f"{plain}, {history_column(e)} AS history, {tagged}"


def _links_lateral(p: Principal, args: Args) -> str:
    """``l.blocked`` for ``e``: one of its currently linked cases' labels is above ``p``
    (computed once per row, for the filter)."""
    clr, cav = args(int(p.clearance)), args(_caveats(p))
    return (
        "CROSS JOIN LATERAL (SELECT"
        f" bool_or(lc.label_level > {clr} OR NOT lc.label_caveats <@ {cav}::text[]) AS blocked"
        f" {_LINKED}) l"
    )


def _eff_cases(e: str) -> str:
    return (
        f"FROM case_evidence_history fh JOIN cases fc ON fc.id = fh.case_id"
        f" WHERE fh.evidence_id = {e}.id AND {current('fh')}"
    )


def _where(p: Principal, q: EvidenceQuery, args: Args, blocked: str | None = None) -> str:
    conds = [evidence_filter(p, "e", args, blocked=blocked)]
    if q.case_id is not None:
        c = args(q.case_id)
        conds.append(
            f"EXISTS (SELECT 1 FROM case_evidence_history qh WHERE qh.evidence_id = e.id"  # noqa: S608
            f" AND qh.case_id = {c} AND {current('qh')})"
            f" AND EXISTS (SELECT 1 FROM cases qc WHERE qc.id = {c}"
            f" AND {case_filter(p, 'qc', args)})"
        )
    if q.unlinked:  # judged on the cases the caller sees, so a hidden case's link is not told
        conds.append(
            "NOT EXISTS (SELECT 1 FROM case_evidence_history uh JOIN cases uc ON uc.id ="  # noqa: S608
            f" uh.case_id WHERE uh.evidence_id = e.id AND {current('uh')}"
            f" AND {case_filter(p, 'uc', args)})"
        )
    for column, value in (
        ("officer_id", q.officer_id),
        ("device_id", q.device_id),
        ("dock_id", q.dock_id),
        ("media_status", q.status),
    ):
        if value is not None:
            conds.append(f"e.{column} = {args(value)}")
    for column, op, instant in (
        ("acquired_at", ">=", q.acquired_from),
        ("acquired_at", "<", q.acquired_to),
        ("recorded_at", ">=", q.recorded_from),
        ("recorded_at", "<", q.recorded_to),
    ):
        if instant is not None:
            conds.append(f"e.{column} {op} {args(instant)}")
    if q.level is not None:
        conds.append(
            f"GREATEST(e.label_level, (SELECT max(fc.label_level) {_eff_cases('e')}))"
            f" = {args(int(q.level))}"
        )
    for caveat in sorted(q.caveats, key=lambda c: c.value):
        cv = args(caveat.value)
        conds.append(
            f"({cv} = ANY(e.label_caveats) OR EXISTS"
            f" (SELECT 1 {_eff_cases('e')} AND {cv} = ANY(fc.label_caveats)))"
        )
    if q.disposed is not None:
        conds.append(f"e.disposed_at IS {'NOT ' if q.disposed else ''}NULL")
    return " AND ".join(conds)


def encode_cursor(acquired_at: datetime, evidence_id: str) -> str:
    raw = json.dumps([acquired_at.isoformat(), evidence_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (acquired_at, id) a cursor names; BadRequest for anything malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, eid = json.loads(raw)
        instant = datetime.fromisoformat(when)
        if instant.tzinfo is None:
            raise ValueError("naive time")
        return instant, uuid.UUID(eid)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("invalid cursor: pass back the next_cursor of a previous page") from exc


def _decide(
    p: Principal, items: Iterable[tuple[Sequence[Any], Item]], query: EvidenceQuery | None
) -> list[EvidenceSummary]:
    """The verified items (``pageitems.verify_items``) that the verified state lets ``p``
    list, as summaries showing only the linked cases ``p`` may see. The SQL filter decided on
    rows the database could have forged, so its answer is only a candidate: the case filter
    and the decision are taken again here, on the verified links."""
    case_id = None if query is None else query.case_id
    cases_seen: dict[tuple[str, Label], bool] = {}  # a page's items share cases

    def case_visible(case: str, label: Label) -> bool:
        ok = cases_seen.get((case, label))
        if ok is None:
            ok = cases_seen[(case, label)] = visible(p, Target("case", label, frozenset({case})))
        return ok

    out = []
    for row, item in items:
        target = item.target
        if case_id is not None:
            linked = item.linked.get(case_id)
            if linked is None or not case_visible(case_id, linked):
                continue
        if not visible(p, target):
            continue
        shown = tuple(c for c, label in item.links if case_visible(c, label))
        # _PLAIN are EvidenceSummary's fields in order, the label as two columns
        # (level, caveats); the effective label replaces them.
        out.append(
            EvidenceSummary._make(
                (
                    str(row[0]),
                    *row[1:_LABEL_AT],
                    target.label,
                    *row[_LABEL_AT + 2 : _HISTORY_AT],
                    shown,
                )
            )
        )
    return out


def list_query(
    principal: Principal,
    query: EvidenceQuery | None = None,
    *,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[str, list[object]]:
    """The one statement ``list_evidence`` runs (fetching ``limit + 1`` rows), and its values."""
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    args = Args()
    lateral = _links_lateral(principal, args)
    where = _where(principal, query or EvidenceQuery(), args, blocked="l.blocked")
    if cursor is not None:
        after, after_id = decode_cursor(cursor)
        where += f" AND (e.acquired_at, e.id) > ({args(after)}, {args(after_id)}::uuid)"
    # The candidates first (LIMIT), then their histories: only the page's rows get one.
    sql = (
        f"SELECT {_columns('q')} FROM (SELECT e.* FROM evidence e {lateral} WHERE {where}"  # noqa: S608
        f" ORDER BY e.acquired_at, e.id LIMIT {args(limit + 1)}) q ORDER BY q.acquired_at, q.id"
    )
    return sql, args.values


async def list_evidence(
    db: Db,
    principal: Principal,
    query: EvidenceQuery | None = None,
    *,
    limit: int = 100,
    cursor: str | None = None,
    mac: HostMac,
) -> Page:
    """One page of the evidence the principal may list, ordered by (acquired_at, id): one
    statement, the items' current links included. A row whose tag does not verify
    (``vault.evidence``) is left out of the page and raises the alarm: a listing never shows a
    forged value, and a label lowered in the database does not reveal anything."""
    sql, values = list_query(principal, query, limit=limit, cursor=cursor)
    rows = await db.fetch(sql, *values)
    page = rows[:limit]
    good = await verify_items(db, mac, page, _HISTORY_AT)
    items = _decide(principal, good, query)
    tampered: tuple[str, ...] = ()
    if len(good) < len(page):
        kept = {r["id"] for r, _item in good}
        tampered = tuple(str(r["id"]) for r in page if r["id"] not in kept)
    more = len(rows) > limit
    last = page[-1] if page else None
    after = encode_cursor(last["acquired_at"], str(last["id"])) if more and last else None
    return Page(items, after, tampered)


async def count_evidence(
    db: Db,
    principal: Principal,
    query: EvidenceQuery | None = None,
    *,
    mac: HostMac | None = None,
) -> int:
    """How many items ``list_evidence`` would return over all pages: the same statement's
    candidates, streamed in pages of ``MAX_PAGE`` and kept only where their rows verify and the
    verified link state lets the caller list them (``verify_items``, ``_decide``). A row forged,
    edited or linked in the database changes no count. ``mac``: the host key (by default the
    installed access state's)."""
    key = mac if mac is not None else access_state.current().mac
    total, cursor = 0, None
    while True:
        sql, values = list_query(principal, query, limit=MAX_PAGE, cursor=cursor)
        rows = await db.fetch(sql, *values)
        page = rows[:MAX_PAGE]
        total += len(_decide(principal, await verify_items(db, key, page, _HISTORY_AT), query))
        if len(rows) <= MAX_PAGE:
            return total
        last = page[-1]
        cursor = encode_cursor(last["acquired_at"], str(last["id"]))


async def get_evidence(
    db: Db, ledger: LedgerWriter, principal: Principal, evidence_id: str
) -> EvidenceSummary:
    """Read one item's metadata (an audited ``read_metadata`` decision); NotFound identically
    for missing and invisible."""

    async def nothing(_summary: EvidenceSummary) -> bool:
        return True

    return (await get_evidence_with(db, ledger, principal, evidence_id, nothing))[0]


async def get_evidence_with(
    db: Db,
    ledger: LedgerWriter,
    principal: Principal,
    evidence_id: str,
    then: Callable[[EvidenceSummary], Awaitable[_T | None]],
) -> tuple[EvidenceSummary, _T]:
    """``get_evidence``, with ``then`` reading what else the answer needs from the summary
    before the decision's entry is appended (``targets.authorize_then``): a read that fails
    leaves no ``accessed`` entry behind, and ``then`` returning None (gone meanwhile) is
    ``NotFound``. (summary, what ``then`` returned)."""

    async def serve(_target: Target) -> tuple[EvidenceSummary, _T] | None:
        sql = f"SELECT {_columns('e')} FROM evidence e WHERE e.id = $1"  # noqa: S608
        rows = await db.fetch(sql, evidence_id)
        if not rows:
            return None
        try:
            evrows.check_evidence(ledger.mac, rows[0])
        except RowTampered as exc:  # changed since the decision: still never shown
            await evrows.alarm(db, exc, "read")
            raise
        found = _decide(principal, await verify_items(db, ledger.mac, rows, _HISTORY_AT), None)
        if not found:  # changed since the decision: as if it were not there
            return None
        extra = await then(found[0])
        return None if extra is None else (found[0], extra)

    return await authorize_then(
        db, ledger, principal, Action.READ_METADATA, "evidence", evidence_id, serve
    )


async def visible_renditions(
    db: Db, mac: HostMac, principal: Principal, evidence_id: str
) -> list[evrows.Rendition]:
    """The renditions of an item that ``principal`` may list, oldest first, decided in Python on
    verified rows only: each rendition row (one that does not verify is left out and raises the
    alarm), the item's row and its link state (``RowTampered`` if either does not verify)."""

    eid = as_uuid(evidence_id)
    if eid is None or not scopes(principal, Action.LIST, "rendition"):
        return []
    source = await evidence_target(db, str(eid), "rendition", mac=mac)
    if source is None:
        return []
    return [
        r
        for r in await evrows.renditions_of(db, mac, eid)
        if visible(principal, rendition_target_of(r, source))
    ]
