"""Redaction specs: what a redacted copy hides, as versioned JSON; pure functions, no I/O.

A spec (``docs/redaction.md``) is a JSON object::

    {"version": 1, "effect": "blur",
     "boxes": [{"label": "bystander", "effect": "pixelate",
                "keyframes": [{"t_ms": 0, "x": 40, "y": 30, "w": 64, "h": 64},
                              {"t_ms": 2000, "x": 140, "y": 30, "w": 64, "h": 64}]}],
     "frame_ranges": [{"start_ms": 2500, "end_ms": 3000}],
     "mute_ranges": [{"start_ms": 1000, "end_ms": 1500}],
     "tone_ranges": [{"start_ms": 1600, "end_ms": 2000}]}

Guarantees of :func:`parse_spec`:

* Every problem found is reported, each naming its field as a path (``boxes[0].keyframes[2].x``),
  in one :class:`InvalidSpec` (a ``BadRequest``: 400 problem+json with an ``errors`` member).
* Nothing unknown passes: unknown keys, wrong types (``true`` is not a number), floats for
  pixel or time values, a version other than :data:`SPEC_VERSION`, an effect outside
  :data:`EFFECTS` are errors.
* With ``frame`` given (the original's upright picture size and duration): every keyframe box
  lies inside the frame, every time within ``[0, duration_ms]``.
* Sizes are bounded (:data:`MAX_TRACKS` tracks, :data:`MAX_KEYFRAMES` keyframes or
  :data:`MAX_FRAMES` per-frame boxes per track, :data:`MAX_BOX_POINTS` of both in all,
  :data:`MAX_RANGES` ranges per list), so no spec can make an unbounded filter graph.
* Mute and tone ranges never overlap each other (a stretch of sound is either silenced or
  covered by the tone, not both).
* Keyframe times strictly increase within a track (a track is at least two keyframes: a box
  standing still is two keyframes at the same place); ranges are non-empty and, within a list,
  neither overlap nor touch out of order (they must be sorted and disjoint).
* A parsed :class:`Spec` has one canonical encoding (:func:`spec_bytes`, canonical JSON with
  defaults filled in) and so one hash (:func:`spec_sha256`), which the ``redacted`` ledger entry
  records and ``evault-verify`` recomputes from the spec carried in a package. An empty
  ``tone_ranges`` is left out of that encoding, so specs written before it existed keep their
  hash.

A track is given either as ``keyframes`` (between two, the box moves and resizes linearly in
time) or as ``frames``, a box per frame time (each held, unmoved, until the next one's time: no
interpolation); either way (:func:`box_at`) it is active from its first entry's time to its
last's, both included.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vault.errors import BadRequest
from verify.canonical import canonical_json

__all__ = [
    "EFFECTS",
    "MAX_BOX_POINTS",
    "MAX_FRAMES",
    "MAX_KEYFRAMES",
    "MAX_RANGES",
    "MAX_TRACKS",
    "MIN_BOX",
    "SPEC_VERSION",
    "TONE_AMPLITUDE",
    "TONE_HZ",
    "Box",
    "Frame",
    "InvalidSpec",
    "Keyframe",
    "Range",
    "Spec",
    "Track",
    "box_at",
    "parse_spec",
    "spec_bytes",
    "spec_json",
    "spec_sha256",
]

SPEC_VERSION = 1
Effect = Literal["blur", "pixelate", "solid"]
EFFECTS: tuple[str, ...] = ("blur", "pixelate", "solid")
MAX_TRACKS = 32
MAX_KEYFRAMES = 256
MAX_FRAMES = 1800  # per-frame boxes of one track: a minute at 30 frames a second
MAX_BOX_POINTS = MAX_TRACKS * MAX_KEYFRAMES  # keyframes and per-frame boxes of all tracks
MAX_RANGES = 64
MIN_BOX = 8  # pixels, each side: smaller boxes cannot be blurred to any effect
MAX_PIXELS = 16384  # any coordinate or time bound far beyond real recordings
MAX_MS = 7 * 24 * 3600 * 1000
MAX_LABEL = 64
TONE_HZ = 1000  # the tone laid over a tone range: a 1 kHz sine ...
TONE_AMPLITUDE = 0.1  # ... at a tenth of full scale (-20 dBFS) in every channel


class InvalidSpec(BadRequest):
    """The redaction spec is invalid: each error names its field; correct them and resubmit."""

    slug = "invalid-redaction-spec"
    title = "Invalid redaction spec: each error names its field"

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = tuple(errors)
        shown = "; ".join(f"{f}: {m}" for f, m in errors[:10])
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        super().__init__(shown + more)


@dataclass(frozen=True)
class Frame:
    """The original's upright picture size in pixels and its duration (from its probe)."""

    width: int | None
    height: int | None
    duration_ms: int | None


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Keyframe:
    t_ms: int
    x: int
    y: int
    w: int
    h: int

    @property
    def box(self) -> Box:
        return Box(self.x, self.y, self.w, self.h)


@dataclass(frozen=True)
class Track:
    keyframes: tuple[Keyframe, ...]
    effect: Effect
    label: str = ""
    hold: bool = False
    """Given as per-frame ``frames``: each box held until the next, not interpolated."""

    @property
    def start_ms(self) -> int:
        return self.keyframes[0].t_ms

    @property
    def end_ms(self) -> int:
        return self.keyframes[-1].t_ms


@dataclass(frozen=True)
class Range:
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Spec:
    effect: Effect
    boxes: tuple[Track, ...] = ()
    frame_ranges: tuple[Range, ...] = ()
    mute_ranges: tuple[Range, ...] = ()
    version: int = SPEC_VERSION
    tone_ranges: tuple[Range, ...] = ()

    @property
    def has_audio_work(self) -> bool:
        return bool(self.mute_ranges or self.tone_ranges)

    @property
    def has_video_work(self) -> bool:
        return bool(self.boxes or self.frame_ranges)


class _Errors:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append((field, message))


def _int(
    errs: _Errors, obj: Mapping[str, Any], key: str, path: str, lo: int, hi: int
) -> int | None:
    field = f"{path}.{key}" if path else key
    if key not in obj:
        errs.add(field, "required")
        return None
    value = obj[key]
    if type(value) is not int:
        errs.add(field, f"must be an integer, not {_kind(value)}")
        return None
    if not lo <= value <= hi:
        errs.add(field, f"{value} is outside {lo}-{hi}")
        return None
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _keys(errs: _Errors, obj: object, path: str, allowed: tuple[str, ...]) -> bool:
    if not isinstance(obj, dict):
        errs.add(path or "$", f"must be an object, not {_kind(obj)}")
        return False
    for key in sorted(set(obj) - set(allowed)):
        errs.add(f"{path}.{key}" if path else str(key), "unknown key")
    return True


def _list(errs: _Errors, obj: Mapping[str, Any], key: str, path: str, limit: int) -> list[Any]:
    field = f"{path}.{key}" if path else key
    value = obj.get(key, [])
    if not isinstance(value, list):
        errs.add(field, f"must be a list, not {_kind(value)}")
        return []
    if len(value) > limit:
        errs.add(field, f"{len(value)} items, at most {limit} allowed")
        return []
    return value


def _effect(errs: _Errors, value: object, field: str) -> Effect | None:
    if value not in EFFECTS:
        errs.add(field, f"must be one of {', '.join(EFFECTS)}")
        return None
    effect: Effect = value  # type: ignore[assignment]
    return effect


def _keyframe(errs: _Errors, raw: object, path: str, frame: Frame | None) -> Keyframe | None:
    if not _keys(errs, raw, path, ("t_ms", "x", "y", "w", "h")):
        return None
    assert isinstance(raw, dict)
    t = _int(errs, raw, "t_ms", path, 0, MAX_MS)
    x = _int(errs, raw, "x", path, 0, MAX_PIXELS)
    y = _int(errs, raw, "y", path, 0, MAX_PIXELS)
    w = _int(errs, raw, "w", path, MIN_BOX, MAX_PIXELS)
    h = _int(errs, raw, "h", path, MIN_BOX, MAX_PIXELS)
    if t is None or x is None or y is None or w is None or h is None:
        return None
    ok = True
    if frame is not None:
        if frame.duration_ms is not None and t > frame.duration_ms:
            errs.add(f"{path}.t_ms", f"{t} is beyond the duration of {frame.duration_ms} ms")
            ok = False
        if frame.width is not None and x + w > frame.width:
            errs.add(f"{path}.x", f"box x+w = {x + w} is outside the frame width {frame.width}")
            ok = False
        if frame.height is not None and y + h > frame.height:
            msg = f"box y+h = {y + h} is outside the frame height {frame.height}"
            errs.add(f"{path}.y", msg)
            ok = False
    return Keyframe(t, x, y, w, h) if ok else None


def _track(
    errs: _Errors, raw: object, path: str, default: Effect | None, frame: Frame | None
) -> Track | None:
    if not _keys(errs, raw, path, ("keyframes", "frames", "effect", "label")):
        return None
    assert isinstance(raw, dict)
    hold = "frames" in raw
    key = "frames" if hold else "keyframes"
    if hold and "keyframes" in raw:
        errs.add(path, "give keyframes or frames, not both")
        return None
    effect = default if "effect" not in raw else _effect(errs, raw["effect"], f"{path}.effect")
    label = raw.get("label", "")
    if not isinstance(label, str) or len(label) > MAX_LABEL or not label.isprintable():
        errs.add(f"{path}.label", f"must be printable text of at most {MAX_LABEL} characters")
        label = ""
    before = len(errs.items)
    items = _list(errs, raw, key, path, MAX_FRAMES if hold else MAX_KEYFRAMES)
    if key not in raw:
        errs.add(f"{path}.keyframes", "required (or frames)")
    elif len(errs.items) == before and len(items) < 2:
        errs.add(f"{path}.{key}", f"at least two {key} (a still box: two at one place)")
    frames = [_keyframe(errs, k, f"{path}.{key}[{i}]", frame) for i, k in enumerate(items)]
    for i in range(1, len(frames)):
        a, b = frames[i - 1], frames[i]
        if a is not None and b is not None and b.t_ms <= a.t_ms:
            errs.add(
                f"{path}.{key}[{i}].t_ms",
                f"{b.t_ms} is not after the previous {key[:-1]}'s {a.t_ms}",
            )
    if len(errs.items) != before or effect is None or len(frames) < 2:
        return None
    return Track(tuple(f for f in frames if f is not None), effect, label, hold)


def _ranges(
    errs: _Errors, obj: Mapping[str, Any], key: str, frame: Frame | None
) -> tuple[Range, ...]:
    out: list[Range] = []
    for i, raw in enumerate(_list(errs, obj, key, "", MAX_RANGES)):
        path = f"{key}[{i}]"
        if not _keys(errs, raw, path, ("start_ms", "end_ms")):
            continue
        start = _int(errs, raw, "start_ms", path, 0, MAX_MS)
        end = _int(errs, raw, "end_ms", path, 1, MAX_MS)
        if start is None or end is None:
            continue
        if end <= start:
            errs.add(f"{path}.end_ms", f"{end} is not after start_ms {start}")
            continue
        if frame is not None and frame.duration_ms is not None and end > frame.duration_ms:
            errs.add(f"{path}.end_ms", f"{end} is beyond the duration of {frame.duration_ms} ms")
            continue
        if out and start <= out[-1].end_ms:
            errs.add(
                f"{path}.start_ms",
                f"{start} overlaps or precedes the previous range (ending {out[-1].end_ms}):"
                " ranges must be sorted and disjoint; merge them",
            )
            continue
        out.append(Range(start, end))
    return tuple(out)


def parse_spec(raw: object, frame: Frame | None = None) -> Spec:
    """A validated :class:`Spec` from decoded JSON, or :class:`InvalidSpec` naming every field.

    ``frame`` (the original's picture size and duration) checks boxes and times against it;
    without it only the spec's own consistency is checked.
    """
    errs = _Errors()
    allowed = ("version", "effect", "boxes", "frame_ranges", "mute_ranges", "tone_ranges")
    if not _keys(errs, raw, "", allowed):
        raise InvalidSpec(errs.items)
    assert isinstance(raw, dict)
    if raw.get("version") != SPEC_VERSION or type(raw.get("version")) is not int:
        errs.add("version", f"must be {SPEC_VERSION}")
    effect = _effect(errs, raw.get("effect", "blur"), "effect")
    tracks = [
        _track(errs, t, f"boxes[{i}]", effect, frame)
        for i, t in enumerate(_list(errs, raw, "boxes", "", MAX_TRACKS))
    ]
    points = sum(len(t.keyframes) for t in tracks if t is not None)
    if points > MAX_BOX_POINTS:
        errs.add("boxes", f"{points} keyframes and frames in all, at most {MAX_BOX_POINTS}")
    frame_ranges = _ranges(errs, raw, "frame_ranges", frame)
    mute_ranges = _ranges(errs, raw, "mute_ranges", frame)
    tone_ranges = _ranges(errs, raw, "tone_ranges", frame)
    _disjoint(errs, mute_ranges, tone_ranges)
    if not errs.items and not (tracks or frame_ranges or mute_ranges or tone_ranges):
        errs.add(
            "boxes", "the spec hides nothing: give boxes, frame_ranges, mute_ranges or tone_ranges"
        )
    if errs.items or effect is None:
        raise InvalidSpec(errs.items)
    return Spec(
        effect,
        tuple(t for t in tracks if t is not None),
        frame_ranges,
        mute_ranges,
        tone_ranges=tone_ranges,
    )


def _disjoint(errs: _Errors, mute: tuple[Range, ...], tone: tuple[Range, ...]) -> None:
    """A tone range must not overlap a mute range: the sound is silenced or toned, not both."""
    for i, t in enumerate(tone):
        for m in mute:
            if t.start_ms < m.end_ms and m.start_ms < t.end_ms:
                errs.add(
                    f"tone_ranges[{i}].start_ms",
                    f"overlaps mute range {m.start_ms}-{m.end_ms} ms: a stretch of sound is"
                    " either muted or toned",
                )
                break


def spec_json(spec: Spec) -> dict[str, Any]:
    """The spec as JSON with every default filled in (what is stored and hashed)."""

    def rng(r: Range) -> dict[str, int]:
        return {"start_ms": r.start_ms, "end_ms": r.end_ms}

    out: dict[str, Any] = {
        "version": spec.version,
        "effect": spec.effect,
        "boxes": [
            {
                "label": t.label,
                "effect": t.effect,
                "frames" if t.hold else "keyframes": [
                    {"t_ms": k.t_ms, "x": k.x, "y": k.y, "w": k.w, "h": k.h} for k in t.keyframes
                ],
            }
            for t in spec.boxes
        ],
        "frame_ranges": [rng(r) for r in spec.frame_ranges],
        "mute_ranges": [rng(r) for r in spec.mute_ranges],
    }
    if spec.tone_ranges:  # left out when empty: older specs keep their canonical bytes
        out["tone_ranges"] = [rng(r) for r in spec.tone_ranges]
    return out


def spec_bytes(spec: Spec) -> bytes:
    """The canonical JSON bytes of ``spec`` (one spelling per spec)."""
    return canonical_json(spec_json(spec))


def spec_sha256(spec: Spec) -> str:
    """Lower-case hex SHA-256 of :func:`spec_bytes`."""
    return hashlib.sha256(spec_bytes(spec)).hexdigest()


def box_at(track: Track, t_ms: float) -> Box | None:
    """The box of ``track`` at ``t_ms``: linear between keyframes, or the latest per-frame box
    (held); None outside the track."""
    frames = track.keyframes
    if t_ms < frames[0].t_ms or t_ms > frames[-1].t_ms:
        return None
    if track.hold:
        return next(k.box for k in reversed(frames) if k.t_ms <= t_ms)
    for a, b in itertools.pairwise(frames):
        if a.t_ms <= t_ms <= b.t_ms:
            u = (t_ms - a.t_ms) / (b.t_ms - a.t_ms)
            return Box(
                a.x + (b.x - a.x) * u,
                a.y + (b.y - a.y) * u,
                a.w + (b.w - a.w) * u,
                a.h + (b.h - a.h) * u,
            )
    return frames[-1].box  # unreachable: the loop covers [first, last]
