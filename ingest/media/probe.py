"""What a media file says it is: ffprobe's answer, checked and reduced to what we rely on.

Guarantees of :func:`probe`:

* The file is opened only through the sandbox (:mod:`ingest.media.sandbox`): allowed demuxers
  only, no protocol but ``file``/``pipe``, time and memory bounded.
* It returns a :class:`ProbeInfo` only for a file in an allowed container with at least one
  usable audio or video stream; otherwise it raises :class:`MediaError` with a reason.
* Declared values that would make later work absurd are refused up front: a video dimension
  above :data:`MAX_DIMENSION`, a declared duration above ``max_duration_s``, or a declared
  duration that the file's size cannot hold (below :data:`MIN_BITRATE` bit/s over more than
  a minute: a tiny file claiming hours).
* Every value in a :class:`ProbeInfo` was type-checked; strings from the file are cut to a
  bounded length with control characters removed. :meth:`ProbeInfo.to_json` holds only
  ints, strings, lists and objects (no floats), ready for a ledger entry.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from ingest.media.errors import MediaError
from ingest.media.ffargs import ALLOWED_DEMUXERS, input_args
from ingest.media.sandbox import Limits, run
from ingest.media.tools import Tools

__all__ = [
    "MAX_DIMENSION",
    "MIN_BITRATE",
    "PROBE_LIMITS",
    "ProbeInfo",
    "StreamInfo",
    "parse_probe",
    "probe",
    "probe_limits",
]

MAX_DIMENSION = 16384
MIN_BITRATE = 1000  # bit/s, applied to declared durations over a minute
MAX_DURATION_S = 24 * 3600
PROBE_LIMITS = Limits(
    wall_s=30.0, memory_bytes=1 << 30, threads=1, memory_origin="the probe's built-in default"
)
_DEVICE_KEYS = (
    "make",
    "model",
    "manufacturer",
    "software",
    "encoder",
    "com.apple.quicktime.make",
    "com.apple.quicktime.model",
    "com.apple.quicktime.software",
    "com.android.manufacturer",
    "com.android.model",
    "com.android.version",
    "major_brand",
)
_RATE = re.compile(r"^(\d{1,9})/(\d{1,9})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class StreamInfo:
    """One stream as declared: ``kind`` is ffprobe's codec_type (video, audio, data…)."""

    index: int
    kind: str
    codec: str
    attached_pic: bool = False

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"index": self.index, "type": self.kind, "codec": self.codec}
        if self.attached_pic:
            out["attached_pic"] = 1
        return out


@dataclass(frozen=True)
class ProbeInfo:
    """A probed file. ``video_*``/``audio_*`` describe the first usable stream of each kind.

    ``rotation`` is the display rotation in degrees counter-clockwise (0, 90, 180 or 270), as in
    FFmpeg's display matrix; ``display_width``/``display_height`` are the upright picture's.
    ``fps`` is a reduced fraction string ("30000/1001"). ``duration_ms`` is the declared
    duration rounded to a millisecond.
    """

    format_name: str
    demuxer: str
    size_bytes: int
    duration_ms: int | None
    bit_rate: int | None
    streams: tuple[StreamInfo, ...]
    video_index: int | None = None
    video_codec: str | None = None
    video_profile: str | None = None
    pix_fmt: str | None = None
    width: int | None = None
    height: int | None = None
    rotation: int = 0
    fps: str | None = None
    audio_index: int | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    creation_time: str | None = None
    device_tags: tuple[tuple[str, str], ...] = field(default=())

    @property
    def duration_s(self) -> float | None:
        return None if self.duration_ms is None else self.duration_ms / 1000

    @property
    def has_video(self) -> bool:
        return self.video_index is not None

    @property
    def has_audio(self) -> bool:
        return self.audio_index is not None

    @property
    def display_width(self) -> int | None:
        return self.height if self.rotation in (90, 270) else self.width

    @property
    def display_height(self) -> int | None:
        return self.width if self.rotation in (90, 270) else self.height

    @property
    def portrait(self) -> bool:
        w, h = self.display_width, self.display_height
        return w is not None and h is not None and h > w

    def to_json(self) -> dict[str, object]:
        """Ints, strings, lists and objects only; absent values are left out."""
        out: dict[str, object] = {
            "format": self.format_name,
            "size": self.size_bytes,
            "streams": [s.to_json() for s in self.streams],
            "rotation": self.rotation,
        }
        optional: dict[str, int | str | None] = {
            "duration_ms": self.duration_ms,
            "bit_rate": self.bit_rate,
            "video_codec": self.video_codec,
            "video_profile": self.video_profile,
            "pix_fmt": self.pix_fmt,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "audio_codec": self.audio_codec,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "creation_time": self.creation_time,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        if self.device_tags:
            out["device"] = dict(self.device_tags)
        return out


def probe_limits(base: Limits | None) -> Limits:
    """The probe's limits: its own wall time and one thread, ``base``'s memory limit (and that
    limit's origin) when given, else :data:`PROBE_LIMITS`' built-in 1 GiB."""
    if base is None:
        return PROBE_LIMITS
    return replace(PROBE_LIMITS, memory_bytes=base.memory_bytes, memory_origin=base.memory_origin)


async def probe(
    path: str | os.PathLike[str],
    *,
    tools: Tools | None = None,
    limits: Limits | None = None,
    max_duration_s: int = MAX_DURATION_S,
) -> ProbeInfo:
    """Probe ``path`` (see the module's guarantees). Raises :class:`MediaError`.

    ``limits`` are used as given; callers holding configured limits pass
    :func:`probe_limits` of them, so the configured memory limit applies here too.
    """
    try:
        st = await asyncio.to_thread(Path(path).stat)
    except OSError as exc:
        raise MediaError(f"cannot read file ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise MediaError("not a regular file")
    if st.st_size == 0:
        raise MediaError("empty file (0 bytes)")
    argv = [
        (tools or Tools()).ffprobe,
        "-v",
        "error",
        "-hide_banner",
        *input_args(path),
        "-show_format",
        "-show_streams",
        "-of",
        "json",
    ]
    result = await run(argv, limits=limits or PROBE_LIMITS, stdout_limit=4 << 20)
    try:
        data = json.loads(result.stdout)
    except ValueError as exc:
        raise MediaError("not a media file (unreadable probe output)") from exc
    return parse_probe(data, st.st_size, max_duration_s=max_duration_s)


# --------------------------------------------------------------------------- parsing (pure)


def _str(d: Mapping[str, Any], key: str, limit: int = 200) -> str | None:
    v = d.get(key)
    if isinstance(v, str) and v:
        return _CONTROL.sub("", v)[:limit]
    return None


def _int(d: Mapping[str, Any], key: str) -> int | None:
    v = d.get(key)
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"-?\d{1,18}", v):
        return int(v)
    return None


def _seconds_ms(d: Mapping[str, Any], key: str) -> int | None:
    v = d.get(key)
    if isinstance(v, str) and re.fullmatch(r"\d{1,12}(\.\d{1,9})?", v):
        return round(Fraction(v) * 1000)
    return None


def _rate(v: object) -> str | None:
    if isinstance(v, str) and (m := _RATE.match(v)) and int(m.group(1)) and int(m.group(2)):
        f = Fraction(int(m.group(1)), int(m.group(2)))
        return f"{f.numerator}/{f.denominator}"
    return None


def _rotation(stream: Mapping[str, Any]) -> int:
    """Counter-clockwise display rotation from the display matrix, else the legacy tag."""
    side = stream.get("side_data_list")
    if isinstance(side, list):
        for entry in side:
            if isinstance(entry, dict) and isinstance(entry.get("rotation"), int | float):
                return round(float(entry["rotation"]) / 90) * 90 % 360
    tags = stream.get("tags")
    if isinstance(tags, dict) and (tag := _int(tags, "rotate")) is not None:
        return -round(tag / 90) * 90 % 360  # the tag is clockwise
    return 0


def _dict(v: object) -> Mapping[str, Any]:
    return v if isinstance(v, dict) else {}


def parse_probe(
    data: object, size_bytes: int, *, max_duration_s: int = MAX_DURATION_S
) -> ProbeInfo:
    """Check and reduce ffprobe's JSON (``-show_format -show_streams``) to a :class:`ProbeInfo`."""
    fmt = _dict(_dict(data).get("format"))
    format_name = _str(fmt, "format_name") or ""
    demuxer = format_name.split(",")[0]
    if demuxer not in ALLOWED_DEMUXERS:
        raise MediaError(f"format {demuxer or 'unknown'} not allowed")
    raw_streams = _dict(data).get("streams")
    streams: list[StreamInfo] = []
    video: Mapping[str, Any] | None = None
    audio: Mapping[str, Any] | None = None
    for item in raw_streams if isinstance(raw_streams, list) else []:
        s = _dict(item)
        index, kind, codec = _int(s, "index"), _str(s, "codec_type", 16), _str(s, "codec_name", 32)
        if index is None or kind is None:
            continue
        pic = _int(_dict(s.get("disposition")), "attached_pic") == 1
        streams.append(StreamInfo(index, kind, codec or "unknown", pic))
        if kind == "video":
            w, h = _int(s, "width") or 0, _int(s, "height") or 0
            if w > MAX_DIMENSION or h > MAX_DIMENSION:
                raise MediaError(f"declared dimensions {w}x{h} exceed {MAX_DIMENSION}")
            if video is None and not pic and codec and w > 0 and h > 0:
                video = s
        elif kind == "audio" and audio is None and codec and (_int(s, "sample_rate") or 0) > 0:
            audio = s
    if video is None and audio is None:
        raise MediaError("not a media file (no audio or video stream)")
    duration_ms = _seconds_ms(fmt, "duration")
    if duration_ms is None:
        declared = [_seconds_ms(s, "duration") for s in (video, audio) if s is not None]
        duration_ms = max((d for d in declared if d is not None), default=None)
    _check_duration(duration_ms, size_bytes, max_duration_s)
    tags = _dict(fmt.get("tags"))
    device: dict[str, str] = {}
    for source in (tags, _dict(_dict(video).get("tags")), _dict(_dict(audio).get("tags"))):
        lowered = {str(k).lower(): v for k, v in source.items()}
        for key in _DEVICE_KEYS:
            if key not in device and (value := _str(lowered, key)) is not None:
                device[key] = value
    creation = _str(tags, "creation_time", 64) or _str(
        _dict(_dict(video).get("tags")), "creation_time", 64
    )
    info = ProbeInfo(
        format_name=format_name,
        demuxer=demuxer,
        size_bytes=size_bytes,
        duration_ms=duration_ms,
        bit_rate=_int(fmt, "bit_rate"),
        streams=tuple(streams),
        creation_time=creation,
        device_tags=tuple(sorted(device.items())),
    )
    if video is not None:
        info = _with_video(info, video)
    if audio is not None:
        info = _with_audio(info, audio)
    return info


def _check_duration(duration_ms: int | None, size_bytes: int, max_duration_s: int) -> None:
    if duration_ms is None:
        return
    hours = duration_ms / 3_600_000
    if duration_ms > max_duration_s * 1000:
        raise MediaError(f"declared duration {hours:.1f} h exceeds {max_duration_s / 3600:g} h")
    if duration_ms > 60_000 and size_bytes * 8 * 1000 < MIN_BITRATE * duration_ms:
        raise MediaError(
            f"declared duration {hours:.1f} h is impossible for a {size_bytes}-byte file"
        )


def _with_video(info: ProbeInfo, s: Mapping[str, Any]) -> ProbeInfo:
    return replace(
        info,
        video_index=_int(s, "index"),
        video_codec=_str(s, "codec_name", 32),
        video_profile=_str(s, "profile", 64),
        pix_fmt=_str(s, "pix_fmt", 32),
        width=_int(s, "width"),
        height=_int(s, "height"),
        rotation=_rotation(s),
        fps=_rate(s.get("avg_frame_rate")) or _rate(s.get("r_frame_rate")),
    )


def _with_audio(info: ProbeInfo, s: Mapping[str, Any]) -> ProbeInfo:
    return replace(
        info,
        audio_index=_int(s, "index"),
        audio_codec=_str(s, "codec_name", 32),
        sample_rate=_int(s, "sample_rate"),
        channels=_int(s, "channels"),
    )
