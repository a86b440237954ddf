"""What ffmpeg should do to redact: patches, enable expressions and effects; pure, no I/O.

A spec's box tracks (``vault.redaction.spec``) become *patches*: each a rectangle of fixed size
that follows the box through part of its track, cut out of the picture (``crop``), made
unrecognisable (``boxblur``, ``pixelize`` or a solid fill) and laid back at the same place
(``overlay``), all enabled only between its times (``enable='between(t,a,b)'``).

Guarantees of :func:`patches` (the picture is padded to even dimensions and converted to
yuv420p first, see :data:`PREPARE`):

* **Coverage.** At every time ``t`` of a track, the interpolated box (``spec.box_at``) lies
  inside the patch placed at ``t``: a patch is as large as the largest box of its keyframes
  plus a margin (:data:`MARGIN` pixels, rounded up to even), and its position is the box's
  right/bottom edge minus its size plus half the margin, so FFmpeg's rounding of ``x``/``y`` to
  the chroma grid (down to even) can never uncover a pixel; clamped into the frame, which keeps
  the coverage because every box lies inside the frame. A box that shrinks is covered by a
  patch the size of its largest keyframe: redaction errs on hiding more, never less.
* A per-frame track (``Track.hold``) is placed the same way, piecewise constant: at ``t`` the
  patch covers the box of the latest frame at or before ``t``, as ``spec.box_at`` says.
* **Bounded graphs.** A track of ``k`` keyframes gives ``ceil((k-1) / MAX_INTERVALS)`` patches;
  each patch's position is one piecewise-linear expression of at most :data:`MAX_INTERVALS`
  pieces.
* :func:`tone_expr` replaces every sample whose time falls in a tone range by the tone
  (``TONE_HZ`` sine at ``TONE_AMPLITUDE`` of full scale) and keeps every other sample as it was.
* :func:`mute_expr` enables muting on every audio frame that overlaps a mute range (frames of
  :func:`mute_frame_samples` samples, about 10 ms), so no sample in a range is left audible.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from vault.redaction.spec import TONE_AMPLITUDE, TONE_HZ, Effect, Keyframe, Range, Spec, Track

__all__ = [
    "MARGIN",
    "MAX_INTERVALS",
    "PREPARE",
    "Patch",
    "effect_filters",
    "enable_expr",
    "mute_expr",
    "mute_frame_samples",
    "patches",
    "seconds",
    "tone_expr",
]

MARGIN = 4
MAX_INTERVALS = 16
#: Filters before any patch: even dimensions (padded, never scaled, so coordinates stay the
#: original's) and a 4:2:0 picture whose chroma grid the margins allow for.
PREPARE: tuple[tuple[str, dict[str, str]], ...] = (
    ("pad", {"w": "ceil(iw/2)*2", "h": "ceil(ih/2)*2"}),
    ("format", {"pix_fmts": "yuv420p"}),
)


@dataclass(frozen=True)
class Patch:
    """One crop/effect/overlay chain: ``w``×``h`` at (``x``, ``y``) (expressions in ``t``,
    seconds), enabled on ``[start_ms, end_ms]``."""

    start_ms: int
    end_ms: int
    w: int
    h: int
    x: str
    y: str
    effect: Effect

    @property
    def enable(self) -> str:
        return f"between(t,{seconds(self.start_ms)},{seconds(self.end_ms)})"


def seconds(ms: int) -> str:
    """Exact decimal seconds from integer milliseconds (no float rounding)."""
    return f"{ms // 1000}.{ms % 1000:03d}"


def _even_up(n: int) -> int:
    return n + (n % 2)


def _num(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _axis(
    frames: Sequence[Keyframe], pos: str, size: str, patch: int, limit: int, hold: bool = False
) -> str:
    """Piecewise-linear position of a ``patch``-wide rectangle covering each box (see module);
    with ``hold``, piecewise constant: each box's place until the next one's time."""
    pieces: list[tuple[int, str]] = []
    slack = MARGIN // 2
    if hold:
        for a, b in itertools.pairwise(frames):
            pieces.append((b.t_ms, _num(getattr(a, pos) + getattr(a, size) - patch + slack)))
        last = frames[-1]
        out = _num(getattr(last, pos) + getattr(last, size) - patch + slack)
        for t_ms, expr in reversed(pieces):
            out = f"if(lt(t,{seconds(t_ms)}),{expr},{out})"
        return f"clip({out},0,{limit})"
    for a, b in itertools.pairwise(frames):
        ea = getattr(a, pos) + getattr(a, size)  # far edge at a
        eb = getattr(b, pos) + getattr(b, size)
        c0 = ea - patch + slack
        slope = eb - ea
        if slope == 0:
            expr = _num(c0)
        else:
            u = f"(t-{seconds(a.t_ms)})/{seconds(b.t_ms - a.t_ms)}"
            expr = f"{_num(c0)}+{_num(slope)}*clip({u},0,1)"
        pieces.append((b.t_ms, expr))
    out = pieces[-1][1]
    for t_ms, expr in reversed(pieces[:-1]):
        out = f"if(lt(t,{seconds(t_ms)}),{expr},{out})"
    return f"clip({out},0,{limit})"


def _track_patches(track: Track, width: int, height: int) -> list[Patch]:
    out: list[Patch] = []
    frames = track.keyframes
    for first in range(0, len(frames) - 1, MAX_INTERVALS):
        chunk = frames[first : first + MAX_INTERVALS + 1]
        w = min(_even_up(max(k.w for k in chunk) + MARGIN), width)
        h = min(_even_up(max(k.h for k in chunk) + MARGIN), height)
        out.append(
            Patch(
                chunk[0].t_ms,
                chunk[-1].t_ms,
                w,
                h,
                _axis(chunk, "x", "w", w, width - w, track.hold),
                _axis(chunk, "y", "h", h, height - h, track.hold),
                track.effect,
            )
        )
    return out


def patches(spec: Spec, width: int, height: int) -> list[Patch]:
    """Every patch of ``spec``'s tracks on a picture of ``width``×``height`` (the original's
    upright size; rounded up to even as :data:`PREPARE` pads it)."""
    width, height = _even_up(width), _even_up(height)
    return [p for track in spec.boxes for p in _track_patches(track, width, height)]


def effect_filters(effect: Effect, w: int, h: int) -> list[tuple[str, dict[str, str]]]:
    """The filters that make a ``w``×``h`` picture unrecognisable (all timeline-capable, so the
    caller adds ``enable``): a box blur of half the shorter side, two passes; pixels in blocks of
    an eighth of the shorter side (at least 8); or solid black."""
    if effect == "blur":
        return [
            (
                "boxblur",
                {
                    "luma_radius": "min(w,h)/2",
                    "luma_power": "2",
                    "chroma_radius": "min(cw,ch)/2",
                    "chroma_power": "2",
                },
            )
        ]
    if effect == "pixelate":
        block = str(max(8, min(w, h) // 8))
        return [("pixelize", {"width": block, "height": block})]
    return [("drawbox", {"x": "0", "y": "0", "w": "iw", "h": "ih", "color": "black", "t": "fill"})]


def enable_expr(ranges: Sequence[Range]) -> str:
    """Non-zero exactly on the ranges (``t`` in seconds; both ends included)."""
    return "+".join(f"between(t,{seconds(r.start_ms)},{seconds(r.end_ms)})" for r in ranges)


def mute_frame_samples(sample_rate: int | None) -> int:
    """Audio frame size for muting: about 10 ms of samples."""
    return max(64, (sample_rate or 48000) // 100)


def mute_expr(ranges: Sequence[Range], sample_rate: int | None) -> str:
    """Non-zero for every audio frame (starting at ``t``, :func:`mute_frame_samples` long) that
    overlaps one of ``ranges``: ``t < end`` and ``t + frame > start``."""
    rate = sample_rate or 48000
    frame_s = mute_frame_samples(rate) / rate
    parts = []
    for r in ranges:
        start = math.floor((r.start_ms / 1000 - frame_s) * 1e6) / 1e6
        parts.append(f"gt(t,{_num(start)})*lt(t,{seconds(r.end_ms)})")
    return "+".join(parts)


def tone_expr(ranges: Sequence[Range]) -> str:
    """An ``aeval`` expression (for each channel ``ch``): the tone on ``ranges`` (both ends
    included), the input sample ``val(ch)`` elsewhere."""
    tone = f"{_num(TONE_AMPLITUDE)}*sin(2*PI*{TONE_HZ}*t)"
    return f"if({enable_expr(ranges)},{tone},val(ch))"
