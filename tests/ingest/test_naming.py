"""ingest.naming: station file names and sidecars. Pure; hypothesis for hostile names."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.naming import NameInfo, NameParser, parse_name
from vault.errors import BadRequest, ConfigError

SHANGHAI = ZoneInfo("Asia/Shanghai")


def assert_safe(info: NameInfo) -> None:
    for text in (info.device_id, info.officer_id, info.ext):
        if text is not None:
            text.encode("utf-8")  # no lone surrogates
            assert text.isprintable() or text == ""
    if info.recorded_at is not None:
        assert info.recorded_at.tzinfo is not None
    if not info.matched:
        assert (info.device_id, info.officer_id, info.recorded_at, info.seq) == (None,) * 4
    json.dumps([info.device_id, info.officer_id, info.seq, info.ext], ensure_ascii=False)


def test_convention_with_seq() -> None:
    info = parse_name("DSJ-A01_0123456_20240315093000_0002.MP4")
    assert info == NameInfo(
        device_id="DSJ-A01",
        officer_id="0123456",
        recorded_at=datetime(2024, 3, 15, 9, 30, 0, tzinfo=SHANGHAI),
        seq=2,
        ext="mp4",
        matched=True,
    )
    assert info.recorded_at is not None
    assert info.recorded_at.astimezone(UTC) == datetime(2024, 3, 15, 1, 30, tzinfo=UTC)


def test_convention_without_seq_bytes_and_path() -> None:
    info = parse_name(b"/dock/in/DEV1_OFF9_20231231235959.wav")
    assert (info.device_id, info.officer_id, info.seq, info.ext, info.matched) == (
        "DEV1",
        "OFF9",
        None,
        "wav",
        True,
    )
    assert info.recorded_at == datetime(2023, 12, 31, 23, 59, 59, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "video.mp4",
        "DEV_OFF_2024031509300.mp4",  # 13 digits
        "DEV_OFF_20241315093000.mp4",  # month 13
        "DEV_OFF_20240230093000.mp4",  # 30 February
        "DEV_OFF_20240315093000_1234567890.mp4",  # seq too long
        "DEV_OFF_20240315093000",  # no extension
        "DEV_OFF_２０２４０３１５０９３０００.mp4",  # fullwidth digits
        "DÉV_OFF_20240315093000.mp4",
        "DEV_OFF_20240315093000.mp4\n",
        "x" * 5000 + "_OFF_20240315093000.mp4",
    ],
)
def test_non_matching_names_are_unknown_not_errors(name: str) -> None:
    info = parse_name(name)
    assert not info.matched
    assert_safe(info)


def test_ext_kept_for_unmatched_names() -> None:
    assert parse_name("holiday.MOV").ext == "mov"
    assert parse_name("noext").ext == ""
    assert parse_name(".hidden").ext == ""
    assert parse_name(b"bad\xff.mp4").ext == "mp4"


def test_non_utf8_name_never_crashes() -> None:
    info = parse_name(b"\xff\xfe_\x80_20240315093000.mp4")
    assert not info.matched
    assert_safe(info)


def test_configurable_pattern_and_zone() -> None:
    parser = NameParser(
        r"(?P<start>[0-9]{14})-(?P<officer>[^-]+)-(?P<device>.+)\.mp4", tz="Europe/Berlin"
    )
    info = parser.parse("20240701120000-张三-cam 7.mp4")
    assert (info.officer_id, info.device_id, info.seq, info.matched) == (
        "张三",
        "cam 7",
        None,
        True,
    )
    assert info.recorded_at == datetime(2024, 7, 1, 12, tzinfo=ZoneInfo("Europe/Berlin"))
    # captured text with a lone surrogate or a control character is not trusted
    assert not parser.parse(b"20240701120000-\xff-cam.mp4").matched
    assert not parser.parse("20240701120000-a\tb-cam.mp4").matched
    # a pattern without some groups leaves those fields unknown
    only_time = NameParser(r"REC(?P<start>[0-9]{14})\.[a-z0-9]+").parse("REC20240101000000.ts")
    assert only_time.matched and only_time.device_id is None and only_time.recorded_at is not None


def test_bad_configuration_is_config_error() -> None:
    with pytest.raises(ConfigError):
        NameParser("(unclosed")
    with pytest.raises(ConfigError):
        NameParser(tz="Mars/Olympus_Mons")


def test_sidecar_overrides() -> None:
    parser = NameParser()
    info = parser.parse("DEV1_OFF9_20240315093000_0001.mp4")
    merged = parser.merge_sidecar(
        info,
        {
            "officer_id": "OFF7",
            "recorded_at": "2024-03-15T01:29:58Z",
            "seq": 4,
            "device_id": None,  # null overrides nothing
            "comment": "ignored",
        },
    )
    assert merged.device_id == "DEV1" and merged.officer_id == "OFF7" and merged.seq == 4
    assert merged.recorded_at == datetime(2024, 3, 15, 1, 29, 58, tzinfo=UTC)
    assert merged.ext == "mp4" and merged.matched
    naive = parser.merge_sidecar(parse_name("x.mp4"), {"recorded_at": "2024-03-15 09:30:00"})
    assert naive.recorded_at == datetime(2024, 3, 15, 9, 30, tzinfo=SHANGHAI)
    offset = parser.merge_sidecar(info, {"recorded_at": "2024-03-15T09:30:00+08:00"})
    assert offset.recorded_at is not None
    assert offset.recorded_at.utcoffset() == timedelta(hours=8)
    assert offset.recorded_at == datetime(2024, 3, 15, 9, 30, tzinfo=timezone(timedelta(hours=8)))


@pytest.mark.parametrize(
    "sidecar",
    [
        {"seq": -1},
        {"seq": True},
        {"seq": "3"},
        {"officer_id": ""},
        {"officer_id": 7},
        {"device_id": "a\udc80"},
        {"device_id": "a\nb"},
        {"recorded_at": "yesterday"},
        {"recorded_at": 1710466200},
    ],
)
def test_malformed_sidecar_is_bad_request(sidecar: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        NameParser().merge_sidecar(parse_name("DEV_OFF_20240315093000.mp4"), sidecar)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(name: bytes) -> None:
    assert_safe(parse_name(name))


@given(st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=300))
def test_arbitrary_text_never_raises(name: str) -> None:
    assert_safe(parse_name(name))


token = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-",
    min_size=1,
    max_size=20,
)


@given(
    device=token,
    officer=token,
    when=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2099, 12, 31)),
    seq=st.none() | st.integers(min_value=0, max_value=999_999_999),
    ext=st.sampled_from(["mp4", "MOV", "wav", "jpg"]),
)
def test_well_formed_names_roundtrip(
    device: str, officer: str, when: datetime, seq: int | None, ext: str
) -> None:
    when = when.replace(microsecond=0)
    name = (
        f"{device}_{officer}_{when:%Y%m%d%H%M%S}" + ("" if seq is None else f"_{seq}") + f".{ext}"
    )
    info = parse_name(name)
    assert info.matched
    assert (info.device_id, info.officer_id, info.seq, info.ext) == (
        device,
        officer,
        seq,
        ext.lower(),
    )
    assert info.recorded_at == when.replace(tzinfo=SHANGHAI)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from(["device_id", "officer_id", "recorded_at", "seq", "other"]), json_values
    )
)
def test_arbitrary_sidecars_merge_or_bad_request(sidecar: dict[str, object]) -> None:
    parser = NameParser()
    try:
        merged = parser.merge_sidecar(parse_name("DEV_OFF_20240315093000.mp4"), sidecar)
    except BadRequest:
        return
    assert_safe(merged)
