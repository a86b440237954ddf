"""Releasing a redacted copy at a lower label: a legal reviewer's decision, its own entry.

A redacted copy starts with its original's label, and access to it is decided on that label
joined with its original's effective label (cases included), like every rendition: until it is
released it is never more visible than the original.

Guarantees of :func:`release_copy`:

* Only a principal holding the ``legal_reviewer`` role may release, after an audited ``label``
  decision on the copy (so only one who may see it); the label given may not be above the
  releaser's own clearance and caveats.
* Only a ``redacted`` copy is released (anything else is a 400).
* The release is a new rendition of kind ``released`` with the copy's bytes (same SHA-256, no
  new object) and the decided label, recorded by its own ``released`` ledger entry in the same
  transaction: ``copy`` (the redacted rendition) and ``copy_entry`` (its ``redacted`` entry),
  the label and the copy's label before, and who decided (a commitment). Access to a released
  copy is decided on its own label (``vault.access.targets.rendition_target_of``), still within
  its original's cases (need to know is not released). The kind is bound in the row's tag, so a
  database edit cannot make an unreleased copy released; ``fsck --state`` replays the entry.
* :func:`visible_released` lists the released copies a principal may list (the publicity
  role's way to find what was released to it): each row verified, each decided by
  ``decide(LIST)`` on its target; candidates narrowed in SQL to the principal's cases (or its
  own recordings) unless a role lists case-independently; newest first, at most
  :data:`MAX_LISTED`.
* The redacted copy itself and the original are not changed. Raising the original's own label
  later raises its released copies too (as every rendition), never the other way round.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from vault import evidence as evrows
from vault.access import decisions, targets
from vault.access.filters import CURRENT_LINKS, label_of, scopes
from vault.db import Conn, Db
from vault.errors import BadRequest, Forbidden
from vault.evidence.model import RENDITION_TABLE
from vault.keys.hostmac import HostMac
from vault.ledger import Ledger, make_entry
from vault.policy.decide import Action, Principal, Role, Scope, Target, visible
from vault.policy.labels import Label

__all__ = ["MAX_LISTED", "Released", "release_copy", "visible_released"]

MAX_LISTED = 1000


@dataclass(frozen=True)
class Released:
    """A released copy: its rendition id, label and ``released`` entry."""

    rendition_id: uuid.UUID
    label: Label
    ledger_idx: int


async def release_copy(ledger: Ledger, actor: Principal, copy_id: str, label: Label) -> Released:
    """Release the redacted copy ``copy_id`` at ``label`` (see module)."""
    db = ledger.pool
    if Role.LEGAL_REVIEWER not in actor.roles:
        raise Forbidden("releasing a redacted copy is a legal reviewer's decision")
    target = await targets.authorize(db, ledger, actor, Action.LABEL, "rendition", copy_id)
    if not Label(actor.clearance, actor.caveats).dominates(label):
        raise Forbidden("you may not set a label above your own clearance and caveats")
    row = await evrows.load_rendition(db, ledger.mac, copy_id, where="release")
    if row is None or row.kind != "redacted":
        raise BadRequest("only a redacted copy (a rendition of kind redacted) is released")
    rid = uuid.uuid4()
    fields = {
        "evidence_id": str(row.evidence_id),
        "rendition": evrows.RELEASED,
        "rendition_id": str(rid),
        "copy": str(row.id),
        "copy_entry": row.ledger_idx,
        "output_sha256": row.sha256,
        "output_size": row.size,
        "media_type": row.media_type,
        "label": str(label),
        "previous": str(target.label),
        "previous_own": str(label_of(row.label_level, row.label_caveats)),
    }
    new = evrows.NewRendition(
        id=rid,
        evidence_id=row.evidence_id,
        kind=evrows.RELEASED,
        sha256=row.sha256,
        size=row.size,
        media_type=row.media_type,
        label=label,
        params=json.dumps({"copy": str(row.id)}),
    )

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await evrows.insert_rendition(conn, ledger.mac, new, indexes[0])
        await decisions.add_refs(
            conn,
            [
                (indexes[0], "evidence", str(row.evidence_id)),
                (indexes[0], "rendition", str(row.id)),
                (indexes[0], "rendition", str(rid)),
            ],
        )

    entry = make_entry("released", fields, {"by": actor.id})
    (idx,) = await ledger.append([entry], effect=effect)
    return Released(rid, label, idx)


async def visible_released(db: Db, mac: HostMac, principal: Principal) -> list[evrows.Rendition]:
    """The released copies ``principal`` may list, newest first (see the module)."""
    granted = scopes(principal, Action.LIST, "rendition")
    if not granted:
        return []
    narrow = ""
    args: list[object] = [evrows.RELEASED, MAX_LISTED]
    if Scope.ANY not in granted:
        args += [sorted(principal.cases), principal.officer_id]
        narrow = (
            f" AND (EXISTS (SELECT 1 FROM ({CURRENT_LINKS}) l WHERE l.evidence_id = r.evidence_id"  # noqa: S608
            " AND l.case_id = ANY($3::text[])) OR (e.officer_id IS NOT NULL AND e.officer_id = $4))"
        )
    rows = await db.fetch(
        f"SELECT {evrows.rendition_columns()} FROM renditions r"  # noqa: S608
        " JOIN evidence e ON e.id = r.evidence_id"
        f" WHERE r.kind = $1{narrow} ORDER BY r.created_at DESC, r.id LIMIT $2",
        *args,
    )
    out: list[evrows.Rendition] = []
    sources: dict[str, Target | None] = {}
    for row in await evrows.check_page(db, mac, rows, RENDITION_TABLE):
        copy = evrows.rendition_of(row)
        eid = str(copy.evidence_id)
        if eid not in sources:
            sources[eid] = await targets.evidence_target(db, eid, "rendition", mac=mac)
        source = sources[eid]
        if source is not None and visible(principal, targets.rendition_target_of(copy, source)):
            out.append(copy)
    return out
