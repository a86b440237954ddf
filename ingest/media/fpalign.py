"""Align a copy's decoded audio on an original's before hashing it into segments.

A lossless remux can change where decoding starts: MP4/MOV trim an AAC encoder's priming
samples with an edit list, Matroska and MPEG-TS have no edit list and keep them, so the same
packets decode to the same samples shifted by 1024 (or 2048, 2112…). Cut into segments from
the first decoded sample, every segment would then differ and a remux would read as a
re-encode.

Guarantees of :class:`AlignedAudio` (a sandbox sink consumer in front of an
:class:`~ingest.media.fpstreams.AudioSegments`):

* It buffers the start of the copy's PCM (at most the reference segment plus
  ``max_shift`` samples), then looks for the shift ``d`` with ``|d| <= max_shift`` samples
  such that the copy's samples ``[b + d, b' + d)`` hash to the original's audio hash of one
  reference segment ``[b, b')`` — the first whole segment that starts at least ``max_shift``
  samples in. ``0`` is tried first, then the usual codec delays, then every other shift by
  size, within a hashing budget of :data:`HASH_BUDGET` bytes; the first hit wins.
* The copy is then segmented on the original's timeline: for ``d > 0`` its first ``d``
  samples are left out of every segment (they are reported, never silently equal: ``shift``
  says how many); for ``d < 0`` its first sample is sample ``-d`` of segment 0, which then
  holds fewer samples than the original's and so differs from it.
* Without a hit (re-encoded audio, a reference segment that was altered, a different sample
  rate or channel count, audio shorter than the search needs) the shift is ``0``: the
  segments are exactly those of an unaligned fingerprint.
* Memory stays bounded by the buffer; the search runs once, in the sink's thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

from ingest.media.fpstreams import AudioSegments

__all__ = ["HASH_BUDGET", "KNOWN_DELAYS", "MAX_AUDIO_SHIFT", "AlignedAudio"]

#: Largest shift searched, in samples: two AAC frames plus Apple's 64 (its encoder delay is
#: 2112), which covers the AAC delays seen in recorders and phones.
MAX_AUDIO_SHIFT = 2112
#: Shifts tried right after 0: AAC (1024, 2048, Apple 2112), MP3 (529, 576, 1105), Opus (312).
KNOWN_DELAYS = (1024, 2048, 2112, 576, 529, 1105, 312)
#: Most bytes hashed while searching (about half a second of SHA-256).
HASH_BUDGET = 1 << 30


def candidates(max_shift: int) -> Iterator[int]:
    """0, the known delays (each way), then every other shift up to ``max_shift`` by size."""
    seen: set[int] = set()
    order = [0]
    for d in KNOWN_DELAYS:
        order += [d, -d]
    order += [s * d for d in range(1, max_shift + 1) for s in (1, -1)]
    for d in order:
        if abs(d) <= max_shift and d not in seen:
            seen.add(d)
            yield d


class AlignedAudio:
    """Feeds ``segments`` with the copy's PCM aligned on the original's (see module)."""

    def __init__(
        self,
        segments: AudioSegments,
        channels: int,
        reference: Sequence[tuple[bytes, int]],
        *,
        max_shift: int = MAX_AUDIO_SHIFT,
        budget: int = HASH_BUDGET,
    ) -> None:
        """``reference``: the original's (audio hash, sample count) per segment, or empty
        when the original's audio cannot match (other rate or channel count)."""
        self._segments = segments
        self._frame = 2 * channels
        self._max = max_shift
        self._budget = budget
        self._ref: tuple[int, bytes, int, int] | None = None  # (segment, hash, start, end)
        for k, (digest, count) in enumerate(reference):
            start, end = segments.boundary_samples(k), segments.boundary_samples(k + 1)
            if start >= max_shift and count == end - start:
                self._ref = (k, digest, start, end)
                break
        self._buf: bytearray | None = bytearray() if self._ref is not None else None
        self.shift = 0

    @property
    def _need(self) -> int:
        assert self._ref is not None
        return (self._ref[3] + self._max) * self._frame

    def __call__(self, chunk: memoryview) -> None:
        if self._buf is None:
            self._segments(chunk)
            return
        self._buf += chunk
        if len(self._buf) >= self._need:
            self._decide()

    def _decide(self) -> None:
        buf, self._buf = self._buf, None
        assert buf is not None and self._ref is not None
        _, digest, start, end = self._ref
        have = len(buf) // self._frame
        spent = 0
        view = memoryview(buf)
        first = self._segments.boundary_samples(1)
        for d in candidates(self._max):
            if end + d > have or -d >= first:  # past the buffer / a lead beyond segment 0
                continue
            spent += (end - start) * self._frame
            if spent > self._budget:
                break
            window = view[(start + d) * self._frame : (end + d) * self._frame]
            if hashlib.sha256(window).digest() == digest:
                self.shift = d
                break
        view.release()
        if self.shift > 0:
            self._segments(memoryview(buf)[self.shift * self._frame :])
        else:
            self._segments.set_lead(-self.shift)
            self._segments(memoryview(buf))

    def finish(self) -> None:
        """Decide with what arrived when the audio ended before the buffer filled."""
        if self._buf is not None:
            self._decide()
