"""Cases, evidence links and labels.

Guarantees:

- Creating or retitling a case is a ``case`` entry; the title and the case id go into the ledger
  only as commitments. Linking and unlinking are ``linked`` / ``unlinked`` entries (evidence id
  and SHA-256 public, case id committed) and each appends a row to the link history in the same
  transaction; no history row is ever changed or deleted. The current state is re-checked
  under the ledger's lock, so a link and a disposal, or two links, cannot race.
- Linking needs ``link`` on both the evidence and the case. Creating a case needs ``link`` on
  it, at a label the actor is cleared for.
- ``set_label`` needs ``label`` on the target (``access.decide``: ``admin`` or an assigned
  ``legal_reviewer``), may not set a label above the actor's own clearance, and appends a
  ``labelled`` entry plus a label-history row. A rendition's stored label is raised to dominate
  its source's (``access.rendition_label``), and raising an evidence label raises every rendition
  below it in the same transaction. Evidence is always enforced at the join of its own label
  and its current cases' labels (``visibility``), however it is reached.
- Encryption at rest (``vault.reseal``): a label set to ``confidential`` or above (or with a
  caveat), and a link to such a case, enqueue re-encryption in the same transaction. Lowering a
  label from above that threshold to below it is an ``admin`` decision; the content stays
  encrypted unless ``unseal=True`` asks for decryption (queued the same way).
- Refusals go through ``audit.guard``: recorded, and invisible targets are ``NotFound``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from vault import audit
from vault.access import (
    Action,
    Principal,
    Role,
    Target,
    TargetKind,
    decide,
    rendition_label,
)
from vault.audit import authorize, target
from vault.db import Conn, Db
from vault.errors import BadRequest, Conflict, Forbidden
from vault.events import emit
from vault.labels import Label
from vault.ledger import LedgerWriter, make_entry
from vault.reseal import enqueue_seal
from vault.visibility import (
    Args,
    EvidenceQuery,
    EvidenceSummary,
    case_filter,
    count_evidence,
    current,
    label_of,
    list_evidence,
)

__all__ = [
    "CaseDetail",
    "CaseSummary",
    "create",
    "link",
    "list_cases",
    "retitle",
    "set_label",
    "show",
    "unlink",
]

MAX_TITLE = 2000


class _StateChanged(ValueError):
    """Raised inside a ledger effect: the state checked before appending no longer holds."""


def _check_case(case_id: str, title: str) -> None:
    if not 0 < len(case_id) <= 128 or not case_id.isprintable():
        raise BadRequest("case id: 1 to 128 printable characters")
    if not 0 < len(title) <= MAX_TITLE:
        raise BadRequest(f"case title: 1 to {MAX_TITLE} characters")


def _require_cleared(actor: Principal, label: Label) -> None:
    if not Label(actor.clearance, actor.caveats).dominates(label):
        raise Forbidden("you may not set a label above your own clearance and caveats")


async def create(
    db: Db, ledger: LedgerWriter, actor: Principal, case_id: str, title: str, label: Label
) -> int:
    """Register a case from the case system; Conflict if the id is already registered."""
    _check_case(case_id, title)
    _require_cleared(actor, label)
    await audit.guard(
        ledger, actor, Action.LINK, "case", case_id, Target("case", label, frozenset({case_id}))
    )

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await conn.execute(
            "INSERT INTO cases (id, title, label_level, label_caveats, ledger_idx)"
            " VALUES ($1, $2, $3, $4, $5)",
            case_id,
            title,
            int(label.level),
            [c.value for c in label.sorted_caveats],
            indexes[0],
        )
        await _label_row(conn, indexes[0], "case", case_id, label, actor.id)
        await audit.add_refs(conn, [(indexes[0], "case", case_id)])

    entry = make_entry(
        "case",
        {"op": "created", "label": label.to_json()},
        {"case": case_id, "title": title, "by": actor.id},
    )
    try:
        (idx,) = await ledger.append([entry], effect=effect)
    except asyncpg.UniqueViolationError:
        raise Conflict("a case with this id is already registered") from None
    return idx


async def retitle(db: Db, ledger: LedgerWriter, actor: Principal, case_id: str, title: str) -> int:
    """Change a case's title (a new commitment in a ``case`` entry)."""
    _check_case(case_id, title)
    await authorize(db, ledger, actor, Action.LINK, "case", case_id)

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await conn.execute(
            "UPDATE cases SET title = $2, updated_at = now(), ledger_idx = $3 WHERE id = $1",
            case_id,
            title,
            indexes[0],
        )
        await audit.add_refs(conn, [(indexes[0], "case", case_id)])

    entry = make_entry(
        "case", {"op": "retitled"}, {"case": case_id, "title": title, "by": actor.id}
    )
    (idx,) = await ledger.append([entry], effect=effect)
    return idx


async def _linked_now(conn: Conn, case_id: str, evidence_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM case_evidence_history h WHERE h.case_id = $1 AND h.evidence_id = $2"  # noqa: S608
            f" AND {current('h')}",
            case_id,
            evidence_id,
        )
    )


async def _link(
    db: Db, ledger: LedgerWriter, actor: Principal, case_id: str, evidence_id: str, on: bool
) -> int:
    await authorize(db, ledger, actor, Action.LINK, "evidence", evidence_id)
    await authorize(db, ledger, actor, Action.LINK, "case", case_id)
    eid = uuid.UUID(evidence_id)
    sha256 = await db.fetchval("SELECT sha256 FROM evidence WHERE id = $1", eid)
    action = "linked" if on else "unlinked"

    async def effect(conn: Conn, indexes: list[int]) -> None:
        if await _linked_now(conn, case_id, eid) == on:
            raise _StateChanged(f"already {action}")
        if on and await conn.fetchval("SELECT 1 FROM dispositions WHERE evidence_id = $1", eid):
            raise _StateChanged("the evidence was disposed of")
        await conn.execute(
            "INSERT INTO case_evidence_history (ledger_idx, case_id, evidence_id, action,"
            " principal_id) VALUES ($1, $2, $3, $4, $5)",
            indexes[0],
            case_id,
            eid,
            action,
            actor.id,
        )
        await audit.add_refs(
            conn, [(indexes[0], "case", case_id), (indexes[0], "evidence", str(eid))]
        )
        if on:
            case_label = await _stored_label(conn, "case", case_id)
            if case_label.needs_encryption:
                await enqueue_seal(conn, "evidence", str(eid), indexes[0])
            await emit(
                conn,
                "evidence.linked",
                {"case_id": case_id, "evidence_id": str(eid), "ledger_index": indexes[0]},
            )

    entry = make_entry(
        action, {"evidence_id": str(eid), "sha256": sha256}, {"case": case_id, "by": actor.id}
    )
    try:
        (idx,) = await ledger.append([entry], effect=effect)
    except _StateChanged as exc:
        raise Conflict(f"evidence {eid} not changed: {exc}") from None
    return idx


async def link(
    db: Db, ledger: LedgerWriter, actor: Principal, case_id: str, evidence_id: str
) -> int:
    """Link evidence to a case; Conflict if it is already linked or was disposed of."""
    return await _link(db, ledger, actor, case_id, evidence_id, True)


async def unlink(
    db: Db, ledger: LedgerWriter, actor: Principal, case_id: str, evidence_id: str
) -> int:
    """Unlink evidence from a case (the history keeps the link); Conflict if not linked."""
    return await _link(db, ledger, actor, case_id, evidence_id, False)


@dataclass(frozen=True)
class CaseDetail:
    id: str
    title: str
    label: Label
    created_at: datetime
    updated_at: datetime
    evidence_count: int  # visible to the reader
    evidence: list[EvidenceSummary]  # the first page of it


async def show(
    db: Db, ledger: LedgerWriter, actor: Principal, case_id: str, *, limit: int = 100
) -> CaseDetail:
    """A case's metadata and its evidence visible to the reader (an audited read)."""
    await authorize(db, ledger, actor, Action.READ_METADATA, "case", case_id)
    row = await db.fetchrow("SELECT * FROM cases WHERE id = $1", case_id)
    assert row is not None  # authorize raised NotFound otherwise
    query = EvidenceQuery(case_id=case_id)
    page = await list_evidence(db, actor, query, limit=limit)
    return CaseDetail(
        id=case_id,
        title=row["title"],
        label=label_of(row["label_level"], row["label_caveats"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        evidence_count=await count_evidence(db, actor, query),
        evidence=page.items,
    )


@dataclass(frozen=True)
class CaseSummary:
    id: str
    label: Label
    created_at: datetime
    updated_at: datetime
    title: str | None = None


async def list_cases(db: Db, principal: Principal) -> list[CaseSummary]:
    """The cases the principal may list, by id, each with its title where the principal may
    also ``read_metadata`` it (decided per case, as ``show`` would; None otherwise)."""
    args = Args()
    rows = await db.fetch(
        "SELECT c.id, c.title, c.label_level, c.label_caveats, c.created_at, c.updated_at"  # noqa: S608
        f" FROM cases c WHERE {case_filter(principal, 'c', args)} ORDER BY c.id",
        *args.values,
    )
    labels = [label_of(r["label_level"], r["label_caveats"]) for r in rows]
    out = []
    for r, lab in zip(rows, labels, strict=True):
        meta = decide(principal, Action.READ_METADATA, Target("case", lab, frozenset({r["id"]})))
        title = r["title"] if meta.allowed else None
        out.append(CaseSummary(r["id"], lab, r["created_at"], r["updated_at"], title))
    return out


# -- labels ----------------------------------------------------------------------------------

_TABLES = {"evidence": "evidence", "rendition": "renditions", "case": "cases"}


async def _label_row(
    conn: Conn, idx: int, kind: str, target_id: str, label: Label, by: str
) -> None:
    await conn.execute(
        "INSERT INTO label_history (ledger_idx, target_kind, target_id, label_level,"
        " label_caveats, principal_id) VALUES ($1, $2, $3, $4, $5, $6)",
        idx,
        kind,
        target_id,
        int(label.level),
        [c.value for c in label.sorted_caveats],
        by,
    )


async def _stored_label(conn: Db, kind: TargetKind, key: object, lock: bool = False) -> Label:
    row = await conn.fetchrow(
        f"SELECT label_level, label_caveats FROM {_TABLES[kind]} WHERE id = $1"  # noqa: S608
        + (" FOR UPDATE" if lock else ""),
        key,
    )
    assert row is not None
    return label_of(row["label_level"], row["label_caveats"])


async def set_label(
    db: Db,
    ledger: LedgerWriter,
    actor: Principal,
    kind: TargetKind,
    target_id: str,
    label: Label,
    *,
    unseal: bool = False,
) -> Label:
    """Set the label of an evidence item, rendition or case; return the label stored (for a
    rendition, raised to dominate its source's). ``unseal``: an admin lowering a label below
    the encryption threshold also asks for the content to be stored plain again."""
    if kind not in _TABLES:
        raise BadRequest("labels apply to evidence, renditions and cases")
    await audit.guard(
        ledger, actor, Action.LABEL, kind, target_id, await target(db, kind, target_id)
    )
    _require_cleared(actor, label)
    key: object = target_id if kind == "case" else uuid.UUID(target_id)
    previous = await _stored_label(db, kind, key)
    stored = label
    if kind == "rendition":
        source = await db.fetchrow(
            "SELECT e.label_level, e.label_caveats FROM renditions r JOIN evidence e"
            " ON e.id = r.evidence_id WHERE r.id = $1",
            key,
        )
        assert source is not None
        stored = rendition_label(label_of(source["label_level"], source["label_caveats"]), label)
    lowering = previous.needs_encryption and not stored.needs_encryption
    if lowering and Role.ADMIN not in actor.roles:
        raise Forbidden("lowering a label below confidential is an admin decision")

    async def effect(conn: Conn, indexes: list[int]) -> None:
        idx = indexes[0]
        if await _stored_label(conn, kind, key, lock=True) != previous:
            raise _StateChanged("the label changed meanwhile; read it again")
        await conn.execute(
            f"UPDATE {_TABLES[kind]} SET label_level = $2, label_caveats = $3 WHERE id = $1",  # noqa: S608
            key,
            int(stored.level),
            [c.value for c in stored.sorted_caveats],
        )
        await _label_row(conn, idx, kind, target_id, stored, actor.id)
        await audit.add_refs(conn, [(idx, kind, target_id)])
        if kind == "evidence":
            await _raise_renditions(conn, idx, key, stored, actor.id)
        if stored.needs_encryption:
            await enqueue_seal(conn, kind, target_id, idx)
        elif lowering and unseal:
            await enqueue_seal(conn, kind, target_id, idx, unseal=True)

    fields: dict[str, Any] = {
        "target_kind": kind,
        "label": stored.to_json(),
        "previous": previous.to_json(),
    }
    secrets: dict[str, Any] = {"by": actor.id}
    if kind == "case":
        secrets["case"] = target_id
    else:
        fields[kind] = str(key)
    try:
        await ledger.append([make_entry("labelled", fields, secrets)], effect=effect)
    except _StateChanged as exc:
        raise Conflict(str(exc)) from None
    return stored


async def _raise_renditions(
    conn: Conn, idx: int, evidence_id: object, floor: Label, by: str
) -> None:
    rows = await conn.fetch(
        "SELECT id, label_level, label_caveats FROM renditions WHERE evidence_id = $1 FOR UPDATE",
        evidence_id,
    )
    for r in rows:
        own = label_of(r["label_level"], r["label_caveats"])
        raised = rendition_label(floor, own)
        if raised == own:
            continue
        await conn.execute(
            "UPDATE renditions SET label_level = $2, label_caveats = $3 WHERE id = $1",
            r["id"],
            int(raised.level),
            [c.value for c in raised.sorted_caveats],
        )
        await _label_row(conn, idx, "rendition", str(r["id"]), raised, by)
        await audit.add_refs(conn, [(idx, "rendition", str(r["id"]))])
