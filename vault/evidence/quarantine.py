"""The quarantine table: one row per file refused at the door, written with its ledger entry.

Guarantees: a row is inserted only in the transaction of its ``quarantined`` ledger entry (the
caller's effect), so a row names an entry that exists; ``recorded_index`` finds the entry of a
file already quarantined, so recovering a reason file never records it twice.
"""

from __future__ import annotations

from vault.db import Conn, Db


async def record(
    conn: Conn, ledger_idx: int, dock_id: str | None, source_name: str, stored_as: str, reason: str
) -> None:
    """Insert the row of a quarantined file (inside its ledger entry's transaction)."""
    await conn.execute(
        "INSERT INTO quarantine (ledger_idx, dock_id, source_name, stored_as, reason)"
        " VALUES ($1, $2, $3, $4, $5)",
        ledger_idx,
        dock_id,
        source_name,
        stored_as,
        reason,
    )


async def recorded_index(db: Db, stored_as: str) -> int | None:
    """The ledger index of the file quarantined as ``stored_as``, or None if not recorded."""
    idx: int | None = await db.fetchval(
        "SELECT ledger_idx FROM quarantine WHERE stored_as = $1", stored_as
    )
    return idx
