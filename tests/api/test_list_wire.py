"""The list route's wire form: ``summary_fields`` written by orjson is ``summary_json``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from api.routes_evidence import summary_fields, summary_json
from vault.labels import Caveat, Label, Level
from vault.visibility import EvidenceSummary

TIMES = [
    datetime(2024, 12, 4, 6, 14, 52, tzinfo=UTC),
    datetime(2024, 12, 4, 6, 14, 52, 360000, tzinfo=UTC),
    datetime(2024, 12, 4, 6, 14, 52, 1, tzinfo=UTC),
    datetime(1999, 1, 1, tzinfo=timezone(timedelta(hours=8))),
    datetime(9, 1, 2, 3, 4, 5, 999999, tzinfo=UTC),
]


@pytest.mark.parametrize("when", TIMES)
def test_orjson_page_equals_the_stdlib_wire_form(when: datetime) -> None:
    s = EvidenceSummary(
        id="b0e51138-8f57-4ddc-b13c-038e8f8e1e5f",
        sha256="ab" * 32,
        size=53006336,
        file_name='现场 "录像" \\ 01.mp4\n',
        dock_id=None,
        device_id="DSJ-01138",
        officer_id="OFF01138",
        recorded_at=None,
        acquired_at=when,
        label=Label(Level.CONFIDENTIAL, frozenset({Caveat.PERSONAL_PRIVACY})),
        category="ordinary",
        media_status="ready",
        disposed_at=when + timedelta(microseconds=7),
        cases=("K-2", "K-10"),
    )
    expected = json.dumps({"items": [summary_json(s)], "next_cursor": None})
    got = orjson.dumps({"items": [summary_fields(s)], "next_cursor": None})
    assert json.loads(got) == json.loads(expected)
    assert list(json.loads(got)["items"][0]) == list(summary_json(s))  # same key order
