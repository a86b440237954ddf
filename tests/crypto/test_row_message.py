"""Row tags' message: the direct builder gives exactly the bytes of the canonical JSON, and a
tag made with one value never verifies another (pure functions, no I/O)."""

from __future__ import annotations

import enum
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.keys.hostmac import HostMac, RowTampered, _plain, row_message


def reference(table: str, key: list[object], values: dict[str, object], idx: int) -> bytes:
    """The definition: json.dumps of the plain document, keys sorted, no spaces, UTF-8."""
    doc = [table, [_plain(k) for k in key], _plain(values), int(idx)]
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Colour(enum.Enum):
    RED = "red"


ZONES = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))])
INSTANTS = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=ZONES
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(),  # quotes, backslashes, control characters, non-ASCII, surrogates excluded
    INSTANTS,
    st.uuids(),
    st.just(Colour.RED),
    st.binary(max_size=8),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.tuples(SCALARS, SCALARS))


@settings(max_examples=400, deadline=None)
@given(
    table=st.text(min_size=1, max_size=12),
    key=st.lists(st.one_of(st.text(max_size=8), st.uuids(), st.integers()), max_size=3),
    values=st.dictionaries(st.text(max_size=10), VALUES, max_size=8),
    idx=st.integers(min_value=0, max_value=2**62),
)
def test_direct_message_is_the_canonical_json(
    table: str, key: list[object], values: dict[str, object], idx: int
) -> None:
    assert row_message(table, key, values, idx) == reference(table, key, values, idx)


def test_message_of_a_typical_evidence_row_is_the_canonical_json() -> None:
    when = datetime(2026, 12, 7, 8, 30, 1, 5, tzinfo=UTC)
    values: dict[str, object] = {
        "sha256": "ab" * 32,
        "size": 123_456,
        "dock_id": "采集站-01",
        "recorded_at": when,
        "acquired_at": when.astimezone(timezone(timedelta(hours=8))),
        "label_caveats": ["personal_privacy"],
        "disposed_at": None,
        "file_name": 'a"b\\c\n.mp4',
    }
    eid = uuid.uuid4()
    got = row_message("evidence", [eid], values, 7)
    assert got == reference("evidence", [eid], values, 7)
    assert b'"acquired_at":"2026-12-07T08:30:01.000005+00:00"' in got  # one spelling per instant


@pytest.mark.parametrize(
    ("column", "forged"),
    [
        ("size", 123_456 + (2**61 - 1)),  # equal under Python's hash(), not under the tag
        ("size", True),  # 1 == True in Python; a tag must tell them apart
        ("label_level", 1.0),
        ("officer_id", "OFF002"),
    ],
)
def test_attack_edited_value_equal_under_python_is_checked_in_full(
    column: str, forged: object
) -> None:
    mac = HostMac(bytes([7]) * 32)
    values: dict[str, object] = {"size": 123_456, "label_level": 1, "officer_id": "OFF001"}
    tag = mac.row("evidence", ["x"], values, 3)
    raw = ("evidence", "x", 3, *values.values())
    mac.check_row_memo(tag, raw, lambda: ("evidence", ["x"], values, 3))  # verified, remembered
    edited = {**values, column: forged}
    raw_edited = ("evidence", "x", 3, *edited.values())
    with pytest.raises(RowTampered):
        mac.check_row_memo(tag, raw_edited, lambda: ("evidence", ["x"], edited, 3))
