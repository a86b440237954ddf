"""The footage of a case placed in time, for coverage reports (``vault.coverage``).

Guarantees: only evidence the principal may list is considered (``visibility.list_evidence``
with the case filter, so nothing invisible is counted or named). An item covers
``[recorded_at, recorded_at + probed duration)``; an item that cannot be placed (start or
duration unknown) or that was disposed of covers nothing and is returned among the unplaced,
with the reason.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from vault.access import Principal
from vault.coverage import Footage, place
from vault.db import Db
from vault.visibility import EvidenceQuery, list_evidence

__all__ = ["CaseFootage", "case_footage", "probed_duration_ms"]


@dataclass(frozen=True)
class CaseFootage:
    placed: list[Footage]
    unplaced: list[tuple[str, str]]  # (evidence id, reason)


async def case_footage(db: Db, principal: Principal, case_id: str) -> CaseFootage:
    """The case's visible footage (see the module docstring)."""
    ids: list[uuid.UUID] = []
    cursor: str | None = None
    while True:
        page = await list_evidence(
            db, principal, EvidenceQuery(case_id=case_id), limit=1000, cursor=cursor
        )
        ids.extend(uuid.UUID(item.id) for item in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    rows = await db.fetch(
        "SELECT id, officer_id, recorded_at, probe, disposed_at FROM evidence"
        " WHERE id = ANY($1::uuid[]) ORDER BY recorded_at, id",
        ids,
    )
    out = CaseFootage([], [])
    for r in rows:
        eid = str(r["id"])
        probe = json.loads(r["probe"]) if isinstance(r["probe"], str) else r["probe"]
        duration = probe.get("duration_ms") if isinstance(probe, dict) else None
        piece = place(eid, r["recorded_at"], duration, r["officer_id"])
        if r["disposed_at"] is not None:
            out.unplaced.append((eid, "disposed"))
        elif r["recorded_at"] is None:
            out.unplaced.append((eid, "recording start unknown"))
        elif piece is None:
            out.unplaced.append((eid, "duration unknown"))
        else:
            out.placed.append(piece)
    return out


def _duration(probe: object) -> int | None:
    probe = json.loads(probe) if isinstance(probe, str) else probe
    ms = probe.get("duration_ms") if isinstance(probe, dict) else None
    return ms if type(ms) is int and ms > 0 else None


async def probed_duration_ms(db: Db, evidence_id: str) -> int | None:
    """The probed duration of one item in ms, or None while unknown (not probed yet, or not
    probeable). Decides nothing: call it only after the caller was authorised on the item."""
    probe = await db.fetchval(
        "SELECT probe FROM evidence WHERE id = $1::uuid", uuid.UUID(evidence_id)
    )
    return _duration(probe)
