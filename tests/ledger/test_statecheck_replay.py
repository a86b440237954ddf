"""The pure replay and comparison of fsck --state, without a database: entries are built with
make_entry exactly as the service builds them, openings are the ones make_entry returns."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from vault.ledger import PreparedEntry, make_entry
from vault.policy.labels import Label, Level
from vault.statecheck import OpeningRow, compare, replay
from vault.statecheck.compare import normal
from vault.statecheck.replay import EITHER, NOT_RECORDED, DerivedState, Replayer

E1 = str(uuid.UUID(int=1))
R1 = str(uuid.UUID(int=2))


def items(*entries: PreparedEntry) -> list[tuple[int, bytes, list[OpeningRow]]]:
    return [
        (i, e.data, [OpeningRow(o.field, o.salt, o.value) for o in e.openings])
        for i, e in enumerate(entries)
    ]


def acquired(eid: str = E1, label: str = "internal") -> PreparedEntry:
    return make_entry(
        "acquired",
        {"evidence_id": eid, "sha256": "a" * 64, "size": 10, "label": label},
        {
            "file_name": "x/DEV_OFF_1.mp4",
            "dock_id": "dock-01",
            "device_id": "DEV",
            "officer_id": "OFF",
            "recorded_at": "2026-01-01T12:00:00+08:00",
        },
    )


def derived(rid: str = R1, eid: str = E1, label: str = "internal") -> PreparedEntry:
    fields = {
        "evidence_id": eid,
        "rendition": "poster",
        "rendition_id": rid,
        "output_sha256": "b" * 64,
        "output_size": 5,
        "media_type": "image/jpeg",
        "label": label,
    }
    return make_entry("derived", fields)


def principal(op: str, fields: dict[str, Any] | None = None, **secrets: Any) -> PreparedEntry:
    return make_entry("principal", {"op": op, **(fields or {})}, {"by": "admin", **secrets})


def values(state: DerivedState, table: str, *key: str) -> dict[str, object]:
    row = state.row(table, key)
    assert row is not None, f"no derived {table} row {key}"
    return row.values


def test_acquired_then_labelled_raises_renditions_and_records_who_set_what() -> None:
    secret = Label(Level.SECRET)
    state = replay(
        items(
            acquired(),
            derived(),
            make_entry(
                "labelled",
                {
                    "target_kind": "evidence",
                    "evidence": E1,
                    "label": secret.to_json(),
                    "previous": Label(Level.INTERNAL).to_json(),
                },
                {"by": "admin"},
            ),
        )
    )
    ev = values(state, "evidence", E1)
    assert ev["sha256"] == "a" * 64 and ev["size"] == 10 and ev["officer_id"] == "OFF"
    assert ev["label_level"] == int(Level.SECRET) and ev["label_caveats"] == ()
    assert ev["recorded_at"] == normal("evidence", "recorded_at", ev["recorded_at"])
    rendition = state.row("renditions", (R1,))
    assert rendition is not None and rendition.values["label_level"] == int(Level.SECRET)
    assert rendition.index_of("label_level") == 2 and rendition.index_of("sha256") == 1
    assert state.problems == []


def test_assignments_tokens_and_principals_follow_their_ops() -> None:
    state = replay(
        items(
            principal(
                "added",
                {"roles": ["reviewer"], "clearance": Label(Level.SECRET).to_json()},
                principal="p",
                officer_id=None,
                dock_ids=["d2", "d1"],
            ),
            principal("assigned", principal="p", case="K1"),
            principal("assigned", principal="p", case="K2"),
            principal("assigned", principal="p", case="K1"),
            principal("unassigned", principal="p", case="K2"),
            principal("disabled", principal="p"),
            principal(
                "token-created",
                {"token": "tok_1", "expires": "2026-01-02T00:00:00.000Z"},
                principal="p",
                token_hash="c" * 64,
            ),
            principal("token-revoked", {"token": "tok_1"}, principal="p"),
            principal("token-revoked", {"token": "tok_1"}, principal="p"),
        )
    )
    assert set(state.tables["principal_cases"]) == {("p", "K1")}
    # assigning again moves the row to the newest assignment (its tag binds that index)
    assert state.tables["principal_cases"][("p", "K1")].values == {"ledger_idx": 3}
    p = values(state, "principals", "p")
    assert p["active"] is False and p["ledger_idx"] == 5 and p["dock_ids"] == ("d1", "d2")
    assert p["officer_id"] is None and p["roles"] == ("reviewer",)
    token = state.row("tokens", ("tok_1",))
    assert token is not None and token.values["revoked_at"] == "set"
    assert token.index_of("revoked_at") == 7  # the first revocation, not the no-op


def test_links_history_and_current_links() -> None:
    state = replay(
        items(
            acquired(),
            make_entry(
                "case",
                {"op": "created", "label": Label(Level.INTERNAL).to_json()},
                {"case": "K", "title": "t", "by": "a"},
            ),
            make_entry("linked", {"evidence_id": E1, "sha256": "a" * 64}, {"case": "K", "by": "a"}),
            make_entry(
                "unlinked", {"evidence_id": E1, "sha256": "a" * 64}, {"case": "K", "by": "a"}
            ),
            make_entry("case", {"op": "retitled"}, {"case": "K", "title": "t2", "by": "a"}),
            make_entry(
                "disposed",
                {"evidence_id": E1, "sha256": "a" * 64, "renditions": [], "reason": "r"},
                {"by": "a"},
            ),
        )
    )
    assert state.links == {("K", E1): ("unlinked", 3)}
    assert [k for k in state.tables["case_evidence_history"]] == [("2",), ("3",)]
    assert values(state, "cases", "K")["title"] == "t2"
    assert values(state, "cases", "K")["ledger_idx"] == 4
    assert values(state, "evidence", E1)["disposed_at"] is EITHER
    assert values(state, "dispositions", E1) == {"ledger_idx": 5, "sha256": "a" * 64}


def test_attack_forged_opening_is_a_finding_and_is_not_used() -> None:
    entry = principal("assigned", principal="p", case="K1")
    [(idx, data, openings)] = items(entry)
    forged = [
        o._replace(value=b'"K2"') if o.field == "case" else o for o in openings
    ]  # the insider rewrote which case was assigned
    state = Replayer()
    state.feed(idx, data, forged)
    assert [(f.table, dict(f.key), f.problem) for f in state.state.problems] == [
        ("ledger_openings", {"idx": "0", "field": "case"}, "opening")
    ]
    assert state.state.tables["principal_cases"] == {}  # neither K1 nor K2 is believed


def test_attack_deleted_opening_and_rewritten_bytes_are_findings() -> None:
    [(idx, data, openings)] = items(principal("disabled", principal="p"))
    r = Replayer()
    r.feed(idx, data, [o for o in openings if o.field != "principal"])
    r.feed(1, b'{"kind": "note"}', [])  # not canonical JSON
    problems = [(f.table, f.column, f.problem) for f in r.state.problems]
    assert problems == [("ledger_openings", "*", "missing"), ("ledger_entries", "data", "entry")]


def test_older_entries_leave_columns_unchecked_not_guessed() -> None:
    old = make_entry("acquired", {"evidence_id": E1, "sha256": "a" * 64}, {"file_name": "f"})
    state = replay(items(old))
    ev = values(state, "evidence", E1)
    assert ev["size"] is NOT_RECORDED and ev["label_level"] is NOT_RECORDED
    assert ev["officer_id"] is NOT_RECORDED
    stored = {
        "id": uuid.UUID(E1), "sha256": "a" * 64, "size": 99, "ledger_idx": 0, "label_level": 4,
        "label_caveats": [], "dock_id": "x", "device_id": "y", "officer_id": "z",
        "recorded_at": None, "category": "ordinary", "disposed_at": None,
    }  # fmt: skip
    unchecked: Counter[str] = Counter()
    assert compare(state.tables, {"evidence": [stored]}, unchecked) == []
    assert unchecked["evidence.size"] == 1 and unchecked["evidence.officer_id"] == 1


def _stored_evidence(**changes: object) -> dict[str, object]:
    from datetime import datetime

    row: dict[str, object] = {
        "id": uuid.UUID(E1), "sha256": "a" * 64, "size": 10, "ledger_idx": 0, "label_level": 1,
        "label_caveats": [], "dock_id": "dock-01", "device_id": "DEV", "officer_id": "OFF",
        "recorded_at": datetime.fromisoformat("2026-01-01T04:00:00+00:00"),
        "category": "ordinary", "disposed_at": None,
    }  # fmt: skip
    row.update(changes)
    return row


def test_compare_names_table_key_column_values_and_entry() -> None:
    state = replay(items(acquired()))
    assert compare(state.tables, {"evidence": [_stored_evidence()]}) == []
    [f] = compare(state.tables, {"evidence": [_stored_evidence(size=11)]})
    assert (f.table, dict(f.key), f.column, f.table_value, f.ledger_value, f.index) == (
        "evidence", {"id": E1}, "size", 11, 10, 0
    )  # fmt: skip
    assert f.line() == f"different: evidence [id={E1}] size: table 11, ledger 10 (entry 0)"
    [gone] = compare(state.tables, {"evidence": []})
    assert (gone.problem, gone.column, gone.index) == ("missing", "*", 0)
    other = _stored_evidence(id=uuid.UUID(int=9))
    extra = compare(state.tables, {"evidence": [_stored_evidence(), other]})
    assert [(x.problem, dict(x.key)) for x in extra] == [("extra", {"id": str(uuid.UUID(int=9))})]
    [disposed] = compare(state.tables, {"evidence": [_stored_evidence(disposed_at="2026")]})
    assert (disposed.column, disposed.table_value, disposed.ledger_value) == (
        "disposed_at", "set", None
    )  # fmt: skip


def test_compare_does_not_take_one_for_true() -> None:
    state = replay(
        items(principal("added", {"roles": [], "clearance": Label(Level.PUBLIC).to_json()},
                        principal="p", officer_id=None, dock_ids=[]))
    )  # fmt: skip
    row = {"id": "p", "roles": [], "clearance": 0, "caveats": [], "active": 1, "ledger_idx": 0,
           "officer_id": None, "dock_ids": []}  # fmt: skip
    [f] = compare(state.tables, {"principals": [row]})
    assert f.column == "active"
    assert compare(state.tables, {"principals": [{**row, "active": True}]}) == []


def test_attack_entry_without_its_row_key_is_a_finding() -> None:
    # a `derived` entry that does not say which rendition row it made
    bare = make_entry("derived", {"evidence_id": E1, "rendition": "poster"})
    r = Replayer()
    r.feed(0, bare.data, [])
    [f] = r.state.problems
    assert (f.table, f.column, f.problem, f.index) == ("ledger_entries", "data", "entry", 0)
    assert r.state.tables["renditions"] == {}
