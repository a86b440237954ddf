"""Decision recording: every decision about content is in the ledger before anything is done
about it.

Guarantees:

- ``guard`` asks ``policy.decide`` (a missing target is ``NOT_FOUND``, exactly like an invisible
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
  reason (which never reveals anything above the caller's clearance, see ``policy``) are public.
- ``add_refs`` indexes entries by the evidence items, renditions and cases they are about
  (``ledger_refs``), in the transaction of the append; trails (:mod:`vault.access.trails`)
  are read through it.
- ``guard_entries`` decides reading raw ledger entries (entry bundles): ``read_metadata`` on
  the whole ledger (:data:`LEDGER_ENTRIES`: no case, labelled top_secret with every caveat,
  since entries name the ids, labels and hashes of every item at every label), so only a role
  granting it case-independently (auditor, admin, case_system) held by a principal cleared for
  everything may read them. A refusal is a ``denied`` entry and ``Forbidden`` with one fixed
  reason (the ledger is public knowledge; its checkpoints and hash tiles are served to all). An
  allowed read is NOT an entry: a mirror re-reading the growing tail would otherwise append an
  entry per poll and chase its own writes; the access log names who read which bundle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vault.db import Conn, is_outage
from vault.errors import BadRequest, Forbidden, Unavailable
from vault.ledger import LedgerWriter, make_entry
from vault.ledger.sequencer import Effect
from vault.policy.decide import (
    ROLE_GRANTS,
    Action,
    Decision,
    Principal,
    Scope,
    Target,
    TargetKind,
    absent,
    decide,
)
from vault.policy.labels import Caveat, Label, Level

__all__ = [
    "CONTENT_ACTIONS",
    "ENTRIES_REASON",
    "LEDGER_ENTRIES",
    "REF_KINDS",
    "TAMPERED_REASON",
    "add_refs",
    "guard",
    "guard_entries",
    "record",
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
