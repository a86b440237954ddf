"""``fsck --state`` against PostgreSQL: replay the stored ledger, compare the stored tables.

Guarantees:

- One snapshot: the ledger and every table are read in one read-only REPEATABLE READ
  transaction, so appends running meanwhile can neither be half seen nor reported as findings.
- Streamed: entries are read in pages of :data:`PAGE` by index, and openings are fetched only
  for the entries that change state (decided by the kind inside the entry's bytes, never by the
  ``kind`` column); each table is read through a cursor and compared as it is read. Memory is
  the derived state, not the ledger.
- Every finding names table, primary key, column, the stored value, the ledger's value and the
  index of the entry that set it (see :mod:`vault.statecheck.compare`); a ``kind`` column that
  disagrees with the entry's bytes is a finding too.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from vault.db import Conn
from vault.statecheck.compare import TableComparison
from vault.statecheck.replay import STATE_KINDS, DerivedState, Finding, OpeningRow, Replayer

PAGE = 10_000

# What is read of each table: its key columns and every column the replay derives.
SELECTS: dict[str, str] = {
    "evidence": "SELECT id, sha256, size, ledger_idx, label_level, label_caveats, dock_id,"
    " device_id, officer_id, recorded_at, category, disposed_at FROM evidence",
    "renditions": "SELECT id, evidence_id, kind, sha256, size, media_type, ledger_idx,"
    " label_level, label_caveats FROM renditions",
    "principals": "SELECT id, roles, clearance, caveats, active, ledger_idx, officer_id,"
    " dock_ids FROM principals",
    "tokens": "SELECT id, principal_id, expires_at, revoked_at, token_hash FROM tokens",
    "principal_cases": "SELECT principal_id, case_id, ledger_idx FROM principal_cases",
    "cases": "SELECT id, title, label_level, label_caveats, ledger_idx FROM cases",
    "case_evidence_history": "SELECT ledger_idx, case_id, evidence_id, action, principal_id"
    " FROM case_evidence_history",
    "dispositions": "SELECT evidence_id, ledger_idx, sha256 FROM dispositions",
    "legal_holds": "SELECT placed_idx, evidence_id, case_id, reason, placed_by, released_idx"
    " FROM legal_holds",
}


@dataclass
class StateReport:
    """What ``fsck --state`` found: ``ok`` only when ``findings`` is empty."""

    entries: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    unchecked: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.findings


def _kind(data: bytes) -> str | None:
    """The kind an entry's bytes name (None if they are not a JSON object)."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    kind = body.get("kind") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else None


async def derive(conn: Conn, findings: list[Finding] | None = None) -> DerivedState:
    """Replay the stored ledger (call inside a transaction for one snapshot)."""
    r = Replayer()
    after = -1
    while True:
        page = await conn.fetch(
            "SELECT idx, kind, data FROM ledger_entries WHERE idx > $1 ORDER BY idx LIMIT $2",
            after,
            PAGE,
        )
        if not page:
            break
        after = page[-1]["idx"]
        wanted: list[tuple[int, bytes]] = []
        for row in page:
            data = bytes(row["data"])
            kind = _kind(data)
            if kind != row["kind"] and findings is not None:
                key = (("idx", str(row["idx"])),)
                findings.append(
                    Finding(
                        "ledger_entries", key, "kind", row["kind"], kind, row["idx"], "different"
                    )
                )
            if kind in STATE_KINDS or kind is None:
                wanted.append((row["idx"], data))
            else:
                r.state.entries += 1
        openings: dict[int, list[OpeningRow]] = {}
        for o in await conn.fetch(
            "SELECT idx, field, salt, value FROM ledger_openings WHERE idx = ANY($1::bigint[])",
            [i for i, _d in wanted],
        ):
            openings.setdefault(o["idx"], []).append(
                OpeningRow(o["field"], bytes(o["salt"]), bytes(o["value"]))
            )
        for idx, data in wanted:
            r.feed(idx, data, openings.get(idx, ()))
    return r.state


async def fsck_state(conn: Conn) -> StateReport:
    """Replay the ledger and compare every bound table with it (module docstring). Called in a
    transaction, it reads that transaction's view (a test's uncommitted edits, say)."""
    if conn.is_in_transaction():
        return await _fsck_state(conn)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _fsck_state(conn)


async def _fsck_state(conn: Conn) -> StateReport:
    report = StateReport()
    state = await derive(conn, report.findings)
    report.entries = state.entries
    report.findings.extend(state.problems)
    for table, sql in SELECTS.items():
        c = TableComparison(table, state.tables[table], report.unchecked)
        batch: list[dict[str, object]] = []
        async for row in conn.cursor(sql, prefetch=PAGE):
            batch.append(dict(row.items()))
            if len(batch) >= PAGE:
                c.feed(batch)
                batch = []
        c.feed(batch)
        report.findings.extend(c.finish())
        report.rows[table] = c.rows
    return report
