"""Audit: every decision about content is in the ledger before anything is done about it.

Guarantees:

- ``guard`` asks ``access.decide`` (a missing target is ``NOT_FOUND``, exactly like an invisible
  one), appends an ``accessed`` or ``denied`` entry, and only then returns or raises ``NotFound`` /
  ``Forbidden``. Content actions (read metadata, stream, download, export, verify) are recorded
  whether allowed or denied; other actions are recorded when denied (``list`` never: listings are
  filtered, not refused). If the entry cannot be appended, the action fails: fail closed. The
  database being down or the append not written within ``wait`` seconds (default
  ``RECORD_TIMEOUT``) is ``Unavailable``, and then no entry is committed later either (the
  ledger's ``within``): an answer of 503 leaves no ``accessed`` entry behind. Any other failure
  propagates as itself (a bug is not an outage).
- An entry never holds the principal id or the target id in clear: both are salted commitments
  (fields ``principal`` and ``target``); the action, the target kind and, for denials, the
  reason (which never reveals anything above the caller's clearance, see ``access``) are public.
- ``evidence_target`` / ``rendition_target`` / ``case_target`` build the ``access.Target`` of a
  stored item with its effective label (the item's own joined with every current case's, and
  for a rendition also its source's) and current cases; None when there is no such item.
  ``authorize`` = load the target + ``guard``; ``authorize_then`` reads what the answer needs
  between the decision and its entry, so a request that fails on a read leaves no entry, and
  its ``commit`` (what the action writes: a job queued) runs in the entry's own transaction, so
  the entry and what it records are committed together or not at all.
- ``guard_entries`` decides reading raw ledger entries (entry bundles): ``read_metadata`` on
  the whole ledger (:data:`LEDGER_ENTRIES`: no case, labelled top_secret with every caveat,
  since entries name the ids, labels and hashes of every item at every label), so only a role
  granting it case-independently (auditor, admin, case_system) held by a principal cleared for
  everything may read them. A refusal is a ``denied`` entry and ``Forbidden`` with one fixed
  reason (the ledger is public knowledge; its checkpoints and hash tiles are served to all). An
  allowed read is NOT an entry: a mirror re-reading the growing tail would otherwise append an
  entry per poll and chase its own writes; the access log names who read which bundle.
- ``trail`` finds a case's, an evidence item's or a principal's entries (the principal through
  the openings table), is itself an audited ``read_metadata`` decision on the ledger (its entries
  read before its own is appended, which joins the trail from within that append), and leaves
  out every entry that names an evidence item, rendition or case the reader may not list.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from vault import evidence as evrows
from vault.access import state as access_state
from vault.access.filters import label_of, linked_cases
from vault.db import Conn, Db, is_outage
from vault.errors import BadRequest, Forbidden, NotFound, Unavailable
from vault.keys.hostmac import HostMac, RowTampered
from vault.ledger import LedgerWriter, make_entry
from vault.ledger.sequencer import Effect
from vault.policy.decide import (
    NOT_FOUND_REASON,
    ROLE_GRANTS,
    Action,
    Decision,
    Principal,
    Scope,
    Target,
    TargetKind,
    absent,
    decide,
    effective_label,
    rendition_label,
    visible,
)
from vault.policy.labels import INTERNAL_LABEL, Caveat, Label, Level
from verify.canonical import canonical_json

__all__ = [
    "CONTENT_ACTIONS",
    "LEDGER_ENTRIES",
    "REF_KINDS",
    "TrailEntry",
    "add_refs",
    "authorize",
    "authorize_then",
    "case_row",
    "case_target",
    "evidence_target",
    "guard",
    "guard_entries",
    "load_target",
    "record",
    "rendition_target",
    "rendition_target_of",
    "target",
    "target_of",
    "trail",
]

CONTENT_ACTIONS = frozenset(
    {Action.READ_METADATA, Action.STREAM, Action.DOWNLOAD, Action.EXPORT, Action.VERIFY}
)
REF_KINDS = frozenset({"evidence", "rendition", "case"})
RECORD_TIMEOUT = 10.0
TAMPERED_REASON = "integrity: the stored state does not verify"
"""The reason of a ``denied`` entry for a decision refused because a row it depends on does not
verify (evidence, renditions, cases, links, principals: ``vault.evidence``, ``access_state``)."""
MAX_ID = 256
_T = TypeVar("_T")


async def add_refs(conn: Conn, refs: Iterable[tuple[int, str, str]]) -> None:
    """Index entries by what they are about: (ledger index, ref kind, ref id) rows."""
    rows = [(kind, ref, idx) for idx, kind, ref in refs if kind in REF_KINDS]
    if rows:
        await conn.executemany(
            "INSERT INTO ledger_refs (ref_kind, ref_id, ledger_idx) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            rows,
        )


def _refs_effect(refs: Sequence[tuple[str, str]]) -> Effect:
    async def effect(conn: Conn, indexes: list[int]) -> None:
        await add_refs(conn, [(indexes[0], kind, ref) for kind, ref in refs])

    return effect


def _then(first: Effect, second: Effect) -> Effect:
    async def effect(conn: Conn, indexes: list[int]) -> None:
        await first(conn, indexes)
        await second(conn, indexes)

    return effect


async def record(
    ledger: LedgerWriter,
    principal: Principal,
    action: Action,
    target_kind: TargetKind,
    target_id: str,
    allowed: bool,
    reason: str,
    *,
    refs: Sequence[tuple[str, str]] | None = None,
    wait: float | None = None,
    extra: Mapping[str, Any] | None = None,
    effect: Effect | None = None,
) -> int:
    """Append ``accessed`` (allowed) or ``denied``; return its index. Unavailable on failure.
    ``extra``: further public fields (e.g. ``integrity_override``), never classified values.
    ``effect``: runs in the entry's transaction (after its refs): both commit, or neither."""
    if len(target_id) > MAX_ID:
        raise BadRequest(f"identifier longer than {MAX_ID} characters")
    fields: dict[str, Any] = {**(extra or {}), "action": action.value, "target_kind": target_kind}
    if not allowed:
        fields["reason"] = reason
    entry = make_entry(
        "accessed" if allowed else "denied",
        fields,
        {"principal": principal.id, "target": target_id},
    )
    if refs is None:
        refs = [(target_kind, target_id)]
    write = _refs_effect(refs)
    if effect is not None:
        write = _then(write, effect)
    within = RECORD_TIMEOUT if wait is None else wait
    try:
        # The ledger gives up ``within`` without ever committing the entry afterwards; the outer
        # bound is for a COMMIT that does not answer (its outcome then unknown).
        async with asyncio.timeout(2 * within):
            (idx,) = await ledger.append([entry], effect=write, within=within)
    except Exception as exc:
        if not is_outage(exc):  # a bug is not an outage: it propagates as itself
            raise
        raise Unavailable(
            "the access decision could not be recorded in the ledger; nothing was done"
        ) from exc
    return idx


async def guard(
    ledger: LedgerWriter,
    principal: Principal,
    action: Action,
    target_kind: TargetKind,
    target_id: str,
    target: Target | None,
    *,
    refs: Sequence[tuple[str, str]] | None = None,
    wait: float | None = None,
    extra: Mapping[str, Any] | None = None,
    effect: Effect | None = None,
) -> Decision:
    """Decide, record, then return the allowing decision or raise (see the module docstring).
    ``target`` is None when nothing of that kind and id exists. ``effect`` runs in the
    transaction of an ``accessed`` entry only (never with a denial), so only with a content
    action, which is always recorded."""
    if effect is not None and action not in CONTENT_ACTIONS:
        raise ValueError(f"an effect needs a recorded action, not {action.value}")
    decision = absent(target_kind) if target is None else decide(principal, action, target)
    if action in CONTENT_ACTIONS or (not decision.allowed and action is not Action.LIST):
        await record(
            ledger,
            principal,
            action,
            target_kind,
            target_id,
            decision.allowed,
            decision.recorded,
            refs=refs,
            wait=wait,
            extra=extra,
            effect=effect if decision.allowed else None,
        )
    decision.raise_if_denied(target_kind)
    return decision


LEDGER_ENTRIES = Target("ledger", Label(Level.TOP_SECRET, frozenset(Caveat)))
"""What reading raw ledger entries is decided on: the whole log, case-independent, as
classified as the most classified item it names."""
_ENTRY_READERS = sorted(
    role.value
    for role, grants in ROLE_GRANTS.items()
    if grants.get(Action.READ_METADATA) is Scope.ANY
)
ENTRIES_REASON = (
    f"reading ledger entries requires role {' or '.join(_ENTRY_READERS)} and clearance "
    "top_secret with every caveat"
)


async def guard_entries(ledger: LedgerWriter, principal: Principal, what: str) -> None:
    """Allow reading the raw ledger entries ``what`` (e.g. ``entries/000``) or record a
    ``denied`` entry and raise ``Forbidden`` (see the module docstring)."""
    if decide(principal, Action.READ_METADATA, LEDGER_ENTRIES).allowed:
        return
    await record(ledger, principal, Action.READ_METADATA, "ledger", what, False, ENTRIES_REASON)
    raise Forbidden(ENTRIES_REASON)


# -- targets: what decisions are about ------------------------------------------------------


async def evidence_target(
    db: Db, evidence_id: str, kind: TargetKind = "evidence", *, mac: HostMac
) -> Target | None:
    """The target for evidence ``evidence_id`` (effective label), or None if there is none.
    The row is verified (``vault.evidence``): RowTampered if it does not."""
    row = await evrows.load_evidence(db, mac, evidence_id, where="access decision")
    return None if row is None else await target_of(db, row, kind)


async def target_of(db: Db, row: evrows.Evidence, kind: TargetKind = "evidence") -> Target:
    """The target for a verified evidence row (its current cases joined in)."""
    cases = (await linked_cases(db, [row.id]))[row.id]
    label = effective_label(label_of(row.label_level, row.label_caveats), cases.values())
    return Target(kind, label, frozenset(cases), row.officer_id)


async def rendition_target(db: Db, rendition_id: str, *, mac: HostMac) -> Target | None:
    """The target for a rendition: its source's, with the label raised to the rendition's.
    Both rows are verified: RowTampered if either does not."""
    row = await evrows.load_rendition(db, mac, rendition_id, where="access decision")
    if row is None:
        return None
    source = await evidence_target(db, str(row.evidence_id), "rendition", mac=mac)
    if source is None:
        return None
    return rendition_target_of(row, source)


def rendition_target_of(row: evrows.Rendition, source: Target) -> Target:
    """The target for a verified rendition row whose source's target is ``source``."""
    own = label_of(row.label_level, row.label_caveats)
    if row.kind == evrows.RELEASED:  # a released redacted copy: the legal reviewer's label
        return Target("rendition", own, source.cases, source.officer_id)
    return Target("rendition", rendition_label(source.label, own), source.cases, source.officer_id)


async def case_row(db: Db, case_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    """Case ``case_id``'s row, verified (``access_state``), or None if there is none;
    ``RowTampered`` (alarm raised) if it does not verify or was rolled back."""
    state = await access_state.ready(db)
    row = await db.fetchrow(
        "SELECT * FROM cases WHERE id = $1" + (" FOR UPDATE" if lock else ""),  # noqa: S608
        case_id,
    )
    if row is None:
        return None
    try:
        state.check("cases", row)
    except RowTampered as exc:
        await state.alarm(exc)
        raise
    return row


async def case_target(db: Db, case_id: str) -> Target | None:
    """The target for case ``case_id`` (its row verified: ``case_row``), or None."""
    row = await case_row(db, case_id)
    if row is None:
        return None
    return Target("case", label_of(row["label_level"], row["label_caveats"]), frozenset({case_id}))


async def target(db: Db, kind: TargetKind, target_id: str, *, mac: HostMac) -> Target | None:
    """The target of ``kind`` (evidence, rendition, case) named ``target_id``, or None;
    RowTampered if a row it is built from does not verify."""
    if kind == "evidence":
        return await evidence_target(db, target_id, mac=mac)
    if kind == "rendition":
        return await rendition_target(db, target_id, mac=mac)
    if kind == "case":
        return await case_target(db, target_id)
    raise ValueError(f"no stored targets of kind {kind}")


async def authorize(
    db: Db,
    ledger: LedgerWriter,
    principal: Principal,
    action: Action,
    kind: TargetKind,
    target_id: str,
) -> Target:
    """Load the target, decide, record (``audit.guard``) and return it; NotFound identically
    for missing and invisible, Forbidden for other denials, Unavailable if unrecorded. A target
    whose stored row does not verify is refused: a ``denied`` entry with ``TAMPERED_REASON``,
    then RowTampered (the alarm was raised where the row was read)."""
    found = await load_target(db, ledger, principal, action, kind, target_id)
    await guard(ledger, principal, action, kind, target_id, found)
    if found is None:  # guard raises NotFound for a missing target; never go on without one
        raise NotFound(NOT_FOUND_REASON)
    return found


async def authorize_then(
    db: Db,
    ledger: LedgerWriter,
    principal: Principal,
    action: Action,
    kind: TargetKind,
    target_id: str,
    serve: Callable[[Target], Awaitable[_T | None]],
    *,
    commit: Callable[[Conn, _T], Awaitable[None]] | None = None,
) -> _T:
    """``authorize``, with what the answer needs read between the decision and its entry:
    ``serve`` runs only if the decision allows, and the entry is appended only once it has
    returned, so a read failing (an outage, a row gone: ``serve`` returns None) leaves no
    ``accessed`` entry for an answer that was never given. The entry still comes before
    anything is answered. A row ``serve`` finds not verifying is a recorded refusal, as in
    ``load_target``. ``commit(conn, value)``, for an action that writes, runs in the entry's
    transaction: what it writes is committed with the entry or not at all (it may run more than
    once, each time in a fresh transaction: keep what it returns in ``value``, overwritten)."""
    found = await load_target(db, ledger, principal, action, kind, target_id)
    value = None
    if found is not None and decide(principal, action, found).allowed:
        try:
            value = await serve(found)
        except RowTampered:
            await record(ledger, principal, action, kind, target_id, False, TAMPERED_REASON)
            raise
        if value is None:  # changed since the decision: as if it were not there
            found = None
    effect: Effect | None = None
    if commit is not None and value is not None:
        write, served = commit, value

        async def written(conn: Conn, _indexes: list[int]) -> None:
            await write(conn, served)

        effect = written

    await guard(ledger, principal, action, kind, target_id, found, effect=effect)
    if value is None:  # guard raised NotFound already; never go on without it
        raise NotFound(NOT_FOUND_REASON)
    return value


async def load_target(
    db: Db,
    ledger: LedgerWriter,
    principal: Principal,
    action: Action,
    kind: TargetKind,
    target_id: str,
) -> Target | None:
    """``target``, where a row that does not verify is a recorded refusal: a ``denied`` entry
    with ``TAMPERED_REASON``, then RowTampered."""
    try:
        return await target(db, kind, target_id, mac=ledger.mac)
    except RowTampered:
        await record(ledger, principal, action, kind, target_id, False, TAMPERED_REASON)
        raise


@dataclass(frozen=True)
class TrailEntry:
    """One ledger entry of a trail, with the openings of its commitments."""

    idx: int
    kind: str
    time: str
    fields: dict[str, Any]  # the public fields, without v/kind/time/commitments
    opened: dict[str, Any]  # commitment field -> opened value


_PRINCIPAL_FIELDS = ["principal", "by"]


async def _indexes(
    conn: Db, case: str | None, evidence: str | None, principal: str | None
) -> list[int]:
    if case is not None:
        rows = await conn.fetch(
            "SELECT ledger_idx AS idx FROM ledger_refs WHERE ref_kind = 'case' AND ref_id = $1",
            case,
        )
    elif evidence is not None:
        rows = await conn.fetch(
            "SELECT ledger_idx AS idx FROM ledger_refs WHERE ref_kind = 'evidence' AND ref_id = $1"
            " UNION SELECT ledger_idx FROM evidence WHERE id = $2"
            " UNION SELECT ledger_idx FROM evidence_offers WHERE evidence_id = $2"
            " UNION SELECT ledger_idx FROM renditions WHERE evidence_id = $2"
            " UNION SELECT f.ledger_idx FROM ledger_refs f JOIN renditions r"
            " ON f.ref_kind = 'rendition' AND f.ref_id = r.id::text WHERE r.evidence_id = $2",
            evidence,
            evidence,
        )
    else:
        value = canonical_json(principal)
        rows = await conn.fetch(
            "SELECT DISTINCT idx FROM ledger_openings WHERE field = ANY($1::text[])"
            " AND sha256(value) = sha256($2::bytea) AND value = $2::bytea",
            _PRINCIPAL_FIELDS,
            value,
        )
    return sorted(r["idx"] for r in rows)


async def trail(
    conn: Db,
    ledger: LedgerWriter,
    actor: Principal,
    *,
    case: str | None = None,
    evidence: str | None = None,
    principal: str | None = None,
    limit: int = 1000,
) -> list[TrailEntry]:
    """The newest ``limit`` entries about exactly one of a case, an evidence item or a
    principal, oldest first. Reading a trail is a ``read_metadata`` decision on the ledger,
    scoped like its subject (a case's trail: that case's label and need-to-know; a principal's
    trail: case-independent roles only); NotFound for a subject the actor may not see."""
    if [case, evidence, principal].count(None) != 2:
        raise BadRequest("give exactly one of case, evidence, principal")
    if case is not None:
        subject = await case_target(conn, case)
        tid, refs = f"case:{case}", [("case", case)]
    elif evidence is not None:
        subject = await evidence_target(conn, evidence, mac=ledger.mac)
        tid, refs = f"evidence:{evidence}", [("evidence", evidence)]
    else:
        subject = Target("ledger", INTERNAL_LABEL)
        tid, refs = f"principal:{principal}", []
    scoped = None if subject is None else Target("ledger", subject.label, subject.cases)
    found: list[TrailEntry] = []
    if scoped is not None and decide(actor, Action.READ_METADATA, scoped).allowed:
        # read before the decision's entry: a read that fails leaves no ``accessed`` entry
        indexes = (await _indexes(conn, case, evidence, principal))[-limit:]
        found = await _trail_entries(conn, ledger, actor, indexes)
    own: list[TrailEntry] = []

    async def own_entry(tx: Conn, indexes: list[int]) -> None:
        # The entry of this very read is part of the trail it is about (its refs are the
        # subject's; a principal's trail holds it when the actor is that principal): read in
        # the transaction that appends it.
        if principal is None or principal == actor.id:
            own[:] = await _trail_entries(tx, ledger, actor, indexes, check=False)

    await guard(
        ledger, actor, Action.READ_METADATA, "ledger", tid, scoped, refs=refs, effect=own_entry
    )
    return [*found, *own][-limit:]


async def _trail_entries(
    conn: Db, ledger: LedgerWriter, actor: Principal, indexes: list[int], *, check: bool = True
) -> list[TrailEntry]:
    """Entries ``indexes`` with their openings, oldest first, without those naming what the
    actor may not list (``check``)."""
    entries = await conn.fetch(
        "SELECT idx, kind, data FROM ledger_entries WHERE idx = ANY($1::bigint[]) ORDER BY idx",
        indexes,
    )
    openings = await conn.fetch(
        "SELECT idx, field, value FROM ledger_openings WHERE idx = ANY($1::bigint[])", indexes
    )
    ref_rows = []
    if check:
        ref_rows = await conn.fetch(
            "SELECT ledger_idx, ref_kind, ref_id FROM ledger_refs"
            " WHERE ledger_idx = ANY($1::bigint[])",
            indexes,
        )
    opened: dict[int, dict[str, Any]] = {}
    for o in openings:
        opened.setdefault(o["idx"], {})[o["field"]] = json.loads(bytes(o["value"]))
    about: dict[int, list[tuple[TargetKind, str]]] = {}
    for r in ref_rows:
        about.setdefault(r["ledger_idx"], []).append((r["ref_kind"], r["ref_id"]))
    seen: dict[tuple[TargetKind, str], bool] = {}
    out = []
    for e in entries:
        hidden = False
        for ref in about.get(e["idx"], []):
            if ref not in seen:
                try:
                    t = await target(conn, *ref, mac=ledger.mac)
                except RowTampered:  # alarm raised: what it names stays hidden
                    seen[ref] = False
                    continue
                seen[ref] = t is None or visible(actor, t)
            hidden = hidden or not seen[ref]
        if hidden:
            continue
        body = json.loads(bytes(e["data"]))
        public = {k: v for k, v in body.items() if k not in ("v", "kind", "time", "commitments")}
        out.append(TrailEntry(e["idx"], e["kind"], body["time"], public, opened.get(e["idx"], {})))
    return out
