"""Events for the case system's modules, written to a transactional outbox.

``emit`` is called inside the transaction that makes the event true (the evidence row and its
ledger entry, a case link, media becoming ready, an integrity failure found), so an event is
never announced for something that did not commit, and never lost for something that did. A
dispatcher elsewhere delivers the outbox to subscribers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # only for annotations: importing the config must not load asyncpg
    from vault.db import Db

EventType = Literal["evidence.acquired", "evidence.linked", "media.ready", "integrity.failure"]
EVENT_TYPES: tuple[EventType, ...] = (
    "evidence.acquired",
    "evidence.linked",
    "media.ready",
    "integrity.failure",
)


async def emit(conn: Db, type_: EventType, payload: Mapping[str, Any]) -> int:
    """Add an event to the outbox; return its id. Payloads carry ids and hashes, never
    classified plaintext (the receiving module looks details up with its own token)."""
    import json  # here: the configuration (every CLI start) imports this module for the types

    event_id: int = await conn.fetchval(
        "INSERT INTO event_outbox (type, payload) VALUES ($1, $2::jsonb) RETURNING id",
        type_,
        json.dumps(dict(payload), sort_keys=True),
    )
    return event_id
