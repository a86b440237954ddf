"""Adopting access state written before row tags existed (``evault adopt-access-state``).

Rows of ``principals``, ``tokens``, ``principal_cases``, ``cases`` and ``case_evidence_history``
written before migration 011 carry no tag, so every read that decides access refuses them
(``vault.access.state``): an upgraded deployment would lock everyone out. Adoption tags them
once, as they stand, on the operator's word that the database has not been tampered with until
now; the operator runs it from the service host (it needs the host key), right after upgrading.

Guarantees:

- It runs at most once per database: once the tags are committed it appends a ``note`` entry
  ``{"op": "access-state-adopted", "rows": counts}``, and it refuses to run when such an entry
  exists. A row inserted without a tag later is never adopted.
- Only untagged rows are touched, and only those the ledger does not contradict: each row is
  tagged with the index of the newest entry the ledger has for it (``access_replay``) when that
  is newer than the one the row names (a case relabelled before tags existed did not record its
  entry), and an assignment the ledger says was withdrawn, or a token no entry created, is left
  untagged (refused) and counted as ``skipped``.
"""

from __future__ import annotations

from typing import Any

from vault.access import state as access_state
from vault.db import Conn
from vault.errors import Conflict
from vault.keys.hostmac import HostMac
from vault.ledger import LedgerWriter, make_entry

__all__ = ["ADOPTED", "adopt"]

ADOPTED = "access-state-adopted"
_KEYS = {
    "principals": "id",
    "tokens": "id",
    "principal_cases": "principal_id, case_id",
    "cases": "id",
    "case_evidence_history": "ledger_idx",
}


async def adopt(owner: Conn, ledger: LedgerWriter, mac: HostMac) -> dict[str, int]:
    """Tag every untagged access-state row the ledger does not contradict, on ``owner`` (a
    connection as the schema owner: the link history is append-only for every other role);
    return counts per table and ``skipped``. Conflict if adoption already ran here."""
    if await owner.fetchval(
        "SELECT 1 FROM ledger_entries WHERE kind = 'note'"
        " AND position($1::bytea IN data) > 0 LIMIT 1",
        f'"op":"{ADOPTED}"'.encode(),
    ):
        raise Conflict("access state was adopted already; untagged rows stay refused")
    state = access_state.AccessState(mac, owner)
    await state.refresh()
    counts: dict[str, int] = {t: 0 for t in _KEYS} | {"skipped": 0}
    async with owner.transaction():
        await owner.execute(
            "ALTER TABLE case_evidence_history DISABLE TRIGGER case_evidence_history_append_only"
        )
        for table, key in _KEYS.items():
            rows = await owner.fetch(
                f"SELECT * FROM {table} WHERE tag IS NULL ORDER BY {key} FOR UPDATE"  # noqa: S608
            )
            for r in rows:
                row = dict(r)
                rkey = tuple(str(k) for k in access_state.TABLES[table](row)[0])
                floor = state.mirror.floor(table, rkey)
                idx = max(-1 if row["ledger_idx"] is None else row["ledger_idx"], floor)
                withdrawn = (
                    table == "principal_cases" and state.mirror.unassigned(*rkey) is not None
                )
                if idx < 0 or withdrawn:
                    counts["skipped"] += 1
                    continue
                row["ledger_idx"] = idx
                await _store(owner, table, key, row, access_state.tag(mac, table, row))
                counts[table] += 1
        await owner.execute(
            "ALTER TABLE case_evidence_history"
            " ENABLE ALWAYS TRIGGER case_evidence_history_append_only"
        )
    # Recorded once the tags are in: should this fail, adoption may run again (it only ever
    # touches rows still untagged).
    await ledger.append([make_entry("note", {"op": ADOPTED, "rows": counts})])
    return counts


async def _store(conn: Conn, table: str, key: str, row: dict[str, Any], tag: bytes) -> None:
    columns = key.split(", ")
    where = " AND ".join(f"{k} = ${i}" for i, k in enumerate(columns, start=3))
    await conn.execute(
        f"UPDATE {table} SET ledger_idx = $1, tag = $2 WHERE {where}",  # noqa: S608
        row["ledger_idx"],
        tag,
        *(row[k] for k in columns),
    )
