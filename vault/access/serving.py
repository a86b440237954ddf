"""Which bytes may be served: the content served is the content logged (DESIGN §3, §5, §7).

Guarantees:

- Bytes are served only for a row that verifies (``vault.evidence``): the original's or
  rendition's SHA-256 comes from the same verified row the access decision was made on, and the
  source row of a rendition is verified too. A row that does not verify is refused with a
  ``denied`` entry (``decisions.TAMPERED_REASON``), the alarm, and ``RowTampered`` (HTTP 422).
- Evidence that scrub found failing (``integrity`` ``mismatch`` or ``missing``), and its
  renditions, are refused after the access decision (so nothing is revealed to a caller who may
  not see the item): a ``denied`` entry whose reason names the failure, then
  :class:`IntegrityRefused` naming it. A principal holding ``auditor`` or ``admin`` who is
  granted the action and asks explicitly (``override=True``) gets it; the ``accessed`` entry
  then carries ``integrity_override`` with the failure it overrode.
- Every outcome is recorded before anything is opened (``decisions.guard`` /
  ``decisions.record``). With ``sessions`` (``vault.access.sessions``), the allowed ``stream``
  requests of one playback share the entry its first request wrote; each is still decided on
  its own. A request of a live session whose verified rows and target the session keeps
  (``PlaybackSessions.grant``: read since the last change that could alter them) is decided
  on them in memory, with no database round trip; only an allowing decision on evidence whose
  integrity is ``ok``, asked without override, is made there: anything else is decided, and
  recorded, from the database as above.
"""

from __future__ import annotations

from vault import evidence as evrows
from vault.access import decisions, targets
from vault.access.sessions import PlaybackSessions
from vault.db import Db
from vault.errors import IntegrityError, NotFound
from vault.keys.hostmac import RowTampered
from vault.ledger import LedgerWriter
from vault.policy.decide import (
    NOT_FOUND_REASON,
    Action,
    Principal,
    Role,
    Target,
    TargetKind,
    absent,
    decide,
)

_Evidence = tuple[evrows.Evidence, Target]
_Rendition = tuple[evrows.Rendition, evrows.Evidence, Target]

__all__ = ["OVERRIDE_ROLES", "IntegrityRefused", "evidence_bytes", "rendition_bytes"]

OVERRIDE_ROLES = frozenset({Role.AUDITOR, Role.ADMIN})
"""Roles that may fetch content of evidence that failed its integrity check, when they ask."""


class IntegrityRefused(IntegrityError):
    """The evidence failed its last integrity check (scrub): its content is not served. An
    auditor or admin may fetch it for investigation with ``integrity_override=true``."""

    slug = "integrity-failed"
    title = "The content failed its integrity check"


async def _decide(
    ledger: LedgerWriter,
    principal: Principal,
    action: Action,
    kind: TargetKind,
    target_id: str,
    target: Target | None,
    integrity: str,
    override: bool,
    sessions: PlaybackSessions | None,
) -> None:
    decision = absent(kind) if target is None else decide(principal, action, target)
    extra = None
    if decision.allowed and integrity != "ok":
        if override and principal.roles & OVERRIDE_ROLES:
            extra = {"integrity_override": integrity}
        else:
            reason = f"integrity: the evidence failed its integrity check ({integrity})"
            if sessions is not None:
                sessions.end(sessions.key(principal, action, kind, target_id))
            await decisions.record(ledger, principal, action, kind, target_id, False, reason)
            raise IntegrityRefused(
                f"the evidence failed its integrity check ({integrity}); its content is not"
                " served. An auditor or admin may fetch it with integrity_override=true"
            )
    if sessions is None or extra is not None or not sessions.applies(action):
        await decisions.guard(ledger, principal, action, kind, target_id, target, extra=extra)
        return
    key = sessions.key(principal, action, kind, target_id)
    if not decision.allowed:  # every denial is recorded, and ends the session
        sessions.end(key)
        await decisions.guard(ledger, principal, action, kind, target_id, target)
        return
    opening = {"session_seconds": sessions.idle}
    await sessions.enter(
        key,
        lambda: decisions.guard(ledger, principal, action, kind, target_id, target, extra=opening),
    )


def _allowed_again(
    principal: Principal, action: Action, evidence: evrows.Evidence, target: object
) -> bool:
    """Whether a kept target allows the request as it stands (integrity ``ok``): decided
    afresh for this request's principal."""
    return (
        isinstance(target, Target)
        and evidence.integrity == "ok"
        and decide(principal, action, target).allowed
    )


async def _refuse_tampered(
    ledger: LedgerWriter, principal: Principal, action: Action, kind: TargetKind, target_id: str
) -> None:
    await decisions.record(
        ledger, principal, action, kind, target_id, False, decisions.TAMPERED_REASON
    )


async def evidence_bytes(
    db: Db,
    ledger: LedgerWriter,
    principal: Principal,
    action: Action,
    evidence_id: str,
    *,
    override: bool = False,
    sessions: PlaybackSessions | None = None,
) -> evrows.Evidence:
    """Decide and record ``action`` (stream, download) on an original; return its verified row,
    whose ``sha256`` names the only bytes that may be served for it."""
    key, generation = None, 0
    if sessions is not None and sessions.applies(action) and not override:
        key = sessions.key(principal, action, "evidence", evidence_id)
        kept = sessions.grant(key)
        if isinstance(kept, tuple) and _allowed_again(principal, action, kept[0], kept[-1]):
            sessions.reuse(key)
            return kept[0]  # type: ignore[no-any-return]
        generation = sessions.generation
    try:
        row = await evrows.load_evidence(db, ledger.mac, evidence_id, where="content")
    except RowTampered:
        await _refuse_tampered(ledger, principal, action, "evidence", evidence_id)
        raise
    found = None if row is None else await targets.target_of(db, row)
    integrity = "ok" if row is None else row.integrity
    await _decide(
        ledger, principal, action, "evidence", evidence_id, found, integrity, override, sessions
    )
    if row is None:  # guard raised NotFound for it already; never go on without one
        raise NotFound(NOT_FOUND_REASON)
    if key is not None and found is not None and sessions is not None:
        kept_e: _Evidence = (row, found)
        sessions.keep(key, kept_e, generation)
    return row


async def rendition_bytes(
    db: Db,
    ledger: LedgerWriter,
    principal: Principal,
    action: Action,
    rendition_id: str,
    *,
    override: bool = False,
    sessions: PlaybackSessions | None = None,
) -> tuple[evrows.Rendition, evrows.Evidence]:
    """As ``evidence_bytes`` for a rendition: (its verified row, its source's verified row)."""
    key, generation = None, 0
    if sessions is not None and sessions.applies(action) and not override:
        key = sessions.key(principal, action, "rendition", rendition_id)
        kept = sessions.grant(key)
        if isinstance(kept, tuple) and _allowed_again(principal, action, kept[1], kept[-1]):
            sessions.reuse(key)
            return kept[0], kept[1]
        generation = sessions.generation
    try:
        row = await evrows.load_rendition(db, ledger.mac, rendition_id, where="content")
        source = (
            None
            if row is None
            else await evrows.load_evidence(db, ledger.mac, row.evidence_id, where="content")
        )
    except RowTampered:
        await _refuse_tampered(ledger, principal, action, "rendition", rendition_id)
        raise
    found = None
    if row is not None and source is not None:
        found = targets.rendition_target_of(row, await targets.target_of(db, source, "rendition"))
    integrity = "ok" if source is None else source.integrity
    await _decide(
        ledger, principal, action, "rendition", rendition_id, found, integrity, override, sessions
    )
    if row is None or source is None:  # guard raised NotFound for it already
        raise NotFound(NOT_FOUND_REASON)
    if key is not None and found is not None and sessions is not None:
        kept_r: _Rendition = (row, source, found)
        sessions.keep(key, kept_r, generation)
    return row, source
