"""Redaction specs and the filter-graph plan: pure functions, no ffmpeg, no database."""

from __future__ import annotations

import copy
import random
import re
from typing import Any

import pytest

from ingest.media.redactplan import MAX_INTERVALS, mute_expr, patches
from vault.errors import BadRequest
from vault.redaction.spec import (
    MAX_BOX_POINTS,
    MAX_FRAMES,
    MAX_KEYFRAMES,
    MAX_RANGES,
    MAX_TRACKS,
    Frame,
    InvalidSpec,
    box_at,
    parse_spec,
    spec_bytes,
    spec_sha256,
)

FRAME = Frame(320, 240, 3000)


def kf(t: int, x: int = 10, y: int = 10, w: int = 40, h: int = 30) -> dict[str, int]:
    return {"t_ms": t, "x": x, "y": y, "w": w, "h": h}


def good() -> dict[str, Any]:
    return {
        "version": 1,
        "effect": "blur",
        "boxes": [{"label": "face", "keyframes": [kf(0), kf(1000, x=100), kf(2000, x=100)]}],
        "frame_ranges": [{"start_ms": 2500, "end_ms": 2800}],
        "mute_ranges": [{"start_ms": 100, "end_ms": 200}, {"start_ms": 300, "end_ms": 400}],
    }


def fields(raw: object, frame: Frame | None = FRAME) -> dict[str, str]:
    with pytest.raises(InvalidSpec) as info:
        parse_spec(raw, frame)
    assert isinstance(info.value, BadRequest) and info.value.status == 400
    return dict(info.value.errors)


def test_a_good_spec_parses_with_defaults_filled_in() -> None:
    spec = parse_spec(good(), FRAME)
    assert spec.boxes[0].effect == "blur" and spec.boxes[0].label == "face"
    assert [r.start_ms for r in spec.mute_ranges] == [100, 300]
    again = parse_spec(__import__("json").loads(spec_bytes(spec)), FRAME)
    assert again == spec and spec_sha256(again) == spec_sha256(spec)


def test_the_hash_changes_with_any_field() -> None:
    base = spec_sha256(parse_spec(good()))
    moved = good()
    moved["boxes"][0]["keyframes"][1]["x"] = 101
    effect = good()
    effect["boxes"][0]["effect"] = "solid"
    assert len({base, spec_sha256(parse_spec(moved)), spec_sha256(parse_spec(effect))}) == 3


def test_a_box_outside_the_frame_names_its_field() -> None:
    raw = good()
    raw["boxes"][0]["keyframes"][1]["x"] = 300  # 300 + 40 > 320
    raw["boxes"][0]["keyframes"][2]["y"] = 215  # 215 + 30 > 240
    errors = fields(raw)
    assert "frame width 320" in errors["boxes[0].keyframes[1].x"]
    assert "frame height 240" in errors["boxes[0].keyframes[2].y"]


def test_times_beyond_the_duration_name_their_field() -> None:
    raw = good()
    raw["boxes"][0]["keyframes"][2]["t_ms"] = 3001
    raw["frame_ranges"][0]["end_ms"] = 4000
    errors = fields(raw)
    assert "beyond the duration of 3000 ms" in errors["boxes[0].keyframes[2].t_ms"]
    assert "beyond the duration" in errors["frame_ranges[0].end_ms"]


def test_without_a_frame_only_the_spec_itself_is_checked() -> None:
    raw = good()
    raw["boxes"][0]["keyframes"][1]["x"] = 5000
    assert parse_spec(raw).boxes[0].keyframes[1].x == 5000
    assert "frame width" in fields(raw)["boxes[0].keyframes[1].x"]


def test_millions_of_keyframes_are_refused_before_any_is_read() -> None:
    raw = good()
    raw["boxes"][0]["keyframes"] = [kf(i) for i in range(MAX_KEYFRAMES + 1)]
    assert f"at most {MAX_KEYFRAMES}" in fields(raw)["boxes[0].keyframes"]
    raw = good()
    raw["boxes"] = [good()["boxes"][0]] * (MAX_TRACKS + 1)
    assert f"at most {MAX_TRACKS}" in fields(raw)["boxes"]
    raw = good()
    raw["mute_ranges"] = [{"start_ms": 2 * i, "end_ms": 2 * i + 1} for i in range(MAX_RANGES + 1)]
    assert f"at most {MAX_RANGES}" in fields(raw)["mute_ranges"]


def test_overlapping_or_unsorted_ranges_are_refused() -> None:
    raw = good()
    raw["mute_ranges"] = [{"start_ms": 100, "end_ms": 300}, {"start_ms": 200, "end_ms": 400}]
    assert "sorted and disjoint" in fields(raw)["mute_ranges[1].start_ms"]
    raw["mute_ranges"] = [{"start_ms": 500, "end_ms": 600}, {"start_ms": 100, "end_ms": 200}]
    assert "mute_ranges[1].start_ms" in fields(raw)
    raw["mute_ranges"] = [{"start_ms": 500, "end_ms": 500}]
    assert "not after start_ms" in fields(raw)["mute_ranges[0].end_ms"]


def test_keyframes_must_move_forward_in_time_and_be_two_at_least() -> None:
    raw = good()
    raw["boxes"][0]["keyframes"][2]["t_ms"] = 1000
    assert "not after the previous" in fields(raw)["boxes[0].keyframes[2].t_ms"]
    raw["boxes"][0]["keyframes"] = [kf(0)]
    assert "at least two" in fields(raw)["boxes[0].keyframes"]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"version": 2}, "version"),
        ({"version": True}, "version"),
        ({"effect": "smudge"}, "effect"),
        ({"colour": "red"}, "colour"),
        ({"boxes": {"x": 1}}, "boxes"),
        ({"boxes": [{"keyframes": [kf(0), {**kf(9), "w": 4}]}]}, "boxes[0].keyframes[1].w"),
        ({"boxes": [{"keyframes": [kf(0), {**kf(9), "x": 1.5}]}]}, "boxes[0].keyframes[1].x"),
        ({"boxes": [{"keyframes": [kf(0), {**kf(9), "x": True}]}]}, "boxes[0].keyframes[1].x"),
        ({"boxes": [{"keyframes": [kf(0), {**kf(9), "z": 1}]}]}, "boxes[0].keyframes[1].z"),
        ({"boxes": [{"keyframes": [kf(0), kf(9)], "effect": "x"}]}, "boxes[0].effect"),
        ({"boxes": [{"keyframes": [kf(0), kf(9)], "label": "a\nb"}]}, "boxes[0].label"),
        ({"boxes": [{}]}, "boxes[0].keyframes"),
        ({"mute_ranges": [{"start_ms": -1, "end_ms": 5}]}, "mute_ranges[0].start_ms"),
    ],
)
def test_each_malformed_field_is_named(patch: dict[str, Any], field: str) -> None:
    raw = good()
    raw.update(patch)
    assert field in fields(raw)


def test_a_spec_that_hides_nothing_is_refused() -> None:
    assert "hides nothing" in fields({"version": 1})["boxes"]
    assert fields([1, 2]) == {"$": "must be an object, not a list"}


def test_box_at_interpolates_linearly_and_is_none_outside_the_track() -> None:
    track = parse_spec(good()).boxes[0]
    assert box_at(track, 500) is not None and box_at(track, 500).x == 55  # type: ignore[union-attr]
    assert box_at(track, 1500).x == 100  # type: ignore[union-attr]
    assert box_at(track, -1) is None and box_at(track, 2001) is None


def _eval(expr: str, t: float) -> float:
    """Evaluate the subset of FFmpeg's expression language the plan uses."""
    env = {
        "t": t,
        "clip": lambda v, lo, hi: min(max(v, lo), hi),
        "lt": lambda a, b: float(a < b),
        "if_": lambda c, a, b: a if c else b,
    }
    return float(eval(re.sub(r"\bif\(", "if_(", expr), {"__builtins__": {}}, env))


def test_patches_cover_every_interpolated_box_at_every_time() -> None:
    rng = random.Random(7)
    for _ in range(40):
        w0, h0 = 320, 240
        frames, t = [], 0
        for _ in range(rng.randint(2, 3 * MAX_INTERVALS)):
            w, h = rng.randint(8, 120), rng.randint(8, 100)
            frames.append(kf(t, rng.randint(0, w0 - w), rng.randint(0, h0 - h), w, h))
            t += rng.randint(1, 400)
        spec = parse_spec({"version": 1, "boxes": [{"keyframes": frames}]}, Frame(w0, h0, t))
        track = spec.boxes[0]
        ps = patches(spec, w0, h0)
        assert len(ps) == -(-(len(frames) - 1) // MAX_INTERVALS)
        for _ in range(60):
            at = rng.uniform(0, track.end_ms)
            box = box_at(track, at)
            assert box is not None
            active = [p for p in ps if p.start_ms <= at <= p.end_ms]
            assert active
            for p in active[:1]:
                # FFmpeg rounds x and y down to even on a 4:2:0 picture
                x = int(_eval(p.x, at / 1000)) & ~1
                y = int(_eval(p.y, at / 1000)) & ~1
                assert x <= box.x + 1e-6 and x + p.w >= box.x + box.w - 1e-6
                assert y <= box.y + 1e-6 and y + p.h >= box.y + box.h - 1e-6
                assert 0 <= x <= w0 - p.w and 0 <= y <= h0 - p.h


def test_a_patch_never_leaves_an_odd_sized_frame() -> None:
    spec = parse_spec({"version": 1, "boxes": [{"keyframes": [kf(0, 0, 0, 319, 239), kf(9)]}]})
    (p,) = patches(spec, 319, 239)
    assert (p.w, p.h) == (320, 240)  # the padded frame, wholly


def test_mute_covers_every_audio_frame_that_overlaps_a_range() -> None:
    spec = parse_spec(copy.deepcopy(good()))
    expr = mute_expr(spec.mute_ranges, 48000)  # frames of 480 samples: 10 ms
    env = {"__builtins__": {}, "_gt": lambda a, b: a > b, "_lt": lambda a, b: a < b}
    code = expr.replace("gt", "_gt").replace("lt", "_lt")

    def on(t: float) -> bool:
        return bool(eval(code, {**env, "t": t}))

    assert on(0.095) and on(0.15) and on(0.199) and on(0.35)
    assert not on(0.08) and not on(0.2) and not on(0.25) and not on(0.5)
    first = parse_spec({"version": 1, "mute_ranges": [{"start_ms": 0, "end_ms": 5}]})
    assert "gt(t,-0.01)" in mute_expr(first.mute_ranges, 48000)


def test_specs_without_tone_ranges_keep_their_canonical_bytes() -> None:
    """Adding tone ranges and per-frame tracks to the format changed no existing spec's hash
    (the value below is the hash of ``good()`` before either existed)."""
    raw = spec_bytes(parse_spec(good()))
    assert b"tone_ranges" not in raw and b'"frames"' not in raw
    assert spec_sha256(parse_spec(good())) == (
        "9eb8c53307e88786805a8b271f52ac31bb5c99c3b2926522e6dc8e4f53978259"
    )
    toned = good() | {"tone_ranges": [{"start_ms": 500, "end_ms": 900}]}
    spec = parse_spec(toned, FRAME)
    assert spec_sha256(spec) != spec_sha256(parse_spec(good()))
    assert parse_spec(__import__("json").loads(spec_bytes(spec)), FRAME) == spec
    too_long = good() | {"tone_ranges": [{"start_ms": 500, "end_ms": 9000}]}
    assert "beyond the duration" in fields(too_long)["tone_ranges[0].end_ms"]


def test_per_frame_tracks_hold_each_box_until_the_next() -> None:
    raw = good()
    raw["boxes"] = [{"frames": [kf(0), kf(40, x=200), kf(80, x=100)]}]
    spec = parse_spec(raw, FRAME)
    track = spec.boxes[0]
    assert track.hold
    at = box_at(track, 39)
    assert at is not None and at.x == 10  # held, not on its way to 200
    assert box_at(track, 40).x == 200 and box_at(track, 79).x == 200  # type: ignore[union-attr]
    assert box_at(track, 80).x == 100 and box_at(track, 81) is None  # type: ignore[union-attr]
    again = parse_spec(__import__("json").loads(spec_bytes(spec)), FRAME)
    assert again == spec and b'"frames"' in spec_bytes(spec)
    for t in range(0, 81, 5):  # every patch covers the held box at each time
        box = box_at(track, t)
        assert box is not None
        cover = [p for p in patches(spec, 320, 240) if p.start_ms <= t <= p.end_ms]
        assert cover, t
        for p in cover[:1]:
            x = eval_axis(p.x, t)
            assert x <= box.x and box.x + box.w <= x + p.w, (t, x, box)


def eval_axis(expr: str, t_ms: int) -> float:
    """Evaluate a patch position expression (if/lt/clip/between only) at ``t_ms``."""
    env = {
        "t": t_ms / 1000,
        "if": lambda c, a, b: a if c else b,
        "lt": lambda a, b: float(a < b),
        "clip": lambda v, lo, hi: max(lo, min(hi, v)),
    }
    return float(eval(expr.replace("if(", "if_("), {"if_": env["if"]} | env))


def test_per_frame_tracks_are_bounded_and_named() -> None:
    raw = good()
    raw["boxes"] = [{"frames": [kf(t) for t in range(MAX_FRAMES + 1)]}]
    assert "at most 1800" in fields(raw, None)["boxes[0].frames"]
    raw["boxes"] = [{"frames": [kf(0), kf(40)], "keyframes": [kf(0), kf(40)]}]
    assert "not both" in fields(raw)["boxes[0]"]
    raw["boxes"] = [{"frames": [kf(0)]}]
    assert "at least two" in fields(raw)["boxes[0].frames"]
    raw["boxes"] = [{"frames": [kf(0), kf(40, x=300)]}]
    assert "frame width 320" in fields(raw)["boxes[0].frames[1].x"]
    many = [{"frames": [kf(t) for t in range(MAX_FRAMES)]} for _ in range(5)]
    raw["boxes"] = many
    assert f"at most {MAX_BOX_POINTS}" in fields(raw, None)["boxes"]
