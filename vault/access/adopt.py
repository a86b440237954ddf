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
- ``evidence`` and ``renditions`` rows without a tag (migration 010) are adopted in the same run,
  each only where ``evault ledger fsck --state`` (``vault.statecheck``, replayed in the same
  transaction) finds no difference for that row, with ``state_idx`` the index of the newest
  entry that set its bound values as the ledger has them (a disposal not yet finished does not
  count). A row edited before adoption is therefore never tagged and stays refused (``skipped``).
  Bound columns the ledger does not record (``acquired_at``, ``file_name``, ``extension``) are
  taken as they stand, on the operator's word.
"""

from __future__ import annotations

from typing import Any

from vault.access import state as access_state
from vault.db import Conn
from vault.errors import Conflict
from vault.evidence.model import evidence_values, rendition_values
from vault.keys.hostmac import HostMac
from vault.ledger import LedgerWriter, make_entry
from vault.statecheck import fsck_state
from vault.statecheck.db import derive
from vault.statecheck.replay import DerivedState

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
    counts: dict[str, int] = {t: 0 for t in (*_KEYS, *_BYTES)} | {"skipped": 0}
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
        await _adopt_bytes(owner, mac, counts)
    # Recorded once the tags are in: should this fail, adoption may run again (it only ever
    # touches rows still untagged).
    await ledger.append([make_entry("note", {"op": ADOPTED, "rows": counts})])
    return counts


_BYTES = {"evidence": evidence_values, "renditions": rendition_values}


async def _adopt_bytes(owner: Conn, mac: HostMac, counts: dict[str, int]) -> None:
    """Tag the untagged evidence and rendition rows fsck --state finds nothing wrong with."""
    report = await fsck_state(owner)  # in the caller's transaction: its view, its locks
    wrong = {(f.table, tuple(v for _k, v in f.key)) for f in report.findings}
    state = await derive(owner)
    for table, values in _BYTES.items():
        rows = await owner.fetch(
            f"SELECT * FROM {table} WHERE tag IS NULL ORDER BY id FOR UPDATE"  # noqa: S608
        )
        for r in rows:
            key = (str(r["id"]),)
            idx = _state_idx(state, table, key, r["disposed_at"] if table == "evidence" else None)
            if idx is None or (table, key) in wrong:
                counts["skipped"] += 1
                continue
            tag = mac.row(table, [r["id"]], values(r), idx)
            await owner.execute(
                f"UPDATE {table} SET tag = $2, state_idx = $3 WHERE id = $1",  # noqa: S608
                r["id"],
                tag,
                idx,
            )
            counts[table] += 1


def _state_idx(
    state: DerivedState, table: str, key: tuple[str, ...], disposed: object
) -> int | None:
    """The newest entry that set the row's bound values, as the ledger has them; None if the
    ledger has no such row."""
    row = state.row(table, key)
    if row is None:
        return None
    changed = dict(row.changed or {})
    if disposed is None:
        changed.pop("disposed_at", None)  # recorded, blobs not yet removed: not set yet
    return max([row.idx, *changed.values()])


async def _store(conn: Conn, table: str, key: str, row: dict[str, Any], tag: bytes) -> None:
    columns = key.split(", ")
    where = " AND ".join(f"{k} = ${i}" for i, k in enumerate(columns, start=3))
    await conn.execute(
        f"UPDATE {table} SET ledger_idx = $1, tag = $2 WHERE {where}",  # noqa: S608
        row["ledger_idx"],
        tag,
        *(row[k] for k in columns),
    )
