"""Aligning a copy's decoded audio on the original's (pure: synthetic PCM, no ffmpeg)."""

from __future__ import annotations

import random

from ingest.media.fpalign import AlignedAudio, candidates
from ingest.media.fpstreams import AudioSegments, SegmentPart

RATE, CHANNELS, SEG = 8000, 2, 1000  # 8000 samples a segment: the reference is segment 1
FRAME = 2 * CHANNELS


def pcm(samples: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(samples * FRAME)


def segments(data: bytes) -> list[SegmentPart]:
    seg = AudioSegments(RATE, CHANNELS, SEG, 100)
    for pos in range(0, len(data), 4000):  # in chunks, as a sink delivers them
        seg(memoryview(data[pos : pos + 4000]))
    return seg.finish()


def aligned(original: bytes, copy: bytes, budget: int = 1 << 30) -> tuple[list[SegmentPart], int]:
    ref = [(p.sha256, p.count) for p in segments(original)]
    seg = AudioSegments(RATE, CHANNELS, SEG, 100)
    al = AlignedAudio(seg, CHANNELS, ref, budget=budget)
    for pos in range(0, len(copy), 3000):
        al(memoryview(copy[pos : pos + 3000]))
    al.finish()
    return seg.finish(), al.shift


ORIGINAL = pcm(5 * RATE, 1)


def test_extra_priming_is_found_and_left_out() -> None:
    got, shift = aligned(ORIGINAL, pcm(1024, 2) + ORIGINAL)
    assert shift == 1024 and got == segments(ORIGINAL)


def test_any_shift_in_the_window_is_found() -> None:
    got, shift = aligned(ORIGINAL, pcm(777, 3) + ORIGINAL)
    assert shift == 777 and got == segments(ORIGINAL)


def test_missing_first_samples_shorten_only_the_first_segment() -> None:
    got, shift = aligned(ORIGINAL, ORIGINAL[1024 * FRAME :])
    want = segments(ORIGINAL)
    assert shift == -1024
    assert got[0] != want[0] and got[0].count == want[0].count - 1024
    assert got[1:] == want[1:]


def test_attack_reencoded_audio_gets_no_shift() -> None:
    """Audio that matches nowhere is segmented as without alignment (shift 0)."""
    other = pcm(5 * RATE, 9)
    got, shift = aligned(ORIGINAL, other)
    assert shift == 0 and got == segments(other)


def test_same_audio_needs_no_search_and_short_audio_is_left_alone() -> None:
    assert aligned(ORIGINAL, ORIGINAL) == (segments(ORIGINAL), 0)
    short = ORIGINAL[: RATE * FRAME]  # one segment: no reference segment to align on
    assert aligned(short, pcm(1024, 2) + short) == (segments(pcm(1024, 2) + short), 0)


def test_search_budget_bounds_the_work() -> None:
    """Past the budget no further shift is tried: 777 is far down the order, 1024 is not."""
    one = RATE * FRAME  # bytes hashed per candidate
    assert aligned(ORIGINAL, pcm(777, 3) + ORIGINAL, budget=20 * one)[1] == 0
    assert aligned(ORIGINAL, pcm(1024, 2) + ORIGINAL, budget=20 * one)[1] == 1024


def test_candidate_order() -> None:
    order = list(candidates(2112))
    assert order[:3] == [0, 1024, -1024] and len(order) == len(set(order)) == 2 * 2112 + 1
