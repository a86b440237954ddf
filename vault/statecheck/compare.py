"""Comparing stored rows with the state the ledger implies (no I/O).

Guarantees:

- Every derived row is matched to the stored row with the same primary key: a derived row
  with no stored row is ``missing``, a stored row with no derived row is ``extra`` (e.g. an
  assignment put back after its ``unassigned`` entry), and every checked column whose stored
  value differs from the derived one is ``different``, with the index of the entry that set it.
- Values are compared in one normal form whatever the driver returns: uuids and keys as text,
  arrays as sorted tuples (their order carries no meaning), ``bytea`` as hex, timestamps as
  aware datetimes (a token's expiry to the millisecond the ledger records), and a nullable
  timestamp whose presence is what the ledger decides (``revoked_at``, ``disposed_at``) as
  ``"set"`` or None.
- A column the ledger does not record for a row (:data:`~vault.statecheck.replay.NOT_RECORDED`)
  or allows either way (:data:`~vault.statecheck.replay.EITHER`) is not compared; the former
  is counted in ``unchecked`` so a report can say what was not checked.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime

from vault.statecheck.replay import ABSENT, NOT_RECORDED, TABLE_KEYS, Finding, Key, Row, _Unchecked

# Columns whose presence, not their time, is what the ledger decides.
PRESENCE = frozenset({("tokens", "revoked_at"), ("evidence", "disposed_at")})
# Columns the ledger records to the millisecond.
MILLIS = frozenset({("tokens", "expires_at")})

# Columns of the bound tables the ledger does not record at all: never compared.
NOT_RECORDED_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "evidence": (
        "file_name (the ledger commits to the dock path)",
        "extension",
        "metadata",
        "acquired_at",
        "media_status",
        "media_reason",
        "probe",
        "integrity",
        "last_scrub_at",
    ),
    "renditions": ("params", "created_at"),
    "principals": ("display_name", "created_at", "updated_at"),
    "tokens": ("comment", "created_at", "revoked_at (time; its presence is checked)"),
    "principal_cases": ("assigned_at",),
    "cases": ("created_at", "updated_at"),
    "case_evidence_history": ("at",),
    "dispositions": ("at",),
    "legal_holds": ("id", "placed_at", "released_at (time; released_idx is checked)"),
}


def normal(table: str, column: str, value: object) -> object:
    """``value`` as read from ``table.column`` in the form the replay derives."""
    if (table, column) in PRESENCE:
        return None if value is None else "set"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return tuple(sorted(str(v) for v in value))
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, datetime) and (table, column) in MILLIS:
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


def row_key(table: str, row: Mapping[str, object]) -> Key:
    return tuple(str(normal(table, k, row[k])) for k in TABLE_KEYS[table])


def _named(table: str, key: Key) -> tuple[tuple[str, str], ...]:
    return tuple(zip(TABLE_KEYS[table], key, strict=True))


def compare_row(
    table: str, key: Key, derived: Row, stored: Mapping[str, object], unchecked: Counter[str]
) -> list[Finding]:
    """The differences between one stored row and its derived row (module docstring)."""
    out = []
    for column, want in derived.values.items():
        if isinstance(want, _Unchecked):
            if want is NOT_RECORDED:
                unchecked[f"{table}.{column}"] += 1
            continue
        have = normal(table, column, stored[column])
        if have != want or not _same_kind(have, want):
            idx = derived.index_of(column)
            out.append(Finding(table, _named(table, key), column, have, want, idx, "different"))
    return out


def _same_kind(a: object, b: object) -> bool:
    """bool and int compare equal in Python (True == 1); a stored value is only equal to the
    derived one when both are booleans or both are not."""
    return isinstance(a, bool) == isinstance(b, bool)


class TableComparison:
    """Compare one table's stored rows (fed in any order, in pages) with its derived rows."""

    def __init__(self, table: str, derived: Mapping[Key, Row], unchecked: Counter[str]) -> None:
        self.table = table
        self._derived = derived
        self._seen: set[Key] = set()
        self._unchecked = unchecked
        self.findings: list[Finding] = []
        self.rows = 0

    def feed(self, rows: Iterable[Mapping[str, object]]) -> None:
        for stored in rows:
            self.rows += 1
            key = row_key(self.table, stored)
            derived = self._derived.get(key)
            if derived is None or key in self._seen:
                self.findings.append(
                    Finding(
                        self.table, _named(self.table, key), "*", "present", ABSENT, None, "extra"
                    )
                )
                continue
            self._seen.add(key)
            self.findings.extend(compare_row(self.table, key, derived, stored, self._unchecked))

    def finish(self) -> list[Finding]:
        """The findings, with a ``missing`` one for every derived row never fed."""
        for key, derived in self._derived.items():
            if key not in self._seen:
                named = _named(self.table, key)
                self.findings.append(
                    Finding(self.table, named, "*", ABSENT, "present", derived.idx, "missing")
                )
        return self.findings


def compare(
    tables: Mapping[str, Mapping[Key, Row]],
    stored: Mapping[str, Iterable[Mapping[str, object]]],
    unchecked: Counter[str] | None = None,
) -> list[Finding]:
    """Compare every table of ``stored`` with its derived rows in one go (module docstring)."""
    counts: Counter[str] = Counter() if unchecked is None else unchecked
    out: list[Finding] = []
    for table, rows in stored.items():
        c = TableComparison(table, tables[table], counts)
        c.feed(rows)
        out.extend(c.finish())
    return out
