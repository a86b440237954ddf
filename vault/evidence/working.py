"""Working state of evidence rows: media status and probe, scrub marks; the offers log.

None of these columns is bound by the row tag and none decides access or which bytes are
served, so they change without a ledger entry and without re-tagging. Guarantees: these
functions never write a bound column.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from vault.db import Conn, Db


async def set_media_status(
    db: Db, evidence_id: uuid.UUID, status: str, reason: str | None = None
) -> None:
    """Set the media status (and its reason) of an evidence item."""
    await db.execute(
        "UPDATE evidence SET media_status = $2, media_reason = $3 WHERE id = $1",
        evidence_id,
        status,
        reason,
    )


async def mark_unprocessable(db: Db, evidence_id: uuid.UUID, reason: str) -> str | None:
    """Set the media status ``unprocessable`` with its reason; return the item's dock id (for
    the per-dock count), or None for an item not from a dock or not found."""
    dock: str | None = await db.fetchval(
        "UPDATE evidence SET media_status = 'unprocessable', media_reason = $2 WHERE id = $1"
        " RETURNING dock_id",
        evidence_id,
        reason,
    )
    return dock


async def record_offer(
    conn: Conn, evidence_id: uuid.UUID, ledger_idx: int, dock_id: str, source: str, *, reoffer: bool
) -> None:
    """Record one offer of a file (a first acquisition or a re-offer of content already held)
    with its ledger entry ``ledger_idx``, inside that entry's transaction."""
    await conn.execute(
        "INSERT INTO evidence_offers (evidence_id, ledger_idx, dock_id, source_name, reoffer)"
        " VALUES ($1, $2, $3, $4, $5)",
        evidence_id,
        ledger_idx,
        dock_id,
        source,
        reoffer,
    )


async def set_probe(db: Db, evidence_id: uuid.UUID, probe_json: str) -> None:
    """Store what ffprobe found (JSON text) and mark the media as being processed."""
    await db.execute(
        "UPDATE evidence SET probe = $2::jsonb, media_status = 'processing' WHERE id = $1",
        evidence_id,
        probe_json,
    )


async def mark_scrubbed_ok(db: Db, evidence_ids: Sequence[uuid.UUID]) -> None:
    """Items whose every object verified: scrubbed now, integrity ``ok``."""
    await db.execute(
        "UPDATE evidence SET last_scrub_at = now(), integrity = 'ok' WHERE id = ANY($1::uuid[])",
        list(evidence_ids),
    )


async def lock_for_mark(conn: Conn, evidence_id: uuid.UUID) -> tuple[str, bool] | None:
    """Lock an item for a scrub mark; (its integrity mark, whether it is disposed of or being
    disposed of), or None if there is no such item."""
    row = await conn.fetchrow(
        "SELECT integrity, disposed_at IS NOT NULL OR EXISTS (SELECT 1 FROM dispositions d"
        " WHERE d.evidence_id = e.id) AS gone FROM evidence e WHERE id = $1 FOR UPDATE",
        evidence_id,
    )
    return None if row is None else (row["integrity"], bool(row["gone"]))


async def mark_integrity(conn: Conn, evidence_id: uuid.UUID, status: str) -> None:
    """Mark an item's integrity as scrub found it (``missing`` or ``mismatch``)."""
    await conn.execute(
        "UPDATE evidence SET integrity = $2, last_scrub_at = now() WHERE id = $1",
        evidence_id,
        status,
    )


async def has_rendition(db: Db, evidence_id: uuid.UUID, kind: str) -> bool:
    """Whether a rendition of ``kind`` is recorded for the item (media jobs skip it then)."""
    return bool(
        await db.fetchval(
            "SELECT 1 FROM renditions WHERE evidence_id = $1 AND kind = $2", evidence_id, kind
        )
    )


async def clip_of_job(db: Db, evidence_id: uuid.UUID, job: str) -> uuid.UUID | None:
    """The clip already recorded for clip job ``job``, if any (a retried job records once)."""
    return await rendition_of_job(db, evidence_id, "clip", job)


async def rendition_of_job(db: Db, evidence_id: uuid.UUID, kind: str, job: str) -> uuid.UUID | None:
    """The rendition of ``kind`` already recorded for job ``job``, if any (clips and redacted
    copies: a retried job records once)."""
    rid: uuid.UUID | None = await db.fetchval(
        "SELECT id FROM renditions WHERE evidence_id = $1 AND kind = $2 AND params->>'job' = $3",
        evidence_id,
        kind,
        job,
    )
    return rid


async def probes(db: Db, evidence_ids: Sequence[uuid.UUID]) -> dict[str, Any]:
    """The stored probe (JSON text or None) of each item, by evidence id as text."""
    rows = await db.fetch(
        "SELECT id, probe FROM evidence WHERE id = ANY($1::uuid[])", list(evidence_ids)
    )
    return {str(r["id"]): r["probe"] for r in rows}


async def media_states(db: Db, evidence_ids: Sequence[uuid.UUID]) -> list[Any]:
    """(id, media_status, media_reason) records of the items (waiting for media work)."""
    return list(
        await db.fetch(
            "SELECT id, media_status, media_reason FROM evidence WHERE id = ANY($1::uuid[])",
            list(evidence_ids),
        )
    )
