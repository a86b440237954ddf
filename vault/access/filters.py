"""The SQL side of access control: visibility filters, the verified link state, stored labels.

Guarantees:

- ``evidence_filter`` and ``case_filter`` produce a WHERE fragment that is
  true for a row exactly when ``access.decide(principal, action, target)`` allows it, where the
  target is what ``targets.evidence_target`` / ``rendition_target`` / ``case_target`` build for it:
  clearance ≥ the effective level, effective caveats ⊆ the principal's, and a role from
  ``ROLE_GRANTS`` whose scope is met (case-independent, an assigned case among the CURRENT links,
  or the recording officer). The scopes are read from ``ROLE_GRANTS``, not restated. An evidence
  item's effective label is the join of its own label and every currently linked case's label
  (``access.effective_label``); a rendition's is the join of that and its own label.
- Current links are computed from the append-only link history (the newest row per case and
  evidence decides), so no deleted row can hide or forge a link.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from vault.access import state as access_state
from vault.db import Db
from vault.errors import IntegrityError
from vault.keys.hostmac import RowTampered
from vault.policy.decide import (
    ACTION_KINDS,
    ROLE_GRANTS,
    Action,
    Principal,
    Scope,
    TargetKind,
)
from vault.policy.labels import Caveat, Label, Level

MAX_PAGE = 1000


class Args:
    """Positional SQL parameters: ``args(value)`` appends a value and returns its ``$n``."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def __call__(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def current(h: str) -> str:
    """Predicate on a ``case_evidence_history`` row ``h``: it is a link that still holds."""
    return (
        f"{h}.action = 'linked' AND NOT EXISTS (SELECT 1 FROM case_evidence_history {h}_n"  # noqa: S608
        f" WHERE {h}_n.case_id = {h}.case_id AND {h}_n.evidence_id = {h}.evidence_id"
        f" AND {h}_n.ledger_idx > {h}.ledger_idx)"
    )


CURRENT_LINKS = (
    "SELECT h.case_id, h.evidence_id, h.ledger_idx, h.at, h.principal_id"  # noqa: S608
    f" FROM case_evidence_history h WHERE {current('h')}"
)
"""The current links, as a subquery."""


def scopes(p: Principal, action: Action, kind: TargetKind) -> frozenset[Scope]:
    """The scopes under which the principal's roles grant ``action`` on ``kind``."""
    if not p.active or kind not in ACTION_KINDS.get(action, frozenset()):
        return frozenset()
    return frozenset(ROLE_GRANTS[r][action] for r in p.roles if action in ROLE_GRANTS.get(r, {}))


def _caveats(p: Principal) -> list[str]:
    return sorted(c.value for c in p.caveats)


def _cleared(p: Principal, level: str, caveats: str, args: Args) -> str:
    return f"({level} <= {args(int(p.clearance))} AND {caveats} <@ {args(_caveats(p))}::text[])"


def evidence_filter(
    p: Principal,
    e: str,
    args: Args,
    action: Action = Action.LIST,
    kind: TargetKind = "evidence",
    blocked: str | None = None,
) -> str:
    """WHERE fragment on ``evidence`` row ``e``: decide(p, action, its target) allows it.

    ``blocked``: an SQL expression the caller computed over ``e``'s current links, true when
    one of their cases' labels is above ``p`` (``_links_lateral``); by default the fragment
    finds that out itself."""
    granted = scopes(p, action, kind)
    if not granted:
        return "FALSE"
    clr, cav = args(int(p.clearance)), args(_caveats(p))
    above = (
        f"NOT EXISTS (SELECT 1 FROM case_evidence_history vh JOIN cases vc"  # noqa: S608
        f" ON vc.id = vh.case_id WHERE vh.evidence_id = {e}.id AND {current('vh')}"
        f" AND (vc.label_level > {clr} OR NOT vc.label_caveats <@ {cav}::text[]))"
        if blocked is None
        else f"{blocked} IS NOT TRUE"
    )
    cleared = f"{e}.label_level <= {clr} AND {e}.label_caveats <@ {cav}::text[] AND {above}"
    recorder = p.officer_id is not None and bool(
        granted & {Scope.NEED_TO_KNOW, Scope.OWN_RECORDING}
    )
    need: list[str] = []
    if Scope.ANY in granted:
        need.append("TRUE")
    if recorder:
        need.append(f"{e}.officer_id = {args(p.officer_id)}")
    if Scope.NEED_TO_KNOW in granted and p.cases:
        need.append(
            f"EXISTS (SELECT 1 FROM case_evidence_history nh WHERE nh.evidence_id = {e}.id"  # noqa: S608
            f" AND nh.case_id = ANY({args(sorted(p.cases))}::text[]) AND {current('nh')})"
        )
    return f"({cleared} AND ({' OR '.join(need) or 'FALSE'}))"


def case_filter(p: Principal, c: str, args: Args, action: Action = Action.LIST) -> str:
    """WHERE fragment on ``cases`` row ``c``: decide(p, action, its target) allows it."""
    granted = scopes(p, action, "case")
    if not granted:
        return "FALSE"
    need: list[str] = []
    if Scope.ANY in granted:
        need.append("TRUE")
    if Scope.NEED_TO_KNOW in granted and p.cases:
        need.append(f"{c}.id = ANY({args(sorted(p.cases))}::text[])")
    cleared = _cleared(p, f"{c}.label_level", f"{c}.label_caveats", args)
    return f"({cleared} AND ({' OR '.join(need) or 'FALSE'}))"


# -- targets: what decide() is asked about ---------------------------------------------------


_LABELS: dict[tuple[int, tuple[str, ...]], Label] = {}  # labels are immutable: memoised


def label_of(level: int, caveats: Iterable[str]) -> Label:
    """A stored label; IntegrityError if the row holds something no label can be."""
    key = (level, tuple(caveats))
    label = _LABELS.get(key)
    if label is None:
        try:
            label = Label(Level(level), frozenset(Caveat(c) for c in key[1]))
        except ValueError as exc:
            raise IntegrityError("a stored label is invalid") from exc
        if len(_LABELS) < 1024:  # only valid labels are kept, a handful in practice
            _LABELS[key] = label
    return label


def as_uuid(text: str) -> uuid.UUID | None:
    """The UUID ``text`` names, or None (an id that cannot exist)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


_LINK_FIELDS = (
    "ledger_idx",
    "case_id",
    "evidence_id",
    "action",
    "principal_id",
    "tag",
    "title",
    "label_level",
    "label_caveats",
    "case_idx",
    "case_tag",
)
"""What verifying one link row and its case's row needs, in the order ``_LINK_VALUES`` gives."""
LINK_CASE = _LINK_FIELDS.index("case_id")
LINK_CASE_IDX = _LINK_FIELDS.index("case_idx")
"""Where a ``history_column`` record holds the case id and the ledger index of the case row."""
_LINK_VALUES = (
    "h.ledger_idx, h.case_id, h.evidence_id, h.action, h.principal_id, h.tag,"
    " c.title, c.label_level, c.label_caveats, c.ledger_idx, c.tag"
)
_LINK_FROM = "FROM case_evidence_history h LEFT JOIN cases c ON c.id = h.case_id"
_LINK_ROWS = (
    f"SELECT {_LINK_VALUES} {_LINK_FROM}"
    " WHERE h.evidence_id = ANY($1::uuid[]) ORDER BY h.ledger_idx"
)

LinkHistory = tuple[
    dict[uuid.UUID, dict[str, Label]], dict[uuid.UUID, frozenset[str]], dict[uuid.UUID, RowTampered]
]
"""Per item: its current links with their cases' labels; every case it was ever linked to;
and, instead of both, why a row it depends on does not verify."""


def history_column(e: str) -> str:
    """An SQL expression for the whole link history of ``evidence {e}`` with its cases' rows
    (an array of records, oldest first), for ``fold_history``: one statement can then select
    an item and all that deciding on it needs."""
    return (
        f"ARRAY(SELECT ROW({_LINK_VALUES})"
        f" {_LINK_FROM} WHERE h.evidence_id = {e}.id ORDER BY h.ledger_idx)"
    )


async def link_state(
    db: Db, evidence_ids: list[uuid.UUID]
) -> tuple[dict[uuid.UUID, dict[str, Label]], dict[uuid.UUID, RowTampered]]:
    """For each evidence id, its currently linked cases and their labels, decided in Python
    from the whole link history of those items and their cases' rows, every one verified
    (``access_state``): the database cannot add, hide or relabel a link by a row it made.
    Items with a row that does not verify are in the second mapping instead (alarm raised)."""
    out, _ever, bad = await link_history(db, evidence_ids)
    return out, bad


async def link_history(db: Db, ids: list[uuid.UUID]) -> LinkHistory:
    """``link_state`` and, per item, every case it was ever linked to (verified link rows
    only): what a legal hold on a case reaches. Items with a row that does not verify are in
    the third mapping only."""
    state = await access_state.ready(db)
    rows = [dict(zip(_LINK_FIELDS, r, strict=True)) for r in await db.fetch(_LINK_ROWS, ids)]
    return await _fold(state, rows, ids)


async def fold_history(
    db: Db, histories: dict[uuid.UUID, Iterable[Iterable[object]]]
) -> LinkHistory:
    """``link_history`` of the items whose ``history_column`` was selected (item id → that
    column's value): the same decision, without another query. For ``pageitems``, which
    remembers whole items: their link rows are not remembered one by one."""
    state = await access_state.ready(db)
    rows = [dict(zip(_LINK_FIELDS, r, strict=True)) for h in histories.values() for r in h]
    return await _fold(state, rows, list(histories), remember=False)


async def _fold(
    state: access_state.AccessState,
    rows: Iterable[access_state.Row],
    evidence_ids: list[uuid.UUID],
    *,
    remember: bool = True,
) -> LinkHistory:
    """The link history of ``evidence_ids`` from their link rows (oldest first per item).
    ``remember=False``: link rows are checked in full and not remembered (a caller that
    remembers whole items); case rows, shared by many items, are remembered either way."""
    newest: dict[tuple[uuid.UUID, str], access_state.Row] = {}
    bad: dict[uuid.UUID, RowTampered] = {}
    cases: dict[str, RowTampered | None] = {}
    for r in rows:
        eid, case_id = r["evidence_id"], r["case_id"]
        try:
            state.check("case_evidence_history", r, remember=remember)
        except RowTampered as exc:
            await state.alarm(exc)
            bad.setdefault(eid, exc)
            continue
        newest[(eid, case_id)] = r  # rows come oldest first
        if case_id not in cases:
            cases[case_id] = await _case_problem(state, r)
    out: dict[uuid.UUID, dict[str, Label]] = {i: {} for i in evidence_ids}
    ever: dict[uuid.UUID, set[str]] = {i: set() for i in evidence_ids}
    for (eid, case_id), r in newest.items():
        problem = cases[case_id]
        if problem is not None:
            bad.setdefault(eid, problem)
            continue
        ever[eid].add(case_id)
        if r["action"] == "linked":
            out[eid][case_id] = label_of(r["label_level"], r["label_caveats"])
    for eid in bad:
        out.pop(eid, None)
        ever.pop(eid, None)
    return out, {i: frozenset(c) for i, c in ever.items()}, bad


async def _case_problem(state: access_state.AccessState, r: access_state.Row) -> RowTampered | None:
    """Why the case row joined to link row ``r`` cannot be used (alarm raised), or None."""
    case = {
        "id": r["case_id"],
        "title": r["title"],
        "label_level": r["label_level"],
        "label_caveats": r["label_caveats"],
        "ledger_idx": r["case_idx"],
        "tag": r["case_tag"],
    }
    try:
        if r["case_idx"] is None:
            raise RowTampered("cases", (r["case_id"],), "a linked case has no row")
        state.check("cases", case)
    except RowTampered as exc:
        await state.alarm(exc)
        return exc
    return None


async def linked_cases(db: Db, evidence_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Label]]:
    """For each evidence id, its currently linked cases and their labels (``link_state``);
    ``RowTampered`` if a row any of them depends on does not verify."""
    out, bad = await link_state(db, evidence_ids)
    for exc in bad.values():
        raise exc
    return out


# -- evidence queries ------------------------------------------------------------------------
