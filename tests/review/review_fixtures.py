"""Helpers for the review tests: a real ledger and blob store, evidence with stored content."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import UTC, datetime

from tests.vault_fixtures import ADMIN, ALL_CAVEATS, INTERNAL, ORIGIN, open_vault, person  # noqa: F401
from vault import evidence as evrows
from vault.db import Conn
from vault.ledger import Ledger, make_entry
from vault.policy.labels import Label
from vault.storage.blobstore import BlobStore


def put_blob(store: BlobStore, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    path = store.path_of(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
        path.chmod(0o400)
    return sha


def tamper(store: BlobStore, sha: str, data: bytes | None) -> None:
    """Replace (or with None, remove) a stored object behind the vault's back."""
    path = store.path_of(sha)
    path.chmod(0o600)
    if data is None:
        os.unlink(path)
    else:
        path.write_bytes(data)


async def add_evidence(
    ledger: Ledger,
    store: BlobStore | None = None,
    *,
    data: bytes | None = None,
    label: Label = INTERNAL,
    officer_id: str | None = "o1",
    recorded_at: datetime | None = None,
    duration_ms: int | None = None,
) -> str:
    """Evidence with its `acquired` entry, as acquisition records it (content stored when a
    store is given)."""
    eid = uuid.uuid4()
    data = data if data is not None else eid.bytes
    sha = put_blob(store, data) if store is not None else hashlib.sha256(data).hexdigest()
    probe = None if duration_ms is None else json.dumps({"duration_ms": duration_ms})

    new = evrows.NewEvidence(
        id=eid,
        sha256=sha,
        size=len(data),
        dock_id="dock-01",
        device_id="rec-1",
        officer_id=officer_id,
        recorded_at=recorded_at,
        acquired_at=datetime.now(UTC),
        file_name="clip.mp4",
        extension="",
        label=label,
    )

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await evrows.insert_evidence(conn, ledger.mac, new, indexes[0])
        if probe is not None:
            await evrows.set_probe(conn, eid, probe)

    entry = make_entry(
        "acquired",
        {"evidence_id": str(eid), "sha256": sha, "size": len(data)},
        {"file_name": "clip.mp4", "officer_id": officer_id},
    )
    await ledger.append([entry], effect=effect)
    return str(eid)
