"""Show it: a redacted copy hides the boxes and the muted ranges, and nothing else.

A synthetic clip (a fine checkerboard, so any blur, pixelation or fill changes every pixel, and
a 440 Hz tone) is redacted through the real sandbox; both files are decoded with ffmpeg to raw
grey frames and compared in Python; loudness is measured with ffmpeg's ``volumedetect``.
"""

from __future__ import annotations

import array
import asyncio
import math
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.media import probe
from ingest.media.redact import make_redacted
from ingest.media.redactplan import MARGIN
from tests.media.media_tools import FFMPEG, ffmpeg, ffprobe_json
from vault.redaction.spec import Box, InvalidSpec, box_at, parse_spec

W, H, FPS, SECONDS = 320, 240, 25, 3
CHECKER = f"nullsrc=s={W}x{H}:r={FPS}:d={SECONDS},geq=lum='255*mod(floor(X/4)+floor(Y/4),2)':cb=128:cr=128"


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("redact") / "checker.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", CHECKER, "-f", "lavfi", "-i", f"sine=f=440:d={SECONDS}"),
        *("-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p"),
        *("-c:a", "aac", "-b:a", "192k", "-shortest", str(path)),
    )
    return path


def grey_frames(path: Path) -> list[bytes]:
    raw = subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    size = W * H
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def max_volume(path: Path, start_s: float, length_s: float) -> float:
    err = subprocess.run(
        [
            FFMPEG,
            "-v",
            "info",
            "-nostats",
            "-ss",
            str(start_s),
            "-t",
            str(length_s),
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-af",
            "volumedetect",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    found = re.search(r"max_volume: (-?[\d.]+|-inf) dB", err)
    assert found, err
    return float(found.group(1))


def mean_diff(a: bytes, b: bytes, inside: Box, *, invert: bool, pad: int = 0) -> float:
    """Mean absolute difference over the pixels inside ``inside`` (or outside it grown by
    ``pad`` pixels, with ``invert``)."""
    x0, y0 = inside.x - pad, inside.y - pad
    x1, y1 = inside.x + inside.w + pad, inside.y + inside.h + pad
    total = count = 0
    for y in range(H):
        row = y * W
        for x in range(0, W, 1 if not invert else 2):
            within = x0 <= x < x1 and y0 <= y < y1
            if within != invert:
                total += abs(a[row + x] - b[row + x])
                count += 1
    return total / max(count, 1)


def redact(src: Path, out: Path, raw: dict[str, object]) -> Path:
    async def go() -> Path:
        info = await probe(src)
        return (await make_redacted(src, out, parse_spec(raw), info)).path

    return asyncio.run(go())


@pytest.mark.parametrize("effect", ["blur", "pixelate", "solid"])
def test_pixels_inside_moving_boxes_differ_strongly_and_outside_match(
    checker: Path, tmp_path: Path, effect: str
) -> None:
    spec = {
        "version": 1,
        "effect": effect,
        "boxes": [
            {
                "keyframes": [
                    {"t_ms": 0, "x": 20, "y": 20, "w": 64, "h": 48},
                    {"t_ms": 2000, "x": 200, "y": 150, "w": 96, "h": 64},
                ]
            }
        ],
    }
    out = redact(checker, tmp_path, spec)
    track = parse_spec(spec).boxes[0]
    before, after = grey_frames(checker), grey_frames(out)
    assert len(before) == len(after) == FPS * SECONDS
    for i in range(0, len(before), 7):
        box = box_at(track, i * 1000 / FPS)
        if box is None:  # after the track ends: the whole picture is the original's
            assert mean_diff(before[i], after[i], Box(0, 0, 0, 0), invert=True) < 3
            continue
        inner = Box(box.x + 2, box.y + 2, box.w - 4, box.h - 4)  # the box's edges blur into it
        assert mean_diff(before[i], after[i], inner, invert=False) > 60, (effect, i)
        # outside the patch (box + margin + rounding to even) and the 16-pixel macroblocks
        # the encoder codes anew around its edge: the original's pixels within encoder noise
        outside = mean_diff(before[i], after[i], box, invert=True, pad=MARGIN // 2 + 16)
        assert outside < 2, (effect, i, outside)


def test_a_per_frame_track_jumps_without_interpolation(checker: Path, tmp_path: Path) -> None:
    a, b = {"x": 20, "y": 20, "w": 64, "h": 48}, {"x": 200, "y": 150, "w": 64, "h": 48}
    frames = [{"t_ms": 0, **a}, {"t_ms": 1000, **b}, {"t_ms": 2000, **b}]
    spec = {"version": 1, "effect": "solid", "boxes": [{"frames": frames}]}
    out = redact(checker, tmp_path, spec)
    before, after = grey_frames(checker), grey_frames(out)
    for i, where in ((12, a), (24, a), (25, b), (40, b)):  # t = 0.48, 0.96, 1.0, 1.6 s
        box = Box(**where)
        inner = Box(box.x + 2, box.y + 2, box.w - 4, box.h - 4)
        assert mean_diff(before[i], after[i], inner, invert=False) > 60, i
        # nowhere else, in particular not half-way where interpolation would have put it
        assert mean_diff(before[i], after[i], box, invert=True, pad=MARGIN // 2 + 16) < 2, i


def test_muted_ranges_are_silent_and_the_rest_is_not(checker: Path, tmp_path: Path) -> None:
    spec = {"version": 1, "mute_ranges": [{"start_ms": 1000, "end_ms": 2000}]}
    out = redact(checker, tmp_path, spec)
    assert max_volume(out, 1.05, 0.9) < -80  # volumedetect reports digital silence as -91 dB
    assert max_volume(out, 0.1, 0.8) > -20
    assert max_volume(out, 2.1, 0.8) > -20
    assert max_volume(checker, 1.05, 0.9) > -20  # the original still has it, untouched
    before, after = grey_frames(checker), grey_frames(out)
    assert mean_diff(before[40], after[40], Box(0, 0, 0, 0), invert=True) < 3


def samples(path: Path, start_s: float, length_s: float, rate: int = 8000) -> list[float]:
    """Mono float samples of ``path``'s sound from ``start_s`` for ``length_s`` seconds."""
    raw = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a:0", "-ss", str(start_s),
         "-t", str(length_s), "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return list(array.array("f", raw))


def power_at(xs: list[float], hz: float, rate: int = 8000) -> float:
    """Mean power of ``xs`` at ``hz`` (Goertzel), as a fraction of the whole signal's power."""
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in xs:
        s1, s2 = x + coeff * s1 - s2, s1
    tone = (s1 * s1 + s2 * s2 - coeff * s1 * s2) * 2 / len(xs) ** 2
    return tone / max(sum(x * x for x in xs) / len(xs), 1e-12)


def test_tone_ranges_carry_the_tone_and_nothing_of_the_original(
    checker: Path, tmp_path: Path
) -> None:
    spec = {"version": 1, "tone_ranges": [{"start_ms": 1000, "end_ms": 2000}]}
    out = redact(checker, tmp_path, spec)
    inside, original = samples(out, 1.1, 0.8), samples(checker, 1.1, 0.8)
    assert power_at(inside, 1000) > 0.95  # the energy is the 1 kHz tone's ...
    assert power_at(inside, 440) < 0.01  # ... and nothing is left of the original's 440 Hz
    assert power_at(original, 440) > 0.95  # (which the original still has there, untouched)
    assert -22 < max_volume(out, 1.1, 0.8) < -18  # at a moderate level: -20 dBFS
    for start in (0.1, 2.1):  # the rest is the original's sound, within encoder noise
        before, after = samples(checker, start, 0.8), samples(out, start, 0.8)
        noise = sum((a - b) ** 2 for a, b in zip(before, after, strict=True))
        assert noise / sum(a * a for a in before) < 0.01, start
        assert power_at(after, 1000) < 0.01, start


def test_a_tone_range_overlapping_a_mute_range_is_refused() -> None:
    spec = {
        "version": 1,
        "mute_ranges": [{"start_ms": 1000, "end_ms": 2000}],
        "tone_ranges": [{"start_ms": 0, "end_ms": 500}, {"start_ms": 1500, "end_ms": 2500}],
    }
    with pytest.raises(InvalidSpec) as info:
        parse_spec(spec)
    assert [f for f, _ in info.value.errors] == ["tone_ranges[1].start_ms"]


def test_full_frame_ranges_hide_the_whole_picture_only_then(checker: Path, tmp_path: Path) -> None:
    spec = {"version": 1, "effect": "solid", "frame_ranges": [{"start_ms": 1000, "end_ms": 1500}]}
    out = redact(checker, tmp_path, spec)
    before, after = grey_frames(checker), grey_frames(out)
    whole = Box(0, 0, W, H)
    assert mean_diff(before[30], after[30], whole, invert=False) > 100  # t = 1.2 s
    assert mean_diff(before[10], after[10], whole, invert=False) < 3  # t = 0.4 s
    assert mean_diff(before[50], after[50], whole, invert=False) < 3  # t = 2.0 s


def test_a_box_outside_the_recordings_picture_is_refused_before_ffmpeg_runs(
    checker: Path, tmp_path: Path
) -> None:
    spec = {
        "version": 1,
        "boxes": [
            {
                "keyframes": [
                    {"t_ms": 0, "x": 300, "y": 0, "w": 64, "h": 48},
                    {"t_ms": 5000, "x": 300, "y": 0, "w": 64, "h": 48},
                ]
            }
        ],
    }
    with pytest.raises(InvalidSpec) as info:
        redact(checker, tmp_path, spec)
    fields = dict(info.value.errors)
    assert "frame width 320" in fields["boxes[0].keyframes[0].x"]
    assert "beyond the duration" in fields["boxes[0].keyframes[1].t_ms"]
    assert list(tmp_path.iterdir()) == []


def test_boxes_are_in_the_upright_picture_of_a_rotated_recording(
    sample: Callable[[str], Path], tmp_path: Path
) -> None:
    src = sample("portrait_rotated.mp4")  # 320x240 pixels shown upright as 240x320
    spec = {
        "version": 1,
        "effect": "solid",
        "boxes": [{"keyframes": [
            {"t_ms": 0, "x": 180, "y": 260, "w": 40, "h": 40},
            {"t_ms": 2000, "x": 180, "y": 260, "w": 40, "h": 40},
        ]}],
    }  # fmt: skip
    out = redact(src, tmp_path, spec)
    stream = ffprobe_json(out)["streams"][0]
    assert isinstance(stream, dict) and (stream["width"], stream["height"]) == (240, 320)
    raw = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(out), "-frames:v", "1", "-f", "rawvideo",
         "-pix_fmt", "gray", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    inside = [raw[y * 240 + x] for y in range(265, 295) for x in range(185, 215)]
    assert max(inside) < 20  # black where the box is, in upright coordinates
