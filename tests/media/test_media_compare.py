"""Pure tests of compare() on synthetic fingerprints."""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.media.compare import compare, merge, video_differs
from ingest.media.fpmodel import EMPTY, Fingerprint, Segment, merkle_root
from verify.canonical import canonical_json

RNG = random.Random(1)
SCENES = [bytes(RNG.randrange(256) for _ in range(144)) for _ in range(12)]
LOUD = tuple(3000 + 100 * (i % 3) for i in range(10))


def seg(
    i: int, scene: bytes | None = None, rms: tuple[int, ...] = LOUD, tag: bytes = b""
) -> Segment:
    luma = SCENES[i] if scene is None else scene
    return Segment(
        hashlib.sha256(b"v%d" % i + tag).digest(),
        hashlib.sha256(b"a%d" % i + tag).digest(),
        30,
        48000,
        luma,
        rms,
    )


def fp(segments: list[Segment], video: bool = True, audio: bool = True) -> Fingerprint:
    n = len(segments)
    v = (("frames", 30 * n), ("last_ms", n * 1000 - 33)) if video else ()
    a = (("channels", 1), ("sample_rate", 48000), ("samples", 48000 * n)) if audio else ()
    segs = tuple(
        replace(
            s,
            video_sha256=s.video_sha256 if video else EMPTY,
            audio_sha256=s.audio_sha256 if audio else EMPTY,
            frames=s.frames if video else 0,
            samples=s.samples if audio else 0,
            luma=s.luma if video else b"",
            rms=s.rms if audio else (),
        )
        for s in segments
    )
    return Fingerprint(1000, v, a, segs, merkle_root(segs), "test")


ORIGINAL = fp([seg(i) for i in range(10)])


def reencoded(i: int) -> Segment:
    """Same content, different bits: luma off by a little noise, loudness within 1 dB."""
    noisy = bytes(min(255, max(0, x + RNG.randint(-3, 3))) for x in SCENES[i])
    return seg(i, noisy, tuple(int(r * 1.05) for r in LOUD), tag=b"re")


def test_identical() -> None:
    result = compare(ORIGINAL, fp([seg(i) for i in range(10)]))
    assert result.verdict == "identical" and result.exact_video and result.exact_audio
    canonical_json(result.to_json())


def test_reencode_is_similar_not_exact() -> None:
    result = compare(ORIGINAL, fp([reencoded(i) for i in range(10)]))
    assert result.verdict == "similar" and result.same_recording
    assert result.exact_video is False and result.exact_video_ranges == ((0, 10000),)
    assert result.video_ranges == result.audio_ranges == ()


def test_replaced_and_blacked_out_segments_are_localised() -> None:
    segs = [reencoded(i) for i in range(10)]
    segs[3] = seg(3, SCENES[11], tag=b"x")  # other content
    segs[4] = seg(4, SCENES[11], tag=b"x")
    segs[7] = seg(7, bytes(144), tag=b"x")  # black
    result = compare(ORIGINAL, fp(segs))
    assert result.verdict == "altered"
    assert result.video_ranges == ((3000, 5000), (7000, 8000))
    assert result.audio_ranges == ()


def test_brightness_and_contrast_changes_are_tolerated() -> None:
    base = seg(0)
    brighter = replace(base, luma=bytes(min(255, x // 2 + 60) for x in base.luma))
    assert video_differs(base, brighter)  # contrast halved: beyond ×0.75
    milder = replace(base, luma=bytes(min(255, int(x * 0.85) + 20) for x in base.luma))
    assert not video_differs(base, milder)
    flat = replace(base, luma=bytes([100]) * 144)
    assert not video_differs(flat, replace(base, luma=bytes([120]) * 144))
    assert video_differs(flat, replace(base, luma=bytes([150]) * 144))


def test_audio_gain_is_tolerated_but_silence_is_not() -> None:
    louder = [seg(i, rms=tuple(r * 3 for r in LOUD), tag=b"g") for i in range(10)]  # +9.5 dB
    gained = compare(ORIGINAL, fp(louder))
    assert gained.audio_ranges == () and gained.verdict == "similar"
    louder[5] = replace(louder[5], rms=(0,) * 10)
    louder[6] = replace(louder[6], rms=(5,) * 5 + LOUD[5:])  # half silenced
    result = compare(ORIGINAL, fp(louder))
    assert result.audio_ranges == ((5000, 7000),) and result.verdict == "altered"


def test_missing_stream_differs_everywhere() -> None:
    mute = compare(ORIGINAL, fp([seg(i) for i in range(10)], audio=False))
    assert mute.audio_ranges == ((0, 10000),) and mute.exact_audio is None
    assert mute.video_ranges == () and mute.exact_video is True
    assert mute.verdict == "different"  # every segment differs in audio
    audio_only = fp([seg(i) for i in range(10)], video=False)
    nothing_common = compare(fp([seg(i) for i in range(10)], audio=False), audio_only)
    assert nothing_common.verdict == "different" and "common" in nothing_common.reason


def test_duration_mismatch_and_unrelated_content() -> None:
    short = compare(ORIGINAL, fp([seg(i) for i in range(5)]))
    assert short.verdict == "different" and "durations differ" in short.reason
    other = compare(ORIGINAL, fp([seg(i, SCENES[(i + 5) % 12], tag=b"o") for i in range(10)]))
    assert other.verdict == "different" and not other.same_recording


def test_short_tail_is_not_compared() -> None:
    tail_a = replace(seg(10), frames=1, samples=700, rms=(9000,))
    tail_b = replace(seg(10, tag=b"t"), frames=0, samples=1700, luma=b"", rms=(40, 40))
    a = fp([seg(i) for i in range(10)] + [tail_a])
    b = fp([seg(i) for i in range(10)] + [tail_b])
    result = compare(a, b)
    assert result.verdict == "similar" and result.exact_video_ranges == ((10000, 11000),)


def test_segment_lengths_must_match() -> None:
    with pytest.raises(ValueError):
        compare(ORIGINAL, replace(ORIGINAL, segment_ms=500))


@given(st.lists(st.integers(0, 200), max_size=60), st.sampled_from([100, 1000, 2500]))
def test_merge_ranges(indices: list[int], segment_ms: int) -> None:
    ranges = merge(indices, segment_ms)
    covered = {i for a, b in ranges for i in range(a // segment_ms, b // segment_ms)}
    assert covered == set(indices)
    for (a1, b1), (a2, b2) in itertools.pairwise(ranges):
        assert a1 < b1 < a2 < b2  # sorted, disjoint, not touching
