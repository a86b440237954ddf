"""Targets: what access decisions are about, loaded from verified rows.

Guarantees:

- ``evidence_target`` / ``rendition_target`` / ``case_target`` build the ``policy.Target`` of a
  stored item with its effective label (the item's own joined with every current case's, and
  for a rendition also its source's) and current cases; None when there is no such item. Every
  row they are built from is verified (``vault.evidence``, ``vault.access.state``):
  ``RowTampered`` (alarm raised) if one does not.
- ``authorize`` = ``load_target`` + ``decisions.guard``: the decision is recorded before the
  target is returned; a target whose stored row does not verify is a recorded refusal
  (``denied`` with ``TAMPERED_REASON``), then ``RowTampered``. ``authorize_then`` reads what the
  answer needs between the decision and its entry, so a request that fails on a read leaves no
  entry, and its ``commit`` (what the action writes: a job queued) runs in the entry's own
  transaction, so the entry and what it records are committed together or not at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from vault import evidence as evrows
from vault.access import state as access_state
from vault.access.decisions import TAMPERED_REASON, guard, record
from vault.access.filters import label_of, linked_cases
from vault.db import Conn, Db
from vault.errors import NotFound
from vault.keys.hostmac import HostMac, RowTampered
from vault.ledger import LedgerWriter
from vault.ledger.sequencer import Effect
from vault.policy.decide import (
    NOT_FOUND_REASON,
    Action,
    Principal,
    Target,
    TargetKind,
    decide,
    effective_label,
    rendition_label,
)

_T = TypeVar("_T")

__all__ = [
    "authorize",
    "authorize_then",
    "case_row",
    "case_target",
    "evidence_target",
    "load_target",
    "rendition_target",
    "rendition_target_of",
    "target",
    "target_of",
]


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
    Both rows are verified: RowTampered if either does not, or if the source row is missing
    (evidence rows are never deleted)."""
    row = await evrows.load_rendition(db, mac, rendition_id, where="access decision")
    if row is None:
        return None
    source = await evidence_target(db, str(row.evidence_id), "rendition", mac=mac)
    if source is None:  # evidence rows are never deleted: a verified rendition's source is gone
        exc = RowTampered("evidence", (str(row.evidence_id),), "the source of a rendition is gone")
        await evrows.alarm(db, exc, "access decision")
        raise exc
    return rendition_target_of(row, source)


def rendition_target_of(row: evrows.Rendition, source: Target) -> Target:
    """The target for a verified rendition row whose source's target is ``source``."""
    own = label_of(row.label_level, row.label_caveats)
    if row.kind == evrows.RELEASED:  # a released redacted copy: the legal reviewer's label
        return Target("rendition", own, source.cases, source.officer_id, released=True)
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
    """Load the target, decide, record (``decisions.guard``) and return it; NotFound identically
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
