"""Consumers that turn ffmpeg's decoded output pipes into per-segment fingerprint parts.

Each consumer takes chunks of any size in stream order (see :data:`sandbox.Consumer`) and
keeps only what a segment needs, so memory does not grow with the frame size or the length of
the recording beyond one small record per segment (and per 100 ms of audio envelope).

Guarantees:

* :class:`FrameDigests` yields the SHA-256 of each fixed-size raw frame, exactly.
  :class:`Y4MFrameDigests` does the same for a YUV4MPEG2 stream: it checks and drops the
  stream header and each ``FRAME`` header line, so the digests are of the same bytes
  (the planes of each frame, packed) as for ``rawvideo`` output.
* :class:`VideoSegments` puts frame *i* (its digest, its 16x9 luma grid and its timestamp,
  which arrive on three pipes in the same frame order) into segment
  ``floor((pts_i - pts_0) * time_base / segment_ms)``; a timestamp that goes backwards keeps
  the frame in the current segment (assignment never goes back), so segments close as soon
  as a later one starts. A segment's ``sha256`` is SHA-256 over its frames' digests in order,
  i.e. it changes iff any decoded frame in it changes (or the frames move between segments).
* :class:`AudioSegments` splits the PCM stream at exact sample boundaries:
  segment *k* holds samples ``[k*segment_ms*rate//1000, (k+1)*segment_ms*rate//1000)``
  counted from the first decoded sample (or from ``lead`` samples before it), and its
  ``sha256`` is over those bytes.
* :class:`Envelope` gives the integer RMS (``isqrt``) of each 100 ms window of s16 mono.
"""

from __future__ import annotations

import hashlib
import operator
import re
import sys
import threading
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from math import isqrt

from ingest.media.errors import MediaError

__all__ = [
    "GRID_CELLS",
    "AudioSegments",
    "Chunks",
    "Envelope",
    "FrameCrcTimes",
    "FrameDigests",
    "SegmentPart",
    "VideoSegments",
    "Y4MFrameDigests",
]

GRID_CELLS = 16 * 9
_Y4M_LINE_MAX = 4096
_TB = re.compile(rb"^#tb \d+: (\d+)/(\d+)$")


@dataclass(frozen=True)
class SegmentPart:
    """One stream's share of one segment: hash, count (frames or samples), luma grid."""

    sha256: bytes
    count: int
    grid: bytes = b""


class FrameDigests:
    """Cuts a byte stream into ``frame_size`` frames and reports each frame's SHA-256."""

    def __init__(self, frame_size: int, on_digest: Callable[[bytes], None]) -> None:
        if frame_size <= 0:
            raise ValueError("frame_size must be positive")
        self.size = frame_size
        self._left = frame_size
        self._hash = hashlib.sha256()
        self._on_digest = on_digest

    def __call__(self, chunk: memoryview) -> None:
        pos, n = 0, len(chunk)
        while pos < n:
            take = min(self._left, n - pos)
            self._hash.update(chunk[pos : pos + take])
            pos += take
            self._left -= take
            if self._left == 0:
                self._on_digest(self._hash.digest())
                self._hash = hashlib.sha256()
                self._left = self.size

    def finish(self) -> None:
        if self._left != self.size:
            raise MediaError("decoded video ended inside a frame")


class Y4MFrameDigests:
    """:class:`FrameDigests` for YUV4MPEG2: headers checked and dropped, frames hashed."""

    def __init__(self, frame_size: int, on_digest: Callable[[bytes], None]) -> None:
        self._frames = FrameDigests(frame_size, on_digest)
        self._line = bytearray()  # a header line being read, or empty inside a frame
        self._stream_header = True
        self._in_frame = 0  # bytes of the current frame still to come

    def __call__(self, chunk: memoryview) -> None:
        pos, n = 0, len(chunk)
        while pos < n:
            if self._in_frame:
                take = min(self._in_frame, n - pos)
                self._frames(chunk[pos : pos + take])
                self._in_frame -= take
                pos += take
                continue
            end = _find_newline(chunk, pos)
            stop = n if end < 0 else end
            self._line += chunk[pos:stop]
            if len(self._line) > _Y4M_LINE_MAX:
                raise MediaError("malformed YUV4MPEG2 header")
            if end < 0:
                return
            pos = end + 1
            self._header(bytes(self._line))
            self._line.clear()

    def _header(self, line: bytes) -> None:
        if self._stream_header:
            if not line.startswith(b"YUV4MPEG2 "):
                raise MediaError("malformed YUV4MPEG2 stream header")
            self._stream_header = False
            return
        if line != b"FRAME" and not line.startswith(b"FRAME "):
            raise MediaError("malformed YUV4MPEG2 frame header")
        self._in_frame = self._frames.size

    def finish(self) -> None:
        if self._line or self._in_frame:
            raise MediaError("decoded video ended inside a frame")
        self._frames.finish()


def _find_newline(chunk: memoryview, start: int) -> int:
    """Index of the first ``\\n`` in ``chunk[start:]`` (searching at most one header line)."""
    window = chunk[start : start + _Y4M_LINE_MAX + 1]
    found = bytes(window).find(b"\n")
    return -1 if found < 0 else start + found


class Chunks:
    """Cuts a byte stream into ``size``-byte records (copies), e.g. 144-byte luma grids."""

    def __init__(self, size: int, on_record: Callable[[bytes], None]) -> None:
        self._size = size
        self._buf = bytearray()
        self._on_record = on_record

    def __call__(self, chunk: memoryview) -> None:
        self._buf += chunk
        whole = len(self._buf) - len(self._buf) % self._size
        for pos in range(0, whole, self._size):
            self._on_record(bytes(self._buf[pos : pos + self._size]))
        del self._buf[:whole]

    def finish(self) -> None:
        if self._buf:
            raise MediaError("decoded stream ended inside a record")


class FrameCrcTimes:
    """Parses ffmpeg ``framecrc`` text: learns the time base, reports each frame's pts."""

    def __init__(self, on_pts: Callable[[int], None]) -> None:
        self.time_base: tuple[int, int] | None = None
        self._rest = b""
        self._on_pts = on_pts

    def __call__(self, chunk: memoryview) -> None:
        lines = (self._rest + bytes(chunk)).split(b"\n")
        self._rest = lines.pop()
        if len(self._rest) > 4096:
            raise MediaError("malformed frame timing line")
        for line in lines:
            self._line(line.strip())

    def _line(self, line: bytes) -> None:
        if not line:
            return
        if line.startswith(b"#"):
            if (m := _TB.match(line)) and int(m.group(2)) > 0:
                self.time_base = (int(m.group(1)), int(m.group(2)))
            return
        fields = line.split(b",")
        if len(fields) < 6 or self.time_base is None:
            raise MediaError("malformed frame timing line")
        self._on_pts(int(fields[2]))

    def finish(self) -> None:
        if self._rest.strip():
            self._line(self._rest.strip())
        self._rest = b""


class VideoSegments:
    """Joins frame digests, luma grids and timestamps (three pipes) into video segments."""

    def __init__(self, segment_ms: int, max_segments: int) -> None:
        self._segment_ms = segment_ms
        self._max_segments = max_segments
        self.times = FrameCrcTimes(self.add_pts)  # the consumer of the timestamp pipe
        self._lock = threading.Lock()
        self._digests: deque[bytes] = deque()
        self._grids: deque[bytes] = deque()
        self._pts: deque[int] = deque()
        self._first: int | None = None
        self._index = 0
        self._open()
        self.segments: list[SegmentPart] = []
        self.frames = 0
        self.last_ms = 0

    def _open(self) -> None:
        self._hash = hashlib.sha256()
        self._count = 0
        self._sums = [0] * GRID_CELLS

    def _close(self) -> None:
        n = self._count
        grid = bytes((s + n // 2) // n for s in self._sums) if n else b""
        self.segments.append(SegmentPart(self._hash.digest(), n, grid))
        self._open()

    def add_digest(self, digest: bytes) -> None:
        with self._lock:
            self._digests.append(digest)
            self._fold()

    def add_grid(self, grid: bytes) -> None:
        with self._lock:
            self._grids.append(grid)
            self._fold()

    def add_pts(self, pts: int) -> None:
        with self._lock:
            self._pts.append(pts)
            self._fold()

    def _fold(self) -> None:
        tb = self.times.time_base
        while self._digests and self._grids and self._pts and tb is not None:
            digest, grid, pts = self._digests.popleft(), self._grids.popleft(), self._pts.popleft()
            if self._first is None:
                self._first = pts
            ms = (pts - self._first) * tb[0] * 1000 // tb[1]
            target = max(self._index, ms // self._segment_ms)
            if target >= self._max_segments:
                raise MediaError("video timestamps run far past the declared duration")
            while self._index < target:
                self._close()
                self._index += 1
            self._hash.update(digest)
            self._count += 1
            self._sums = list(map(operator.add, self._sums, grid))
            self.frames += 1
            self.last_ms = max(self.last_ms, ms)

    def finish(self) -> list[SegmentPart]:
        with self._lock:
            self._fold()
            left = (len(self._digests), len(self._grids), len(self._pts))
            if any(left):
                raise MediaError(f"decoded video streams out of step {left}")
            if self._count:
                self._close()
            return self.segments


class AudioSegments:
    """Hashes s16le PCM per segment, cut at exact sample boundaries.

    ``lead`` (samples) says the stream starts that far into the timeline: its first sample
    is sample ``lead`` of segment 0, which then holds fewer samples (used to align a copy
    that lacks an original's first samples; see :mod:`ingest.media.fpalign`).
    """

    def __init__(
        self, sample_rate: int, channels: int, segment_ms: int, max_segments: int, lead: int = 0
    ):
        if channels <= 0 or sample_rate * segment_ms < 1000:
            raise ValueError("need channels and at least one sample per segment")
        self._rate = sample_rate
        self._frame_bytes = 2 * channels
        self._segment_ms = segment_ms
        self._max_segments = max_segments
        self.segments: list[SegmentPart] = []
        self.samples = 0
        self._hash = hashlib.sha256()
        self._seg_bytes = 0
        self._end = self._boundary(1)
        self._lead = 0
        self.set_lead(lead)

    def set_lead(self, lead: int) -> None:
        """Start the stream ``lead`` samples into segment 0 (before any sample arrives)."""
        if self._seg_bytes or self.segments:
            raise ValueError("the lead is set before the first sample")
        if not 0 <= lead * self._frame_bytes < self._end:
            raise ValueError("the lead must fall inside the first segment")
        self._lead = lead * self._frame_bytes

    def boundary_samples(self, k: int) -> int:
        """Sample (from the timeline's start) where segment ``k`` starts."""
        return k * self._segment_ms * self._rate // 1000

    def _boundary(self, k: int) -> int:
        """Byte offset (from the timeline's start) where segment ``k`` starts."""
        return self.boundary_samples(k) * self._frame_bytes

    def _close(self) -> None:
        count = self._seg_bytes // self._frame_bytes
        self.segments.append(SegmentPart(self._hash.digest(), count))
        if len(self.segments) >= self._max_segments:
            raise MediaError("audio runs far past the declared duration")
        self._hash = hashlib.sha256()
        self._seg_bytes = 0
        self._end = self._boundary(len(self.segments) + 1)

    def __call__(self, chunk: memoryview) -> None:
        pos, n = 0, len(chunk)
        while pos < n:
            start = self._boundary(len(self.segments)) if self.segments else self._lead
            done = start + self._seg_bytes
            take = min(self._end - done, n - pos)
            self._hash.update(chunk[pos : pos + take])
            self._seg_bytes += take
            pos += take
            if done + take == self._end:
                self.samples += self._seg_bytes // self._frame_bytes
                self._close()

    def finish(self) -> list[SegmentPart]:
        if self._seg_bytes % self._frame_bytes:
            raise MediaError("decoded audio ended inside a sample")
        if self._seg_bytes:
            self.samples += self._seg_bytes // self._frame_bytes
            count = self._seg_bytes // self._frame_bytes
            self.segments.append(SegmentPart(self._hash.digest(), count))
            self._seg_bytes = 0
        return self.segments


class Envelope:
    """Integer RMS of each ``window`` samples of s16le mono (the last window may be short)."""

    def __init__(self, window: int) -> None:
        self._window_bytes = 2 * window
        self._buf = bytearray()
        self.rms: list[int] = []

    def _measure(self, data: bytes | bytearray) -> None:
        samples = array("h")
        samples.frombytes(data)
        if sys.byteorder == "big":
            samples.byteswap()
        self.rms.append(isqrt(sum(map(operator.mul, samples, samples)) // len(samples)))

    def __call__(self, chunk: memoryview) -> None:
        self._buf += chunk
        whole = len(self._buf) - len(self._buf) % self._window_bytes
        for pos in range(0, whole, self._window_bytes):
            self._measure(self._buf[pos : pos + self._window_bytes])
        del self._buf[:whole]

    def finish(self) -> list[int]:
        usable = len(self._buf) - len(self._buf) % 2
        if usable:
            self._measure(self._buf[:usable])
        self._buf.clear()
        return self.rms
