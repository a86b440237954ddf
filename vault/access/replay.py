"""What the ledger says about access state: a pure fold of entries into a small mirror.

The rows that decide access (principals, tokens, case assignments, cases) carry row tags, but a
tag alone does not catch a row put back to an earlier, genuine value (an assignment re-inserted
after its ``unassigned`` entry, a revoked token un-revoked). Every change of these rows is a
ledger entry, so the ledger knows, for each row, the index of the entry that last set it. This
module folds entries into that knowledge; ``vault.access.state`` keeps one fold in memory and
refuses a row whose index is older than the mirror's (``AccessMirror.floor``).

Pure: no I/O, no database. ``opened`` verifies an entry's openings against its commitments, so
the fold can be fed from ``ledger_entries``/``ledger_openings`` rows (a replay at start, or
``evault ledger fsck --state``) or from the entries this process has just appended.

Guarantees:

- ``fold`` takes entries in any order and keeps, per key, the highest index seen (so replaying
  twice, or learning an entry both locally and from the database, is harmless).
- The mirror only ever *restricts*: it raises the floor a row's index must reach; it never makes
  a row acceptable that its tag does not prove. A forged entry can deny access, never grant it.
- Keys: principal id (``added``/``enabled``/``disabled``), token id (``token-created``/
  ``token-revoked``), (principal id, case id) (``assigned``/``unassigned``), case id (``case``
  entries and ``labelled`` entries about a case).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from verify.canonical import canonical_json, commitment

__all__ = ["KINDS", "OPENED_FIELDS", "AccessMirror", "opened"]

KINDS = ("principal", "case", "labelled")
"""The entry kinds that can change access state."""
OPENED_FIELDS = ("principal", "case")
"""The committed fields the fold needs opened."""
_PRINCIPAL_ROW_OPS = frozenset({"added", "enabled", "disabled"})
_TOKEN_OPS = frozenset({"token-created", "token-revoked"})
_ASSIGN_OPS = {"assigned": True, "unassigned": False}


def opened(
    data: bytes, openings: Iterable[tuple[str, bytes, bytes]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The entry's body and its opened committed values (field -> value). ValueError if the
    entry is not canonical JSON or an opening does not match its commitment."""
    body = json.loads(data)
    if not isinstance(body, dict) or canonical_json(body) != bytes(data):
        raise ValueError("the entry is not canonical JSON")
    commits = body.get("commitments") or {}
    out: dict[str, Any] = {}
    for name, salt, value in openings:
        expected = commits.get(name)
        parsed = json.loads(value)
        if canonical_json(parsed) != bytes(value):
            raise ValueError(f"opening {name!r} is not canonical JSON")
        if expected is None or commitment(name, parsed, bytes(salt)) != expected:
            raise ValueError(f"opening {name!r} does not match its commitment")
        out[name] = parsed
    return body, out


@dataclass
class AccessMirror:
    """Per key, the index of the newest entry that set the row (see the module docstring)."""

    seen: int = -1
    """The highest index folded from the database (entries learned locally do not move it)."""
    principals: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    assignments: dict[tuple[str, str], tuple[int, bool]] = field(default_factory=dict)
    cases: dict[str, int] = field(default_factory=dict)

    def fold(self, idx: int, body: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        """Account for entry ``idx`` (its body and opened values, see ``opened``)."""
        kind = body.get("kind")
        if kind == "principal":
            who, op = values.get("principal"), body.get("op")
            if not isinstance(who, str):
                return
            if op in _PRINCIPAL_ROW_OPS:
                _raise(self.principals, who, idx)
            elif op in _TOKEN_OPS and isinstance(body.get("token"), str):
                _raise(self.tokens, body["token"], idx)
            elif op in _ASSIGN_OPS and isinstance(values.get("case"), str):
                key = (who, values["case"])
                if idx > self.assignments.get(key, (-1, False))[0]:
                    self.assignments[key] = (idx, _ASSIGN_OPS[op])
        elif kind == "case" or (kind == "labelled" and body.get("target_kind") == "case"):
            case = values.get("case")
            if isinstance(case, str):
                _raise(self.cases, case, idx)

    def floor(self, table: str, key: tuple[str, ...]) -> int:
        """The lowest ledger index a current row of ``table`` with ``key`` may carry (-1: any)."""
        if table == "principals":
            return self.principals.get(key[0], -1)
        if table == "tokens":
            return self.tokens.get(key[0], -1)
        if table == "principal_cases":
            return self.assignments.get((key[0], key[1]), (-1, False))[0]
        if table == "cases":
            return self.cases.get(key[0], -1)
        return -1

    def unassigned(self, principal_id: str, case_id: str) -> int | None:
        """The index of the entry that last unassigned the case, if that is the newest."""
        idx, on = self.assignments.get((principal_id, case_id), (-1, True))
        return None if on else idx


def _raise(table: dict[str, int], key: str, idx: int) -> None:
    if idx > table.get(key, -1):
        table[key] = idx
