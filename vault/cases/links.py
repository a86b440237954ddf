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
- Encryption at rest (``vault.storage.reseal``): a label set to ``confidential`` or above (or with a
  caveat), and a link to such a case, enqueue re-encryption in the same transaction. Lowering a
  label from above that threshold to below it is an ``admin`` decision; the content stays
  encrypted unless ``unseal=True`` asks for decryption (queued the same way).
- Refusals go through ``decisions.guard``: recorded, and invisible targets are ``NotFound``.
- Case rows and link-history rows carry row tags (``vault.access.state``) computed in the
  transaction of their entry; a case row names the entry that last set it (created, retitled,
  labelled). Every read here that decides something verifies them first.
- Every change of an evidence item's effective label is an entry: a link, an unlink or a case's
  new label that moves it appends, with its own entry, a ``labelled`` entry per item moved
  (``target_kind`` evidence, ``"effective": true``, ``cause``, ``previous`` and ``label``; the
  case committed), indexed under the item so its trail and custody timeline show it. If the
  labels changed between planning and appending, nothing is written (Conflict).
  ``link_reporting`` also returns the label before and after, so the CLI and the API say at
  once that a link raised it (readers below the new label lose the item in every case).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from vault import evidence as evrows
from vault.access import decisions
from vault.access import state as access_state
from vault.access.filters import Args, case_filter, current, label_of, linked_cases
from vault.access.listing import EvidenceQuery, EvidenceSummary, count_evidence, list_evidence
from vault.access.principals import notify_auth_change
from vault.access.targets import authorize, authorize_then, case_row
from vault.db import Conn, Db
from vault.errors import BadRequest, Conflict, Forbidden, NotFound
from vault.events import emit
from vault.keys.hostmac import HostMac
from vault.ledger import LedgerWriter, PreparedEntry, make_entry
from vault.policy.decide import (
    Action,
    Principal,
    Role,
    Target,
    TargetKind,
    decide,
    effective_label,
    rendition_label,
    visible,
)
from vault.policy.labels import Label
from vault.storage.reseal import enqueue_seal

__all__ = [
    "CaseDetail",
    "CaseSummary",
    "LinkResult",
    "create",
    "link",
    "link_reporting",
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
    await decisions.guard(
        ledger, actor, Action.LINK, "case", case_id, Target("case", label, frozenset({case_id}))
    )

    state = access_state.current()

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await _write_case(conn, state, case_id, title, label, indexes[0], insert=True)
        await _label_row(conn, indexes[0], "case", case_id, label, actor.id)
        await decisions.add_refs(conn, [(indexes[0], "case", case_id)])

    entries = [
        make_entry(
            "case",
            {"op": "created", "label": label.to_json()},
            {"case": case_id, "title": title, "by": actor.id},
        )
    ]
    try:
        indexes = await ledger.append(entries, effect=effect)
    except asyncpg.UniqueViolationError:
        raise Conflict("a case with this id is already registered") from None
    state.learn(entries, indexes)
    return indexes[0]


async def _write_case(
    conn: Conn,
    state: access_state.AccessState,
    case_id: str,
    title: str,
    label: Label,
    idx: int,
    *,
    insert: bool = False,
) -> None:
    """Store the case row as entry ``idx`` sets it, with its tag (``access_state``)."""
    row = {
        "id": case_id,
        "title": title,
        "label_level": int(label.level),
        "label_caveats": [c.value for c in label.sorted_caveats],
        "ledger_idx": idx,
    }
    values = (case_id, title, row["label_level"], row["label_caveats"], idx)
    tag = access_state.tag(state.mac, "cases", row)
    if insert:
        await conn.execute(
            "INSERT INTO cases (id, title, label_level, label_caveats, ledger_idx, tag)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            *values,
            tag,
        )
        return
    await conn.execute(
        "UPDATE cases SET title = $2, label_level = $3, label_caveats = $4, ledger_idx = $5,"
        " tag = $6, updated_at = now() WHERE id = $1",
        *values,
        tag,
    )
    await notify_auth_change(conn)  # other processes' mirrors read the entry before deciding


async def retitle(db: Db, ledger: LedgerWriter, actor: Principal, case_id: str, title: str) -> int:
    """Change a case's title (a new commitment in a ``case`` entry)."""
    _check_case(case_id, title)
    await authorize(db, ledger, actor, Action.LINK, "case", case_id)

    state = access_state.current()

    async def effect(conn: Conn, indexes: list[int]) -> None:
        row = await case_row(conn, case_id, lock=True)
        if row is None:  # cases are never deleted: only a database edit gets here
            raise NotFound()
        label = label_of(row["label_level"], row["label_caveats"])
        await _write_case(conn, state, case_id, title, label, indexes[0])
        await decisions.add_refs(conn, [(indexes[0], "case", case_id)])

    entries = [
        make_entry("case", {"op": "retitled"}, {"case": case_id, "title": title, "by": actor.id})
    ]
    indexes = await ledger.append(entries, effect=effect)
    state.learn(entries, indexes)
    return indexes[0]


async def _linked_now(conn: Conn, case_id: str, evidence_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM case_evidence_history h WHERE h.case_id = $1 AND h.evidence_id = $2"  # noqa: S608
            f" AND {current('h')}",
            case_id,
            evidence_id,
        )
    )


@dataclass(frozen=True)
class LinkResult:
    """What a link or unlink did: its entry, and the evidence's effective label before and
    after (equal when the case's label did not move it)."""

    index: int
    previous: Label
    label: Label

    @property
    def raised(self) -> bool:
        """The effective label went up: readers cleared for the old one but not the new one
        no longer see the item, in any case (a ``labelled`` entry says so in the ledger)."""
        return self.label != self.previous and self.label.dominates(self.previous)


async def _link(
    db: Db, ledger: LedgerWriter, actor: Principal, case_id: str, evidence_id: str, on: bool
) -> LinkResult:
    await authorize(db, ledger, actor, Action.LINK, "evidence", evidence_id)
    await authorize(db, ledger, actor, Action.LINK, "case", case_id)
    eid = uuid.UUID(evidence_id)
    row = await evrows.load_evidence(db, ledger.mac, eid)  # the hash the entry names: verified
    if row is None:  # authorize raised NotFound for a missing one; gone since
        raise NotFound()
    sha256 = row.sha256
    action = "linked" if on else "unlinked"
    state = access_state.current()
    before = await _effective_labels(db, [eid])
    after = {eid: await _effective_after(db, eid, case_id, on)}
    entries = [
        make_entry(
            action, {"evidence_id": str(eid), "sha256": sha256}, {"case": case_id, "by": actor.id}
        ),
        *_label_entries(before, after, action, case_id, actor.id),
    ]

    async def effect(conn: Conn, indexes: list[int]) -> None:
        if await _linked_now(conn, case_id, eid) == on:
            raise _StateChanged(f"already {action}")
        if on and await conn.fetchval("SELECT 1 FROM dispositions WHERE evidence_id = $1", eid):
            raise _StateChanged("the evidence was disposed of")
        if await _effective_labels(conn, [eid]) != before:
            raise _StateChanged("its label changed meanwhile; try again")
        row = {
            "ledger_idx": indexes[0],
            "case_id": case_id,
            "evidence_id": eid,
            "action": action,
            "principal_id": actor.id,
        }
        await conn.execute(
            "INSERT INTO case_evidence_history (ledger_idx, case_id, evidence_id, action,"
            " principal_id, tag) VALUES ($1, $2, $3, $4, $5, $6)",
            indexes[0],
            case_id,
            eid,
            action,
            actor.id,
            access_state.tag(state.mac, "case_evidence_history", row),
        )
        refs = [(indexes[0], "case", case_id), (indexes[0], "evidence", str(eid))]
        refs += [(i, "evidence", str(eid)) for i in indexes[1:]]  # the label change
        await decisions.add_refs(conn, refs)
        if on:
            case_label = await _stored_label(conn, "case", case_id)
            if case_label.needs_encryption:
                await enqueue_seal(conn, "evidence", str(eid), indexes[0])
            await emit(
                conn,
                "evidence.linked",
                {"case_id": case_id, "evidence_id": str(eid), "ledger_index": indexes[0]},
            )

    try:
        (idx, *_) = await ledger.append(entries, effect=effect)
    except _StateChanged as exc:
        raise Conflict(f"evidence {eid} not changed: {exc}") from None
    return LinkResult(idx, before[eid], after[eid])


async def _label_parts(
    db: Db, evidence_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[Label, dict[str, Label]]]:
    """Per evidence item: its own label and its current cases' labels (verified links and
    cases, ``RowTampered`` otherwise)."""
    rows = await db.fetch(
        "SELECT id, label_level, label_caveats FROM evidence WHERE id = ANY($1::uuid[])",
        evidence_ids,
    )
    cases = await linked_cases(db, evidence_ids)
    return {r["id"]: (label_of(r["label_level"], r["label_caveats"]), cases[r["id"]]) for r in rows}


async def _effective_labels(db: Db, evidence_ids: list[uuid.UUID]) -> dict[uuid.UUID, Label]:
    """The items' effective labels: own joined with their current cases' (``_label_parts``)."""
    parts = await _label_parts(db, evidence_ids)
    return {eid: effective_label(own, cases.values()) for eid, (own, cases) in parts.items()}


async def _effective_after(db: Db, eid: uuid.UUID, case_id: str, on: bool) -> Label:
    """The evidence's effective label once the case is linked (``on``) or unlinked."""
    own, cases = (await _label_parts(db, [eid]))[eid]
    cases = dict(cases)
    if on:
        cases[case_id] = await _stored_label(db, "case", case_id)
    else:
        cases.pop(case_id, None)
    return effective_label(own, cases.values())


def _label_entries(
    before: dict[uuid.UUID, Label],
    after: dict[uuid.UUID, Label],
    cause: str,
    case_id: str,
    by: str,
) -> list[PreparedEntry]:
    """A ``labelled`` entry for each evidence item whose effective label changes: the label
    enforced on it (``"effective": true``; its own stored label is unchanged), with the
    previous one and what caused the change (``linked``, ``unlinked``, ``case-labelled``)."""
    out = []
    for eid, new in sorted(after.items(), key=lambda item: str(item[0])):
        old = before.get(eid)
        if old is None or old == new:
            continue
        fields = {
            "target_kind": "evidence",
            "evidence": str(eid),
            "label": new.to_json(),
            "previous": old.to_json(),
            "effective": True,
            "cause": cause,
        }
        out.append(make_entry("labelled", fields, {"case": case_id, "by": by}))
    return out


async def link(
    db: Db, ledger: LedgerWriter, actor: Principal, case_id: str, evidence_id: str
) -> int:
    """Link evidence to a case; Conflict if it is already linked or was disposed of."""
    return (await link_reporting(db, ledger, actor, case_id, evidence_id)).index


async def link_reporting(
    db: Db, ledger: LedgerWriter, actor: Principal, case_id: str, evidence_id: str
) -> LinkResult:
    """``link``, saying whether it raised the evidence's effective label (``LinkResult``)."""
    return await _link(db, ledger, actor, case_id, evidence_id, True)


async def unlink(
    db: Db, ledger: LedgerWriter, actor: Principal, case_id: str, evidence_id: str
) -> int:
    """Unlink evidence from a case (the history keeps the link); Conflict if not linked."""
    return (await _link(db, ledger, actor, case_id, evidence_id, False)).index


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
    """A case's metadata and its evidence visible to the reader (an audited read; its entry
    appended once everything is read: ``targets.authorize_then``)."""

    async def serve(_target: Target) -> CaseDetail | None:
        row = await case_row(db, case_id)
        if row is None:  # gone since the decision
            return None
        query = EvidenceQuery(case_id=case_id)
        page = await list_evidence(db, actor, query, limit=limit, mac=ledger.mac)
        return CaseDetail(
            id=case_id,
            title=row["title"],
            label=label_of(row["label_level"], row["label_caveats"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            evidence_count=await count_evidence(db, actor, query),
            evidence=page.items,
        )

    return await authorize_then(db, ledger, actor, Action.READ_METADATA, "case", case_id, serve)


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
        "SELECT c.* FROM cases c"  # noqa: S608
        f" WHERE {case_filter(principal, 'c', args)} ORDER BY c.id",
        *args.values,
    )
    # The filter ran on rows the database could have forged: keep those that verify and
    # that the principal may list by their verified labels; the title only where the
    # principal may read the case's metadata.
    out = []
    for r in await (await access_state.ready(db)).verified("cases", rows):
        label = label_of(r["label_level"], r["label_caveats"])
        target = Target("case", label, frozenset({r["id"]}))
        if visible(principal, target):
            meta = decide(principal, Action.READ_METADATA, target)
            title = r["title"] if meta.allowed else None
            out.append(CaseSummary(r["id"], label, r["created_at"], r["updated_at"], title))
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
    if kind == "case":  # verified (access_state); evidence and renditions are not this module's
        case = await case_row(conn, str(key), lock=lock)
        if case is None:  # a case is never deleted: only a database edit gets here
            raise NotFound()
        return label_of(case["label_level"], case["label_caveats"])
    row = await conn.fetchrow(
        f"SELECT label_level, label_caveats FROM {_TABLES[kind]} WHERE id = $1"  # noqa: S608
        + (" FOR UPDATE" if lock else ""),
        key,
    )
    if row is None:
        raise NotFound()
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
    await authorize(db, ledger, actor, Action.LABEL, kind, target_id)
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
        if source is None:
            raise NotFound()
        stored = rendition_label(label_of(source["label_level"], source["label_caveats"]), label)
    lowering = previous.needs_encryption and not stored.needs_encryption
    if lowering and Role.ADMIN not in actor.roles:
        raise Forbidden("lowering a label below confidential is an admin decision")
    state = access_state.current()
    # Every effective label the change moves is an entry of its own (after the first).
    parts = await _label_parts(db, await _linked_evidence(db, kind, target_id))
    before = {eid: effective_label(own, cases.values()) for eid, (own, cases) in parts.items()}
    after = {
        eid: effective_label(own, {**cases, target_id: stored}.values())
        for eid, (own, cases) in parts.items()
        if target_id in cases
    }
    more = _label_entries(before, after, "case-labelled", target_id, actor.id)

    async def effect(conn: Conn, indexes: list[int]) -> None:
        idx = indexes[0]
        if await _stored_label(conn, kind, key, lock=True) != previous:
            raise _StateChanged("the label changed meanwhile; read it again")
        if await _effective_labels(conn, await _linked_evidence(conn, kind, target_id)) != before:
            raise _StateChanged("labels changed meanwhile; try again")
        if kind == "case":
            case = await case_row(conn, target_id)
            if case is None:  # a case is never deleted: only a database edit gets here
                raise NotFound()
            await _write_case(conn, state, target_id, case["title"], stored, idx)
        else:  # evidence and renditions are re-tagged with this entry (vault.evidence)
            await evrows.set_label(conn, ledger.mac, kind, uuid.UUID(str(key)), stored, idx)
        for i, entry in zip(indexes[1:], more, strict=True):
            eid = json.loads(entry.data)["evidence"]
            await decisions.add_refs(conn, [(i, "evidence", eid), (i, "case", target_id)])
        await _label_row(conn, idx, kind, target_id, stored, actor.id)
        await decisions.add_refs(conn, [(idx, kind, target_id)])
        if kind == "evidence":
            await _raise_renditions(conn, ledger.mac, idx, key, stored, actor.id)
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
    entries = [make_entry("labelled", fields, secrets), *more]
    try:
        indexes = await ledger.append(entries, effect=effect)
    except _StateChanged as exc:
        raise Conflict(str(exc)) from None
    state.learn(entries, indexes)
    return stored


async def _linked_evidence(db: Db, kind: str, case_id: str) -> list[uuid.UUID]:
    """The evidence a case's label change can move: every item ever linked to it (the
    verified link state then says which are linked now); none for other kinds."""
    if kind != "case":
        return []
    rows = await db.fetch(
        "SELECT DISTINCT evidence_id FROM case_evidence_history WHERE case_id = $1"
        " ORDER BY evidence_id",
        case_id,
    )
    return [r["evidence_id"] for r in rows]


async def _raise_renditions(
    conn: Conn, mac: HostMac, idx: int, evidence_id: object, floor: Label, by: str
) -> None:
    evidence_id = uuid.UUID(str(evidence_id))
    for rid, raised in await evrows.raise_renditions(conn, mac, evidence_id, floor, idx):
        await _label_row(conn, idx, "rendition", str(rid), raised, by)
        await decisions.add_refs(conn, [(idx, "rendition", str(rid))])
