"""Suggested redaction boxes: faces and number plates found offline, tracked across frames.

Detection uses the Haar cascades that ship inside the ``opencv-python-headless`` wheel (the
optional ``detect`` extra): frontal faces (``haarcascade_frontalface_default.xml``) and plates
(``haarcascade_russian_plate_number.xml``). Nothing is ever downloaded; without the package,
:func:`available` is False and :func:`suggest` raises :class:`DetectorMissing`.

Guarantees of :func:`suggest`:

* The original is decoded only through the sandbox (confined input, limits, argv only), at
  :data:`SAMPLE_FPS` frames a second, as grey pictures whose longer side is at most
  :data:`MAX_SIDE` (never upscaled); each picture is searched as it arrives (bounded memory).
* Boxes are in the original's upright picture, grown by :data:`GROW` of their size on each side
  (a detector's box is tight; redaction errs on hiding more), clamped into the picture, at
  least ``MIN_BOX`` pixels.
* Detections become tracks (:func:`track`): greedily matched to the track whose last box
  overlaps most (IoU ≥ :data:`MIN_IOU`), a track ending after :data:`MAX_GAP` samples without a
  match; tracks seen in fewer than two samples are dropped. Each track is a spec box track
  (``vault.redaction.spec``) with at most ``MAX_KEYFRAMES`` keyframes, at most ``MAX_TRACKS``
  tracks (the longest), so suggestions accepted as they are always make a valid spec.

Suggestions are only suggestions: a reviewer confirms, edits or drops each before submitting.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.media.errors import MediaError
from ingest.media.ffargs import GLOBAL_ARGS, input_args
from ingest.media.probe import ProbeInfo
from ingest.media.sandbox import Limits, run, sink
from ingest.media.tools import Tools
from vault.redaction.spec import MAX_KEYFRAMES, MAX_TRACKS, MIN_BOX

__all__ = [
    "Detection",
    "DetectorMissing",
    "SuggestedTrack",
    "available",
    "suggest",
    "track",
]

SAMPLE_FPS = 5
MAX_SIDE = 640
GROW = 0.15
MIN_IOU = 0.2
MAX_GAP = 3
CASCADES = {
    "face": "haarcascade_frontalface_default.xml",
    "plate": "haarcascade_russian_plate_number.xml",
}


class DetectorMissing(MediaError):
    """opencv-python-headless (the ``detect`` extra) is not installed."""


@dataclass(frozen=True)
class Detection:
    """One box found in one sampled picture (upright original pixels)."""

    t_ms: int
    kind: str
    x: int
    y: int
    w: int
    h: int


@dataclass
class SuggestedTrack:
    kind: str
    boxes: list[Detection] = field(default_factory=list)
    misses: int = 0

    def to_spec(self, n: int) -> dict[str, Any]:
        """A spec box track (``label`` says what and that it is a suggestion)."""
        boxes = self.boxes
        if len(boxes) > MAX_KEYFRAMES:
            step = (len(boxes) - 1) / (MAX_KEYFRAMES - 1)
            boxes = [boxes[round(i * step)] for i in range(MAX_KEYFRAMES)]
        effect = "blur" if self.kind == "face" else "pixelate"
        keyframes = [{"t_ms": d.t_ms, "x": d.x, "y": d.y, "w": d.w, "h": d.h} for d in boxes]
        return {"label": f"{self.kind} {n} (suggested)", "effect": effect, "keyframes": keyframes}


def _iou(a: Detection, b: Detection) -> float:
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union else 0.0


def track(frames: list[list[Detection]]) -> list[SuggestedTrack]:
    """Tracks from the detections of successive samples (see module); pure."""
    live: list[SuggestedTrack] = []
    done: list[SuggestedTrack] = []
    for found in frames:
        taken: set[int] = set()
        for t in live:
            best, score = None, MIN_IOU
            for i, d in enumerate(found):
                if i not in taken and d.kind == t.kind and (s := _iou(t.boxes[-1], d)) >= score:
                    best, score = i, s
            if best is None:
                t.misses += 1
            else:
                taken.add(best)
                t.boxes.append(found[best])
                t.misses = 0
        done += [t for t in live if t.misses > MAX_GAP]
        live = [t for t in live if t.misses <= MAX_GAP]
        live += [SuggestedTrack(d.kind, [d]) for i, d in enumerate(found) if i not in taken]
    tracks = [t for t in done + live if len(t.boxes) >= 2]
    tracks.sort(key=lambda t: (-len(t.boxes), t.boxes[0].t_ms))
    return sorted(tracks[:MAX_TRACKS], key=lambda t: t.boxes[0].t_ms)


def _cv() -> tuple[Any, Any]:
    try:
        return importlib.import_module("cv2"), importlib.import_module("numpy")
    except ImportError as exc:
        raise DetectorMissing(
            "face and plate suggestions need opencv-python-headless (the 'detect' extra)"
        ) from exc


def available() -> bool:
    """Whether the detector's package is installed (and ships the cascades)."""
    try:
        cv2, _ = _cv()
    except DetectorMissing:
        return False
    return all((Path(cv2.data.haarcascades) / name).exists() for name in CASCADES.values())


def _scaled(w: int, h: int) -> tuple[int, int]:
    """Even picture size with the longer side at most MAX_SIDE, never upscaled."""
    k = min(1.0, MAX_SIDE / max(w, h))
    return max(2, int(w * k) // 2 * 2), max(2, int(h * k) // 2 * 2)


class _Searcher:
    """Receives the raw grey stream, cuts it into pictures, searches each as it arrives."""

    def __init__(self, w: int, h: int, sw: int, sh: int) -> None:
        self.cv2, self.np = _cv()
        base = self.cv2.data.haarcascades
        self.cascades = {
            kind: self.cv2.CascadeClassifier(str(Path(base) / name))
            for kind, name in CASCADES.items()
        }
        self.w, self.h, self.sw, self.sh = w, h, sw, sh
        self.size = sw * sh
        self.buf = bytearray()
        self.frames: list[list[Detection]] = []

    def __call__(self, chunk: memoryview) -> None:
        self.buf += chunk
        while len(self.buf) >= self.size:
            picture = bytes(self.buf[: self.size])
            del self.buf[: self.size]
            self.frames.append(self._search(picture, len(self.frames)))

    def _search(self, picture: bytes, n: int) -> list[Detection]:
        img = self.np.frombuffer(picture, dtype=self.np.uint8).reshape(self.sh, self.sw)
        t_ms = n * 1000 // SAMPLE_FPS
        out: list[Detection] = []
        kx, ky = self.w / self.sw, self.h / self.sh
        for kind, cascade in self.cascades.items():
            least = (24, 24) if kind == "face" else (40, 12)
            for x, y, w, h in cascade.detectMultiScale(img, 1.1, 4, minSize=least):
                out.append(self._box(t_ms, kind, x * kx, y * ky, w * kx, h * ky))
        return out

    def _box(self, t_ms: int, kind: str, x: float, y: float, w: float, h: float) -> Detection:
        gx, gy = w * GROW, h * GROW
        x0, y0 = max(0, int(x - gx)), max(0, int(y - gy))
        x1, y1 = min(self.w, int(x + w + gx + 1)), min(self.h, int(y + h + gy + 1))
        bw, bh = max(MIN_BOX, x1 - x0), max(MIN_BOX, y1 - y0)
        x0, y0 = min(x0, self.w - bw), min(y0, self.h - bh)
        return Detection(t_ms, kind, x0, y0, bw, bh)


async def suggest(
    src: str | os.PathLike[str],
    info: ProbeInfo,
    *,
    tools: Tools | None = None,
    limits: Limits | None = None,
) -> list[dict[str, Any]]:
    """Suggested box tracks for ``src`` (spec box tracks, see module); [] without video."""
    if info.video_index is None or not info.display_width or not info.display_height:
        return []
    tools = tools or Tools()
    w, h = info.display_width, info.display_height
    if min(w, h) < MIN_BOX:
        return []
    sw, sh = _scaled(w, h)
    searcher = _Searcher(w, h, sw, sh)
    limits = (limits or Limits()).with_wall(60.0 + 4.0 * (info.duration_ms or 0) / 1000)
    vf = f"fps={SAMPLE_FPS},scale={sw}:{sh},format=gray"
    argv = [
        tools.ffmpeg,
        *GLOBAL_ARGS,
        *input_args(Path(src), demuxer=info.demuxer, threads=limits.threads),
        *("-map", f"0:{info.video_index}", "-an", "-vf", vf),
        *("-f", "rawvideo", "-pix_fmt", "gray", sink(0)),
    ]
    await run(argv, limits=limits, sinks=[searcher])
    return [t.to_spec(n + 1) for n, t in enumerate(track(searcher.frames))]
