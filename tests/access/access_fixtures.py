"""Helpers for the access tests: a real ledger on a test database, evidence rows, principals."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from vault_fixtures import ADMIN, ALL_CAVEATS, INTERNAL, ORIGIN, open_vault, person  # noqa: F401

from vault.db import Conn, Database
from vault.labels import Label
from vault.ledger import Ledger, make_entry


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

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await conn.execute(
            "INSERT INTO evidence (id, sha256, size, ledger_idx, dock_id, device_id, officer_id,"
            " recorded_at, file_name, acquired_at, label_level, label_caveats, category,"
            " media_status) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
            eid,
            sha,
            100,
            indexes[0],
            dock_id,
            device_id,
            officer_id,
            recorded_at,
            file_name,
            acquired_at or datetime.now(UTC),
            int(label.level),
            [c.value for c in label.sorted_caveats],
            category,
            media_status,
        )

    entry = make_entry(
        "acquired", {"evidence_id": str(eid), "sha256": sha}, {"file_name": file_name}
    )
    await ledger.append([entry], effect=effect)
    return str(eid)


async def add_rendition(ledger: Ledger, evidence_id: str, label: Label, kind: str = "proxy") -> str:
    rid = uuid.uuid4()
    sha = hashlib.sha256(rid.bytes).hexdigest()

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await conn.execute(
            "INSERT INTO renditions (id, evidence_id, kind, sha256, size, media_type, ledger_idx,"
            " label_level, label_caveats) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
            rid,
            uuid.UUID(evidence_id),
            kind,
            sha,
            10,
            "video/mp4",
            indexes[0],
            int(label.level),
            [c.value for c in label.sorted_caveats],
        )

    await ledger.append([make_entry("derived", {"rendition": str(rid)})], effect=effect)
    return str(rid)


async def entries(db: Database, kind: str | None = None) -> list[dict[str, object]]:
    import json

    rows = await db.pool.fetch(
        "SELECT data FROM ledger_entries WHERE $1::text IS NULL OR kind = $1 ORDER BY idx", kind
    )
    return [json.loads(bytes(r["data"])) for r in rows]
