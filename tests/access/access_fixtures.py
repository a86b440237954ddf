"""Helpers for the access tests: a real ledger on a test database, evidence rows, principals."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from tests.vault_fixtures import ADMIN, ALL_CAVEATS, INTERNAL, ORIGIN, open_vault, person  # noqa: F401
from vault import evidence as evrows
from vault.db import Conn, Database
from vault.ledger import Ledger, make_entry
from vault.policy.labels import Label


async def add_evidence(
    ledger: Ledger,
    *,
    label: Label = INTERNAL,
    officer_id: str | None = None,
    device_id: str | None = "rec-1",
    dock_id: str | None = "dock-01",
    acquired_at: datetime | None = None,
    recorded_at: datetime | None = None,
    category: str = "ordinary",
    media_status: str = "ready",
    file_name: str = "clip.mp4",
) -> str:
    """Insert one evidence row with its own `acquired` entry, as acquisition would."""
    eid = uuid.uuid4()
    sha = hashlib.sha256(eid.bytes).hexdigest()

    new = evrows.NewEvidence(
        id=eid,
        sha256=sha,
        size=100,
        dock_id=dock_id,
        device_id=device_id,
        officer_id=officer_id,
        recorded_at=recorded_at,
        acquired_at=acquired_at or datetime.now(UTC),
        file_name=file_name,
        extension="",
        label=label,
        category=category,
    )

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await evrows.insert_evidence(conn, ledger.mac, new, indexes[0])
        await evrows.set_media_status(conn, eid, media_status)

    entry = make_entry(
        "acquired", {"evidence_id": str(eid), "sha256": sha}, {"file_name": file_name}
    )
    await ledger.append([entry], effect=effect)
    return str(eid)


async def add_rendition(ledger: Ledger, evidence_id: str, label: Label, kind: str = "proxy") -> str:
    rid = uuid.uuid4()
    sha = hashlib.sha256(rid.bytes).hexdigest()

    new = evrows.NewRendition(
        id=rid,
        evidence_id=uuid.UUID(evidence_id),
        kind=kind,
        sha256=sha,
        size=10,
        media_type="video/mp4",
        label=label,
    )

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await evrows.insert_rendition(conn, ledger.mac, new, indexes[0])

    await ledger.append([make_entry("derived", {"rendition": str(rid)})], effect=effect)
    return str(rid)


async def entries(db: Database, kind: str | None = None) -> list[dict[str, object]]:
    import json

    rows = await db.pool.fetch(
        "SELECT data FROM ledger_entries WHERE $1::text IS NULL OR kind = $1 ORDER BY idx", kind
    )
    return [json.loads(bytes(r["data"])) for r in rows]
