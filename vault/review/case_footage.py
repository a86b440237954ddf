"""The footage of a case placed in time, for coverage reports (``vault.review.coverage``).

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
from datetime import UTC, datetime

from vault import evidence as evrows
from vault.access.listing import EvidenceQuery, EvidenceSummary, list_evidence
from vault.db import Db
from vault.keys.hostmac import HostMac
from vault.policy.decide import Principal
from vault.review.coverage import Footage, place

__all__ = ["CaseFootage", "case_footage", "probed_duration_ms"]


@dataclass(frozen=True)
class CaseFootage:
    placed: list[Footage]
    unplaced: list[tuple[str, str]]  # (evidence id, reason)


async def case_footage(db: Db, principal: Principal, case_id: str, *, mac: HostMac) -> CaseFootage:
    """The case's visible footage (see the module docstring). Officer, recording start and
    disposal come from verified rows (``list_evidence``); only the probe is working state."""
    items: list[EvidenceSummary] = []
    cursor: str | None = None
    while True:
        page = await list_evidence(
            db, principal, EvidenceQuery(case_id=case_id), limit=1000, cursor=cursor, mac=mac
        )
        items.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    probes = await evrows.probes(db, [uuid.UUID(i.id) for i in items])
    out = CaseFootage([], [])
    for item in sorted(items, key=_recording_order):
        eid = item.id
        probe = probes.get(eid)
        probe = json.loads(probe) if isinstance(probe, str) else probe
        duration = probe.get("duration_ms") if isinstance(probe, dict) else None
        piece = place(eid, item.recorded_at, duration, item.officer_id)
        if item.disposed_at is not None:
            out.unplaced.append((eid, "disposed"))
        elif item.recorded_at is None:
            out.unplaced.append((eid, "recording start unknown"))
        elif piece is None:
            out.unplaced.append((eid, "duration unknown"))
        else:
            out.placed.append(piece)
    return out


def _recording_order(item: EvidenceSummary) -> tuple[bool, datetime, str]:
    """ORDER BY recorded_at, id (PostgreSQL puts NULLs last)."""
    when = item.recorded_at
    return (when is None, when or datetime.min.replace(tzinfo=UTC), uuid.UUID(item.id).hex)


def _duration(probe: object) -> int | None:
    probe = json.loads(probe) if isinstance(probe, str) else probe
    ms = probe.get("duration_ms") if isinstance(probe, dict) else None
    return ms if type(ms) is int and ms > 0 else None


async def probed_frame(db: Db, evidence_id: str) -> tuple[int | None, int | None, int | None]:
    """(upright width, upright height, duration in ms) of one item from its probe, each None
    while unknown. Decides nothing: call it only after the caller was authorised on the item."""
    probe = await db.fetchval(
        "SELECT probe FROM evidence WHERE id = $1::uuid", uuid.UUID(evidence_id)
    )
    info = json.loads(probe) if isinstance(probe, str) else probe
    if not isinstance(info, dict):
        return None, None, None
    w, h = info.get("width"), info.get("height")
    w, h = (w if type(w) is int else None), (h if type(h) is int else None)
    if info.get("rotation") in (90, 270):
        w, h = h, w
    return w, h, _duration(probe)


async def probed_duration_ms(db: Db, evidence_id: str) -> int | None:
    """The probed duration of one item in ms, or None while unknown (not probed yet, or not
    probeable). Decides nothing: call it only after the caller was authorised on the item."""
    probe = await db.fetchval(
        "SELECT probe FROM evidence WHERE id = $1::uuid", uuid.UUID(evidence_id)
    )
    return _duration(probe)
