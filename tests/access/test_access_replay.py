"""The pure fold of access-state entries (``vault.access.replay``), no database."""

from __future__ import annotations

import pytest

from vault.access.replay import AccessMirror, opened
from vault.ledger import make_entry
from vault.ledger.entry import PreparedEntry


def _fold(mirror: AccessMirror, idx: int, entry: PreparedEntry) -> None:
    body, values = opened(entry.data, [(o.field, o.salt, o.value) for o in entry.openings])
    mirror.fold(idx, body, values)


def test_the_newest_entry_per_key_sets_the_floor_in_any_order() -> None:
    entries = {
        3: make_entry("principal", {"op": "added"}, {"principal": "rv", "by": "admin"}),
        5: make_entry("principal", {"op": "assigned"}, {"principal": "rv", "case": "K"}),
        7: make_entry("principal", {"op": "token-created", "token": "tok_1"}, {"principal": "rv"}),
        9: make_entry("principal", {"op": "unassigned"}, {"principal": "rv", "case": "K"}),
        11: make_entry("principal", {"op": "token-revoked", "token": "tok_1"}, {"principal": "rv"}),
        12: make_entry("case", {"op": "created"}, {"case": "K", "title": "t"}),
        14: make_entry("labelled", {"target_kind": "case"}, {"case": "K"}),
        15: make_entry("labelled", {"target_kind": "evidence"}, {"case": "K"}),  # not the case's
        16: make_entry("principal", {"op": "disabled"}, {"principal": "rv"}),
    }
    forwards, backwards = AccessMirror(), AccessMirror()
    for idx in sorted(entries):
        _fold(forwards, idx, entries[idx])
    for idx in sorted(entries, reverse=True):
        _fold(backwards, idx, entries[idx])
    for mirror in (forwards, backwards):
        assert mirror.floor("principals", ("rv",)) == 16
        assert mirror.floor("tokens", ("tok_1",)) == 11
        assert mirror.floor("principal_cases", ("rv", "K")) == 9
        assert mirror.unassigned("rv", "K") == 9
        assert mirror.floor("cases", ("K",)) == 14
        assert mirror.floor("cases", ("other",)) == -1
        assert mirror.floor("case_evidence_history", ("1",)) == -1


def test_an_opening_that_does_not_match_its_commitment_is_refused() -> None:
    entry = make_entry("principal", {"op": "assigned"}, {"principal": "rv", "case": "K"})
    good = [(o.field, o.salt, o.value) for o in entry.openings]
    assert opened(entry.data, good)[1] == {"case": "K", "principal": "rv"}
    forged = [(f, s, b'"K2"' if f == "case" else v) for f, s, v in good]
    with pytest.raises(ValueError, match="commitment"):
        opened(entry.data, forged)
    with pytest.raises(ValueError, match="canonical"):
        opened(entry.data + b" ", good)
