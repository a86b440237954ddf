"""What ffmpeg should do with a probed file: pure decisions, no I/O.

Every function here is a pure function of a :class:`ProbeInfo` and a few numbers, returning
the ffmpeg *output* options (everything between the input and the output URL). The render
module adds the confined input, the thread bound and the output path.

Guarantees of :func:`plan_proxy` — a browser-playable MP4 (H.264 yuv420p + AAC) or M4A:

* ``remux``: the source is H.264 4:2:0 in MP4/MOV, its shorter displayed side is at most
  ``max_height``, and its audio is AAC or absent: streams are copied (``-c copy``), never
  re-encoded, with ``+faststart``. Rotation metadata is kept; the player rotates.
* ``remux-video``: as ``remux`` but the audio is something else: video copied, audio to AAC.
* ``transcode``: anything else with video: libx264 ``veryfast`` CRF 23, yuv420p, scaled so
  the shorter side of the upright picture is at most ``max_height`` (720 means "720p" for
  landscape and portrait alike), aspect kept, both dimensions even; never upscaled. FFmpeg's
  autorotation makes the pixels upright first.
* ``audio``: no video (cover art is not video): AAC in M4A, copied when already AAC.
* Only the first usable video and audio streams are kept; metadata and chapters are dropped
  (the proxy serves playback, the original keeps the record).

:func:`plan_renditions` decides which standard renditions a probed file gets: a proxy and a
fingerprint always (there is something to play and to hash), a poster only when there is a
video stream (a poster is a picture of the recording; audio has none, and that is no
failure). :func:`plan_poster` seeks on the output side, after decoding from the start, so
containers without a seek index (MPEG-TS, MPEG-PS, raw streams) give the frame at the same
time as MP4 does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ingest.media.probe import ProbeInfo

__all__ = [
    "STANDARD",
    "ClipPlan",
    "PosterPlan",
    "ProxyKind",
    "ProxyPlan",
    "ms_to_seconds",
    "plan_clip",
    "plan_poster",
    "plan_proxy",
    "plan_renditions",
]

#: Every standard rendition, in the order they are made.
STANDARD: tuple[str, ...] = ("proxy", "poster", "fingerprint")
ProxyKind = Literal["remux", "remux-video", "transcode", "audio"]
BROWSER_PIX_FMTS = ("yuv420p", "yuvj420p")
X264 = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")
MP4_TAIL = ("-map_metadata", "-1", "-map_chapters", "-1", "-movflags", "+faststart", "-f", "mp4")
POSTER_MAX = 720


@dataclass(frozen=True)
class ProxyPlan:
    """A proxy decision: ``output_args`` go after the input, ``ext`` names the output file."""

    kind: ProxyKind
    output_args: tuple[str, ...]
    ext: str
    media_type: str

    @property
    def has_video(self) -> bool:
        return self.kind != "audio"


@dataclass(frozen=True)
class PosterPlan:
    """A poster: the first frame at or after ``seek_ms`` (output-side seek: ``output_args``
    start with ``-ss``), as one JPEG picture."""

    seek_ms: int
    output_args: tuple[str, ...]
    ext: str = "jpg"
    media_type: str = "image/jpeg"


@dataclass(frozen=True)
class ClipPlan:
    """A clip: ``input_args`` go before ``-i`` (accurate input seek), ``output_args`` after."""

    input_args: tuple[str, ...]
    output_args: tuple[str, ...]
    ext: str
    media_type: str
    duration_ms: int


def ms_to_seconds(ms: int) -> str:
    """Exact decimal seconds for ffmpeg, from integer milliseconds (no float rounding)."""
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    return f"{sign}{ms // 1000}.{ms % 1000:03d}"


def _aac(info: ProbeInfo, bitrate: str = "128k") -> tuple[str, ...]:
    args: tuple[str, ...] = ("-c:a", "aac", "-b:a", bitrate)
    if (info.channels or 0) > 2:
        args += ("-ac", "2")
    if (info.sample_rate or 0) > 48000:
        args += ("-ar", "48000")
    return args


def _maps(info: ProbeInfo, video: bool = True) -> tuple[str, ...]:
    maps: tuple[str, ...] = ()
    if video and info.video_index is not None:
        maps += ("-map", f"0:{info.video_index}")
    if info.audio_index is not None:
        maps += ("-map", f"0:{info.audio_index}")
    return maps


def scale_filter(info: ProbeInfo, max_short_side: int) -> str:
    """Scale the upright picture so its shorter side is at most ``max_short_side``, even dims."""
    w, h = info.display_width or 0, info.display_height or 0
    if min(w, h) > max_short_side:
        if w >= h:
            return f"scale=-2:{max_short_side}"
        return f"scale={max_short_side}:-2"
    return "scale=trunc(iw/2)*2:trunc(ih/2)*2"


def plan_proxy(info: ProbeInfo, max_height: int = 720) -> ProxyPlan:
    """Decide remux / remux-video / transcode / audio for a playback proxy (see module)."""
    if max_height < 2 or max_height % 2:
        raise ValueError("max_height must be a positive even number")
    if info.video_index is None:
        if info.audio_index is None:
            raise ValueError("nothing to play: no video and no audio stream")
        audio = ("-c:a", "copy") if info.audio_codec == "aac" else _aac(info)
        args = ("-map", f"0:{info.audio_index}", "-vn", *audio, *MP4_TAIL)
        return ProxyPlan("audio", args, "m4a", "audio/mp4")
    short = min(info.display_width or 0, info.display_height or 0)
    video_ok = (
        info.demuxer == "mov"
        and info.video_codec == "h264"
        and info.pix_fmt in BROWSER_PIX_FMTS
        and short <= max_height
    )
    audio_ok = info.audio_index is None or info.audio_codec == "aac"
    maps = _maps(info)
    if video_ok and audio_ok:
        return ProxyPlan("remux", (*maps, "-c", "copy", *MP4_TAIL), "mp4", "video/mp4")
    audio = _aac(info) if info.audio_index is not None else ()
    if video_ok:
        args = (*maps, "-c:v", "copy", *audio, *MP4_TAIL)
        return ProxyPlan("remux-video", args, "mp4", "video/mp4")
    vf = f"{scale_filter(info, max_height)},format=yuv420p"
    args = (*maps, "-vf", vf, *X264, "-crf", "23", *audio, *MP4_TAIL)
    return ProxyPlan("transcode", args, "mp4", "video/mp4")


def poster_seek_ms(info: ProbeInfo) -> int:
    """min(1 s, duration / 2); 0 when the duration is unknown."""
    return min(1000, (info.duration_ms or 0) // 2)


def plan_renditions(info: ProbeInfo) -> tuple[str, ...]:
    """The standard renditions that apply to ``info`` (see module), in :data:`STANDARD` order."""
    if info.video_index is None and info.audio_index is None:
        raise ValueError("no video and no audio stream")
    return tuple(k for k in STANDARD if k != "poster" or info.video_index is not None)


def plan_poster(
    info: ProbeInfo, max_side: int = POSTER_MAX, seek_ms: int | None = None
) -> PosterPlan:
    """One upright JPEG frame at ``seek_ms`` (default :func:`poster_seek_ms`); video only.

    The seek is on the output side: ffmpeg decodes from the start (at most a second, by
    default) and keeps the first frame at or after the time, counted from the file's start.
    An input-side seek would jump into an MPEG-TS/PS by timestamp, land between key frames
    and, in a short recording with one key frame, output nothing.
    """
    if info.video_index is None:
        raise ValueError("no video stream: audio gets no poster")
    seek = poster_seek_ms(info) if seek_ms is None else seek_ms
    jpeg = ("-frames:v", "1", "-c:v", "mjpeg", "-q:v", "3", "-f", "mjpeg")
    vf = f"{scale_filter(info, max_side)},format=yuvj420p"
    args = ("-ss", ms_to_seconds(seek), "-map", f"0:{info.video_index}", "-an", "-vf", vf, *jpeg)
    return PosterPlan(seek, args)


def plan_clip(info: ProbeInfo, start_ms: int, end_ms: int) -> ClipPlan:
    """Frame-exact clip of [start_ms, end_ms): input-side ``-ss`` with ``-accurate_seek``.

    FFmpeg seeks to the keyframe before ``start_ms``, decodes and discards everything before
    it, and ``-t`` ends the output before ``end_ms``; because the result is re-encoded
    (H.264 CRF 18 at source size, AAC 192k), it holds exactly the frames with presentation
    time in the range and the audio samples in it. Audio-only sources give an M4A.
    """
    if start_ms < 0 or end_ms <= start_ms:
        raise ValueError("need 0 <= start_ms < end_ms")
    if info.duration_ms is not None and start_ms >= info.duration_ms:
        raise ValueError("start_ms is past the end of the recording")
    before = ("-accurate_seek", "-ss", ms_to_seconds(start_ms))
    duration = end_ms - start_ms
    if info.duration_ms is not None:
        duration = min(duration, info.duration_ms - start_ms)
    audio = _aac(info, "192k") if info.audio_index is not None else ()
    timing = ("-t", ms_to_seconds(duration))
    if info.video_index is None:
        if info.audio_index is None:
            raise ValueError("no video and no audio stream")
        args = (*timing, "-map", f"0:{info.audio_index}", "-vn", *audio, *MP4_TAIL)
        return ClipPlan(before, args, "m4a", "audio/mp4", duration)
    vf = "scale=trunc(iw/2)*2:trunc(ih/2)*2,format=yuv420p"
    args = (*timing, *_maps(info), "-vf", vf, *X264, "-crf", "18", *audio, *MP4_TAIL)
    return ClipPlan(before, args, "mp4", "video/mp4", duration)
