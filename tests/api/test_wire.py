"""The wire models: one Struct gives the OpenAPI component or query parameters, the decoding
(400 naming the field) and the encoding (in process, no service)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from msgspec import UNSET
from multidict import MultiDict, MultiDictProxy

from api import models as W
from api.openapi import _SCHEMAS, define_structs, query_params
from api.routes_evidence import summary_wire
from api.wire import decode_body_bytes, decode_query, respond
from vault.access.listing import EvidenceSummary
from vault.errors import BadRequest
from vault.policy.labels import Caveat, Label, Level


def _bad_body(raw: bytes, struct: type) -> str:
    with pytest.raises(BadRequest) as info:
        decode_body_bytes(raw, struct)
    return info.value.detail


def _query(pairs: list[tuple[str, str]], struct: type) -> object:
    return decode_query(MultiDictProxy(MultiDict(pairs)), struct)


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"start_ms": "1", "end_ms": 3}', "start_ms: expected `int`, got `str`"),
        (b'{"start_ms": 1.0, "end_ms": 3}', "start_ms: expected `int`, got `float`"),
        (b'{"start_ms": true, "end_ms": 3}', "start_ms: expected `int`, got `bool`"),
        (b'{"end_ms": 3}', "start_ms: is required"),
        (b'{"start_ms": -1, "end_ms": 3}', "start_ms: expected `int` >= 0"),
        (b'{"start_ms": 0, "end_ms": 3, "speed": 2}', "speed: is not a known field"),
        (b"[0, 3]", "the body must be a JSON object"),
        (b'{"start_ms": 0, "end_ms": "\\u0000"}', "JSON strings may not hold NUL"),
        (b"[" * 70 + b"]" * 70, "JSON nested deeper than 64"),
    ],
)
def test_attack_malformed_body_is_400_naming_the_field(raw: bytes, detail: str) -> None:
    assert _bad_body(raw, W.ClipRequest).startswith(detail)


def test_a_well_formed_body_decodes_strictly() -> None:
    assert decode_body_bytes(b'{"start_ms": 0, "end_ms": 3}', W.ClipRequest) == W.ClipRequest(0, 3)
    assert decode_body_bytes(b'{"title": "t"}', W.CasePut).label is UNSET


def test_attack_value_echoed_in_a_detail_is_cut_short() -> None:
    q = [("unlinked", "x" * 100_000)]
    with pytest.raises(BadRequest) as info:
        _query(q, W.EvidenceQuery)
    assert info.value.detail.startswith("unlinked: invalid enum value")
    assert len(info.value.detail) <= 300


def test_query_is_coerced_from_text_and_repeats_only_for_lists() -> None:
    q = _query(
        [
            ("limit", "7"),
            ("caveat", "personal_privacy"),
            ("caveat", "commercial_secret"),
            ("acquired_from", "2026-12-01T08:00:00+08:00"),
            ("case", "C1"),
            ("case", "C2"),  # not a list: the first value, as aiohttp's get
        ],
        W.EvidenceQuery,
    )
    assert isinstance(q, W.EvidenceQuery)
    assert q.limit == 7 and q.case == "C1"
    assert q.caveat == ["personal_privacy", "commercial_secret"]
    assert q.acquired_from == datetime(2026, 12, 1, tzinfo=UTC)
    assert q.unlinked == "false" and q.cursor is None


@pytest.mark.parametrize(
    ("pairs", "detail"),
    [
        ([("limit", "0")], "limit: expected `int` >= 1"),
        ([("limit", "1001")], "limit: expected `int` <= 1000"),
        ([("limit", "ten")], "limit: expected `int`, got `str`"),
        ([("acquired_to", "2026-12-01T08:00:00")], "acquired_to: expected `datetime` with a"),
        ([("case", "")], "case: expected `str` of length >= 1"),
        ([("case", "c" * 257)], "case: expected `str` of length <= 256"),
        ([("unlinked", "yes")], "unlinked: invalid enum value 'yes'"),
    ],
)
def test_attack_malformed_query_is_400_naming_the_parameter(
    pairs: list[tuple[str, str]], detail: str
) -> None:
    with pytest.raises(BadRequest) as info:
        _query(pairs, W.EvidenceQuery)
    assert info.value.detail.startswith(detail)


def test_query_parameters_are_documented_from_the_struct() -> None:
    params = {p.name: p for p in query_params(W.EvidenceQuery)}
    assert list(params) == list(W.EvidenceQuery.__struct_fields__)
    assert all(p.where == "query" and not p.required for p in params.values())
    assert params["limit"].schema == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 100,
    }
    assert params["limit"].description == "page size"
    assert params["case"].schema["maxLength"] == 256  # the null of "| None" is left out
    assert "anyOf" not in params["acquired_from"].schema
    assert params["acquired_from"].schema["format"] == "date-time"
    assert params["caveat"].schema["type"] == "array"  # repeatable
    assert params["level"].schema["enum"] == [lv.slug for lv in Level]


def test_components_come_from_the_structs() -> None:
    (ref,) = define_structs(W.LinkResult)
    assert ref == {"$ref": "#/components/schemas/LinkResult"}
    link = _SCHEMAS["LinkResult"]
    assert "title" not in link and link["required"] == [
        "case_id",
        "evidence_id",
        "ledger_index",
        "linked",
    ]
    raised = _SCHEMAS["LabelRaised"]
    assert set(raised["properties"]) == {"from", "to"}  # the Python field is from_
    assert _SCHEMAS["Label"]["additionalProperties"] is False


def test_summary_encodes_to_its_schema_shape() -> None:
    when = datetime(2026, 12, 1, 8, 30, 1, 5, tzinfo=UTC)
    s = EvidenceSummary(
        id="0b7e4f0e-4d0a-4bd6-9d1b-0c5c4a3b2a10",
        sha256="ab" * 32,
        size=3,
        file_name="a.mp4",
        dock_id="dock1",
        device_id=None,
        officer_id="O1",
        recorded_at=None,
        acquired_at=when,
        label=Label(Level.SECRET, frozenset({Caveat.PERSONAL_PRIVACY, Caveat.COMMERCIAL_SECRET})),
        category="ordinary",
        media_status="ready",
        disposed_at=None,
        cases=("C1",),
    )
    r = respond(W.EvidencePage([summary_wire(s)], None))
    assert r.content_type == "application/json"
    assert isinstance(r.body, bytes)
    body = json.loads(r.body)
    item = body["items"][0]
    assert body["next_cursor"] is None
    assert datetime.fromisoformat(item["acquired_at"]) == when
    assert item["recorded_at"] is None and item["device_id"] is None
    assert item["label"] == {"level": "secret", "caveats": sorted(c.value for c in Caveat)}
    assert list(item) == list(W.EvidenceSummary.__struct_fields__)


@pytest.mark.parametrize("value", ["0", "0.5", "null", "1733040000", "2026-12-01"])
def test_attack_date_time_query_is_rfc3339_only(value: str) -> None:
    """No unix time, no null and no bare date where the document says date-time."""
    with pytest.raises(BadRequest) as info:
        _query([("acquired_from", value)], W.EvidenceQuery)
    assert info.value.detail.startswith("acquired_from: ")


@pytest.mark.parametrize("value", ["+5", " 5", "5.0", "1e2", "0x10", "５"])
def test_attack_integer_query_is_decimal_digits_only(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        _query([("limit", value)], W.EvidenceQuery)
    assert info.value.detail.startswith("limit: expected `int`, got `str`")
