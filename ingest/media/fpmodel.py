"""The fingerprint of a recording as data: segments, canonical JSON, Merkle root. No I/O.

Guarantees of a :class:`Fingerprint`:

* ``video_sha256``/``audio_sha256`` of a segment are *exact*: equal iff the decoded frames
  (pixels) / samples in that segment are equal (see :mod:`ingest.media.fpstreams` for the
  definitions). A remux keeps them; any re-encode changes them.
* ``luma`` (the segment's mean 16x9 luma grid, hex) and ``rms`` (integer RMS per 100 ms,
  s16 scale) are *perceptual*: they survive a re-encode, rescale or container change and are
  what :func:`ingest.media.compare.compare` uses to localise differences.
* ``merkle_root`` is the RFC 6962 root (``verify.merkle``) over one leaf per segment, leaf
  data = the segment's 32-byte video hash ‖ 32-byte audio hash (SHA-256 of nothing for a
  stream absent from the segment).
* :meth:`Fingerprint.to_bytes` is canonical JSON (``verify.canonical``): integers and strings
  only, so it can be hashed, stored as a rendition and cited by a ledger entry.
  :meth:`Fingerprint.from_bytes` accepts only such bytes and re-checks the Merkle root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ingest.media.fpstreams import GRID_CELLS
from vault.errors import IntegrityError
from verify.canonical import canonical_json, parse_canonical
from verify.merkle import leaf_hash, root_from_leaf_hashes

__all__ = ["EMPTY", "ENVELOPE_MS", "FORMAT_VERSION", "Fingerprint", "Segment", "merkle_root"]

FORMAT_VERSION = 1
ENVELOPE_MS = 100
EMPTY = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Segment:
    """One segment: exact hashes and counts per stream, perceptual luma grid and loudness."""

    video_sha256: bytes
    audio_sha256: bytes
    frames: int
    samples: int
    luma: bytes
    rms: tuple[int, ...]

    @property
    def leaf(self) -> bytes:
        return self.video_sha256 + self.audio_sha256

    def to_json(self) -> dict[str, object]:
        return {
            "video_sha256": self.video_sha256.hex(),
            "audio_sha256": self.audio_sha256.hex(),
            "frames": self.frames,
            "samples": self.samples,
            "luma": self.luma.hex(),
            "rms": list(self.rms),
        }


@dataclass(frozen=True)
class Fingerprint:
    """Per-segment fingerprint of one recording (see module). Times are relative to its start.

    ``video``/``audio`` describe what was decoded (absent stream: empty mapping); ``last_ms``
    in ``video`` is the start of the last frame, ``samples`` in ``audio`` the sample count.
    """

    segment_ms: int
    video: tuple[tuple[str, int | str], ...]
    audio: tuple[tuple[str, int], ...]
    segments: tuple[Segment, ...]
    merkle_root: bytes
    ffmpeg: str

    @property
    def has_video(self) -> bool:
        return bool(self.video)

    @property
    def has_audio(self) -> bool:
        return bool(self.audio)

    @property
    def duration_ms(self) -> int:
        """Covered time: the later of the last frame's start and the end of the audio."""
        video = dict(self.video)
        audio = dict(self.audio)
        last = int(video.get("last_ms", 0))
        if audio:
            last = max(last, audio["samples"] * 1000 // audio["sample_rate"])
        return last

    def to_json(self) -> dict[str, object]:
        return {
            "v": FORMAT_VERSION,
            "kind": "fingerprint",
            "segment_ms": self.segment_ms,
            "grid": "16x9",
            "envelope_ms": ENVELOPE_MS,
            "video": dict(self.video),
            "audio": dict(self.audio),
            "segments": [s.to_json() for s in self.segments],
            "merkle_root": self.merkle_root.hex(),
            "ffmpeg": self.ffmpeg,
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> Fingerprint:
        """Parse canonical fingerprint bytes; :class:`IntegrityError` if anything is off."""
        try:
            obj = parse_canonical(data, max_bytes=None)
            if obj.get("v") != FORMAT_VERSION or obj.get("kind") != "fingerprint":
                raise ValueError("not a version 1 fingerprint")
            segments = tuple(_segment(s) for s in obj["segments"])
            fp = cls(
                segment_ms=_pos_int(obj["segment_ms"]),
                video=tuple(sorted(_flat(obj["video"]).items())),
                audio=tuple(sorted((k, _pos_int(v)) for k, v in _flat(obj["audio"]).items())),
                segments=segments,
                merkle_root=bytes.fromhex(obj["merkle_root"]),
                ffmpeg=str(obj["ffmpeg"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IntegrityError(f"malformed fingerprint: {exc}") from exc
        if merkle_root(fp.segments) != fp.merkle_root:
            raise IntegrityError("fingerprint segments do not match its Merkle root")
        return fp


def _pos_int(v: object) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValueError("expected a non-negative integer")
    return v


def _flat(v: object) -> dict[str, int | str]:
    if not isinstance(v, dict) or not all(isinstance(x, int | str) for x in v.values()):
        raise ValueError("expected an object of integers and strings")
    return v


def _segment(s: Any) -> Segment:
    if not (_HEX64.match(s["video_sha256"]) and _HEX64.match(s["audio_sha256"])):
        raise ValueError("bad segment hash")
    luma = bytes.fromhex(s["luma"])
    if len(luma) not in (0, GRID_CELLS):
        raise ValueError("bad luma grid")
    return Segment(
        bytes.fromhex(s["video_sha256"]),
        bytes.fromhex(s["audio_sha256"]),
        _pos_int(s["frames"]),
        _pos_int(s["samples"]),
        luma,
        tuple(_pos_int(x) for x in s["rms"]),
    )


def merkle_root(segments: tuple[Segment, ...] | list[Segment]) -> bytes:
    """RFC 6962 root over the segments' leaves (video hash ‖ audio hash)."""
    return root_from_leaf_hashes([leaf_hash(s.leaf) for s in segments])
