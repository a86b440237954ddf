"""Compare a suspect copy's fingerprint with the original's: where do they differ?

Pure: works on two :class:`Fingerprint` values, no I/O.

Guarantees of :func:`compare`:

* ``verdict == "identical"`` iff the Merkle roots (recomputed from the segments, not taken
  from the field) are equal, i.e. every segment's decoded frames and samples are bit-for-bit
  the same (a remux, or the same file).
* ``exact_video``/``exact_audio`` say whether all decoded frames / samples are identical
  (None when the stream is missing on either side); ``exact_*_ranges`` list where not.
* ``video_ranges``/``audio_ranges`` are the *perceptual* differences, merged into half-open
  ``[start_ms, end_ms)`` ranges on segment boundaries: a segment differs when its mean luma
  grid cannot be matched within :data:`VIDEO_RESIDUAL` levels after an allowed brightness
  shift (≤ :data:`VIDEO_SHIFT`) and contrast change (×0.75–1.33), or when its loudness
  envelope departs from the original's by more than :data:`AUDIO_DB` dB on average after one
  global gain offset. A stream present in one and missing in the other differs everywhere.
  Re-encoding, rescaling and container changes stay within these limits.
* ``same_recording`` is False ("different") when the covered durations differ by more than
  max(2 segments, 10 %), when no stream kind is common to both, or when more than half the
  segments differ perceptually. Otherwise the verdict is "altered" if any range differs,
  else "similar" (perceptually the same, decoded content not identical).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ingest.media.fpmodel import EMPTY, Fingerprint, Segment, merkle_root

__all__ = ["AUDIO_DB", "VIDEO_RESIDUAL", "VIDEO_SHIFT", "Comparison", "Verdict", "compare"]

Verdict = Literal["identical", "similar", "altered", "different"]
Ranges = tuple[tuple[int, int], ...]
VIDEO_RESIDUAL = 8.0
VIDEO_SHIFT = 32.0
CONTRAST = (0.75, 4 / 3)
AUDIO_DB = 6.0
AUDIO_FLOOR = 32  # RMS on the s16 scale, about -60 dBFS: quieter counts as silence
MAX_GAIN_DB = 20.0
DIFFERENT_FRACTION = 0.5
_NONE = Segment(EMPTY, EMPTY, 0, 0, b"", ())


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare` (see module for the meaning of each field)."""

    verdict: Verdict
    same_recording: bool
    exact_video: bool | None
    exact_audio: bool | None
    video_ranges: Ranges
    audio_ranges: Ranges
    exact_video_ranges: Ranges
    exact_audio_ranges: Ranges
    reason: str

    def to_json(self) -> dict[str, object]:
        def opt(v: bool | None) -> str:
            return "n/a" if v is None else ("yes" if v else "no")

        return {
            "verdict": self.verdict,
            "same_recording": self.same_recording,
            "exact_video": opt(self.exact_video),
            "exact_audio": opt(self.exact_audio),
            "video_ranges": [list(r) for r in self.video_ranges],
            "audio_ranges": [list(r) for r in self.audio_ranges],
            "exact_video_ranges": [list(r) for r in self.exact_video_ranges],
            "exact_audio_ranges": [list(r) for r in self.exact_audio_ranges],
            "reason": self.reason,
        }


def merge(indices: Sequence[int], segment_ms: int) -> Ranges:
    """Sorted segment indices to merged half-open millisecond ranges."""
    out: list[tuple[int, int]] = []
    for i in sorted(set(indices)):
        start, end = i * segment_ms, (i + 1) * segment_ms
        if out and out[-1][1] == start:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return tuple(out)


def video_differs(a: Segment, b: Segment) -> bool:
    """Perceptual test of two segments' luma grids (see module)."""
    if not a.frames or not b.frames:
        return bool(a.frames) != bool(b.frames)
    n = len(a.luma)
    ma, mb = sum(a.luma) / n, sum(b.luma) / n
    if abs(ma - mb) > VIDEO_SHIFT:
        return True
    ca = [x - ma for x in a.luma]
    cb = [y - mb for y in b.luma]
    energy = sum(x * x for x in ca)
    alpha = sum(x * y for x, y in zip(ca, cb, strict=True)) / energy if energy else 1.0
    alpha = min(max(alpha, CONTRAST[0]), CONTRAST[1])
    residual = math.sqrt(sum((y - alpha * x) ** 2 for x, y in zip(ca, cb, strict=True)) / n)
    return residual > VIDEO_RESIDUAL


def _db(rms: int) -> float:
    return 20 * math.log10(max(rms, AUDIO_FLOOR))


def _envelope_pairs(a: Segment, b: Segment) -> list[tuple[float, float]]:
    """Window-by-window loudness in dB; a missing window counts as silence."""
    n = max(len(a.rms), len(b.rms))
    pad_a = list(a.rms) + [0] * (n - len(a.rms))
    pad_b = list(b.rms) + [0] * (n - len(b.rms))
    return [(_db(x), _db(y)) for x, y in zip(pad_a, pad_b, strict=True)]


def _gain_offset(pairs: list[tuple[float, float]]) -> float:
    floor = _db(AUDIO_FLOOR)
    loud = [y - x for x, y in pairs if x > floor and y > floor]
    if not loud:
        return 0.0
    return min(max(statistics.median(loud), -MAX_GAIN_DB), MAX_GAIN_DB)


def compare(original: Fingerprint, suspect: Fingerprint) -> Comparison:
    """Compare ``suspect`` with ``original`` (see module). Both need the same segment_ms."""
    if original.segment_ms != suspect.segment_ms:
        raise ValueError("fingerprints use different segment lengths")
    seg_ms = original.segment_ms
    n = max(len(original.segments), len(suspect.segments))

    def at(fp: Fingerprint, i: int) -> Segment:
        return fp.segments[i] if i < len(fp.segments) else _NONE

    pairs = [(at(original, i), at(suspect, i)) for i in range(n)]
    compared = pairs[:-1] if n and _short_tail(original, suspect, n) else pairs
    exact_v = [i for i, (a, b) in enumerate(pairs) if a.video_sha256 != b.video_sha256]
    exact_a = [i for i, (a, b) in enumerate(pairs) if a.audio_sha256 != b.audio_sha256]
    video = _stream_diff(original.has_video, suspect.has_video, n, compared, video_differs)
    audio = _stream_diff(original.has_audio, suspect.has_audio, n, compared, _audio_test(compared))
    both_video = original.has_video and suspect.has_video
    both_audio = original.has_audio and suspect.has_audio
    da, db = original.duration_ms, suspect.duration_ms
    tolerance = max(2 * seg_ms, max(da, db) // 10)
    differing = len(set(video) | set(audio))
    reason = ""
    if not (both_video or both_audio):
        reason = "no stream kind in common"
    elif abs(da - db) > tolerance:
        reason = f"durations differ: {da} ms vs {db} ms"
    elif n and differing > DIFFERENT_FRACTION * n:
        reason = f"{differing} of {n} segments differ perceptually"
    same = not reason
    verdict: Verdict
    if merkle_root(original.segments) == merkle_root(suspect.segments):
        verdict, reason = "identical", "decoded frames and samples are identical"
    elif not same:
        verdict = "different"
    elif video or audio:
        verdict = "altered"
        reason = f"{len(video)} video and {len(audio)} audio segments differ"
    else:
        verdict, reason = "similar", "perceptually the same; decoded content not identical"
    return Comparison(
        verdict=verdict,
        same_recording=same or verdict == "identical",
        exact_video=not exact_v if both_video else None,
        exact_audio=not exact_a if both_audio else None,
        video_ranges=merge(video, seg_ms),
        audio_ranges=merge(audio, seg_ms),
        exact_video_ranges=merge(exact_v, seg_ms),
        exact_audio_ranges=merge(exact_a, seg_ms),
        reason=reason,
    )


def _tail_share(fp: Fingerprint, n: int) -> float:
    """How much of a full segment the last one (index n-1) covers in ``fp``, 0 to 1."""
    if len(fp.segments) < n:
        return 0.0
    last = fp.segments[n - 1]
    shares = [0.0]
    audio = dict(fp.audio)
    if audio:
        shares.append(last.samples * 1000 / (audio["sample_rate"] * fp.segment_ms))
    if n >= 2 and fp.segments[n - 2].frames:
        shares.append(last.frames / fp.segments[n - 2].frames)
    return max(shares)


def _short_tail(original: Fingerprint, suspect: Fingerprint, n: int) -> bool:
    return max(_tail_share(original, n), _tail_share(suspect, n)) < 0.25


def _stream_diff(
    in_original: bool,
    in_suspect: bool,
    n: int,
    pairs: list[tuple[Segment, Segment]],
    differs: Callable[[Segment, Segment], bool],
) -> list[int]:
    if not in_original and not in_suspect:
        return []
    if in_original != in_suspect:
        return list(range(n))
    return [i for i, (a, b) in enumerate(pairs) if differs(a, b)]


def _audio_test(pairs: list[tuple[Segment, Segment]]) -> Callable[[Segment, Segment], bool]:
    """Per-segment audio test with one gain offset fitted over the whole recording."""
    offset = _gain_offset([p for a, b in pairs for p in _envelope_pairs(a, b)])

    floor = _db(AUDIO_FLOOR)

    def differs(a: Segment, b: Segment) -> bool:
        windows = _envelope_pairs(a, b)
        if not windows:
            return False
        deviation = sum(
            0.0 if x <= floor and y <= floor else abs(y - x - offset) for x, y in windows
        )
        return deviation / len(windows) > AUDIO_DB

    return differs
