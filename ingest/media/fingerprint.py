"""Fingerprint of an original: per-segment hashes of its decoded content, plus a perceptual sketch.

One ffmpeg run decodes the original once; a filter graph splits the decoded frames into five
outputs (sandbox sinks) that :mod:`ingest.media.fpstreams` consumes while ffmpeg runs:

1. every video frame, raw, in the source's own pixel format and size (no rotation, no
   scaling, no frame dropped or duplicated: ``-noautorotate``, passthrough timing). For the
   common planar formats (:data:`Y4M_PIX_FMTS`) this is a YUV4MPEG2 stream of
   ``wrapped_avframe`` packets, which ffmpeg writes straight from the decoded frame (the
   ``rawvideo`` encoder would first copy every frame into a packet, an avoidable copy of
   every frame: docs/performance.md); :class:`~ingest.media.fpstreams.Y4MFrameDigests` drops its
   header lines, so the hashed bytes are the same packed planes either way;
2. the same frames turned upright and reduced to a 16x9 grid of mean luma (a 1/8 point
   sampling to 240x135, then area averages of 15x15 samples: cheap and still an average);
3. their timestamps (``framecrc`` of stream 2, in the source time base);
4. the audio as s16le PCM at the source rate and channel count;
5. the audio as 8 kHz mono s16, for a loudness envelope (RMS per 100 ms).

What the result guarantees is stated in :mod:`ingest.media.fpmodel`; in short:

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

import asyncio
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.media.errors import MediaError
from ingest.media.ffargs import GLOBAL_ARGS, input_args
from ingest.media.fpalign import AlignedAudio
from ingest.media.fpmodel import EMPTY, ENVELOPE_MS, Fingerprint, Segment, merkle_root
from ingest.media.fpstreams import (
    GRID_CELLS,
    AudioSegments,
    Chunks,
    Envelope,
    FrameCrcTimes,
    FrameDigests,
    SegmentPart,
    VideoSegments,
    Y4MFrameDigests,
)
from ingest.media.pixfmt import frame_size
from ingest.media.probe import MAX_DURATION_S, ProbeInfo
from ingest.media.render import Rendition
from ingest.media.sandbox import Consumer, Limits, run, sink
from ingest.media.tools import Tools, ffmpeg_version

__all__ = [
    "EMPTY",
    "Fingerprint",
    "Segment",
    "fingerprint",
    "fingerprint_copy",
    "make_fingerprint",
    "merkle_root",
]

ENVELOPE_RATE = 8000
#: Filters (each ending in a comma) that turn decoded pixels upright, by probed rotation.
UPRIGHT = {90: "transpose=cclock,", 180: "hflip,vflip,", 270: "transpose=clock,"}
GRID_FILTER = "scale=240:135:flags=neighbor,scale=16:9:flags=area,format=gray"
#: Pixel formats whose frames go out as YUV4MPEG2 (see module); others as ``rawvideo``.
Y4M_PIX_FMTS = frozenset({"gray", "yuv420p", "yuv422p", "yuv444p"})


# --------------------------------------------------------------------------- decoding


def _passthrough(version: str) -> tuple[list[str], list[str]]:
    """(global args, per-video-output args) that keep every frame with its own timestamp."""
    m = re.match(r"^(\d+)\.(\d+)", version)
    if m and (int(m.group(1)), int(m.group(2))) < (5, 1):
        return ["-vsync", "passthrough"], []
    return [], ["-fps_mode", "passthrough"]


async def _exact_frame_size(
    src: str | os.PathLike[str], info: ProbeInfo, tools: Tools, limits: Limits
) -> int:
    """Known pixel formats are computed; others are measured by decoding one frame."""
    if not (info.pix_fmt and info.width and info.height):
        raise MediaError("video stream without pixel format or size")
    size = frame_size(info.pix_fmt, info.width, info.height)
    if size is not None:
        return size
    counted = [0]

    def count(chunk: memoryview) -> None:
        counted[0] += len(chunk)

    argv = [
        tools.ffmpeg,
        *GLOBAL_ARGS,
        *input_args(src, demuxer=info.demuxer, threads=1, before=["-noautorotate"]),
        *("-map", f"0:{info.video_index}", "-frames:v", "1", "-pix_fmt", info.pix_fmt),
        *("-s", f"{info.width}x{info.height}", "-f", "rawvideo", sink(0)),
    ]
    await run(argv, limits=limits.with_wall(min(limits.wall_s, 60.0)), sinks=[count])
    if counted[0] <= 0:
        raise MediaError("video stream has no decodable frame")
    return counted[0]


def _video_args(
    info: ProbeInfo, per_video: list[str], first_sink: int, taps: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """Graph parts and outputs: exact frames, upright luma grids, grid timestamps; ``taps``
    name further copies of the decoded frames (labels without brackets) for other outputs."""
    rotate = UPRIGHT.get(info.rotation, "")
    more = "".join(f"[{t}]" for t in taps)
    graph = [
        f"[0:{info.video_index}]split={2 + len(taps)}[ve][vt]{more}",
        f"[vt]{rotate}{GRID_FILTER},split=2[g1][g2]",
    ]
    exact = ["-pix_fmt", str(info.pix_fmt), "-s", f"{info.width}x{info.height}"]
    raw = ["-c:v", "rawvideo"]
    if info.pix_fmt in Y4M_PIX_FMTS:
        frames = ["-c:v", "wrapped_avframe", "-f", "yuv4mpegpipe"]
    else:
        frames = [*raw, "-avioflags", "direct", "-f", "rawvideo"]
    outputs = [
        *("-map", "[ve]", *per_video, *exact, *frames, sink(first_sink)),
        *("-map", "[g1]", *per_video, *raw, "-f", "rawvideo", sink(first_sink + 1)),
        *("-map", "[g2]", *per_video, "-enc_time_base", "-1", *raw),
        *("-f", "framecrc", sink(first_sink + 2)),
    ]
    return graph, outputs


def _audio_args(info: ProbeInfo, first_sink: int) -> tuple[list[str], list[str]]:
    """Graph parts and outputs: exact s16le PCM, 8 kHz mono for the loudness envelope."""
    graph = [
        f"[0:{info.audio_index}]asplit=2[ae][am]",
        f"[am]aresample={ENVELOPE_RATE},aformat=sample_fmts=s16:channel_layouts=mono[m]",
    ]
    pcm = ["-c:a", "pcm_s16le"]
    outputs = [
        *("-map", "[ae]", *pcm, "-ar", str(info.sample_rate), "-ac", str(info.channels)),
        *("-f", "s16le", sink(first_sink)),
        *("-map", "[m]", *pcm, "-f", "s16le", sink(first_sink + 1)),
    ]
    return graph, outputs


async def fingerprint(
    src: str | os.PathLike[str],
    info: ProbeInfo,
    *,
    segment_ms: int = 1000,
    tools: Tools | None = None,
    limits: Limits | None = None,
) -> Fingerprint:
    """Decode ``src`` once and fingerprint it (see module). Raises :class:`MediaError`.

    ``limits`` default: the standard limits with a wall time of 60 s + 4 x the duration.
    """
    fp, _, _ = await _fingerprint(src, info, segment_ms, tools or Tools(), limits)
    return fp


async def fingerprint_copy(
    src: str | os.PathLike[str],
    info: ProbeInfo,
    original: Fingerprint,
    *,
    tools: Tools | None = None,
    limits: Limits | None = None,
) -> tuple[Fingerprint, int]:
    """Fingerprint a copy to compare with ``original``: same segment length, and its audio
    aligned on the original's decoded samples (:mod:`ingest.media.fpalign`).

    Returns the fingerprint and the audio shift in samples (positive: the copy's decoded
    audio has that many samples before the original's first, left out of its segments;
    negative: it lacks the original's first samples; 0: no shift or none found).
    """
    tools = tools or Tools()
    fp, _, shift = await _fingerprint(
        src, info, original.segment_ms, tools, limits, align_to=original
    )
    return fp, shift


def _reference(info: ProbeInfo, original: Fingerprint | None) -> list[tuple[bytes, int]]:
    """The original's (audio hash, samples) per segment when its PCM can equal the copy's."""
    audio = dict(original.audio) if original is not None else {}
    if original is None or (audio.get("sample_rate"), audio.get("channels")) != (
        info.sample_rate,
        info.channels,
    ):
        return []
    return [(s.audio_sha256, s.samples) for s in original.segments]


@dataclass
class FingerprintParts:
    """What the fingerprint adds to one ffmpeg run: filter graph parts (``;``-joined into
    ``-filter_complex``), outputs writing to sinks ``first_sink``… and their consumers, and
    the global arguments and input options it needs. Call :meth:`finish` once the run has
    ended without error."""

    graph: list[str]
    outputs: list[str]
    sinks: list[Consumer]
    global_args: list[str]
    before_input: list[str]
    version: str
    _done: Callable[[], tuple[Fingerprint, int]]

    def finish(self) -> tuple[Fingerprint, int]:
        """The fingerprint and the audio shift (see :func:`fingerprint_copy`)."""
        return self._done()


def fingerprint_limits(info: ProbeInfo, base: Limits | None = None) -> Limits:
    """Limits of a fingerprint run: ``base`` with a wall time of 60 s + 4 x the duration."""
    return (base or Limits()).with_wall(60.0 + 4.0 * (info.duration_ms or 0) / 1000)


async def fingerprint_parts(
    src: str | os.PathLike[str],
    info: ProbeInfo,
    segment_ms: int,
    tools: Tools,
    limits: Limits,
    *,
    align_to: Fingerprint | None = None,
    first_sink: int = 0,
    video_taps: Sequence[str] = (),
) -> FingerprintParts:
    """The fingerprint's share of an ffmpeg run over ``src`` (see module and
    :class:`FingerprintParts`). Raises :class:`MediaError` when nothing can be fingerprinted.

    ``video_taps`` (labels) are further outputs of the split of the decoded video, for other
    renditions made in the same run; they exist only when the fingerprint has video.
    """
    if segment_ms < 100:
        raise ValueError("segment_ms must be at least 100")
    version = await asyncio.to_thread(ffmpeg_version, tools)
    global_extra, per_video = _passthrough(version)
    declared = info.duration_ms or MAX_DURATION_S * 1000
    max_segments = (2 * declared + 60_000) // segment_ms + 2
    graph: list[str] = []
    outputs: list[str] = []
    sinks: list[Consumer] = []
    video: VideoSegments | None = None
    finishers: list[FrameDigests | Y4MFrameDigests | Chunks | FrameCrcTimes | AlignedAudio] = []
    if info.video_index is not None and not (info.pix_fmt and info.width and info.height):
        raise MediaError("video stream without a declared pixel format or size")
    if info.audio_index is not None and not (info.sample_rate and info.channels):
        raise MediaError("audio stream without a declared sample rate or channel count")
    if info.video_index is not None and info.pix_fmt and info.width and info.height:
        video = VideoSegments(segment_ms, max_segments)
        times = video.times
        size = await _exact_frame_size(src, info, tools, limits)
        y4m = info.pix_fmt in Y4M_PIX_FMTS
        digests = (Y4MFrameDigests if y4m else FrameDigests)(size, video.add_digest)
        grids = Chunks(GRID_CELLS, video.add_grid)
        finishers += [digests, grids, times]
        g, o = _video_args(info, per_video, first_sink + len(sinks), video_taps)
        graph += g
        outputs += o
        sinks += [digests, grids, times]
    audio: AudioSegments | None = None
    aligned: AlignedAudio | None = None
    envelope = Envelope(ENVELOPE_RATE * ENVELOPE_MS // 1000)
    if info.audio_index is not None and info.sample_rate and info.channels:
        audio = AudioSegments(info.sample_rate, info.channels, segment_ms, max_segments)
        g, o = _audio_args(info, first_sink=first_sink + len(sinks))
        graph += g
        outputs += o
        if align_to is not None:
            aligned = AlignedAudio(audio, info.channels, _reference(info, align_to))
            finishers.append(aligned)
            sinks += [aligned, envelope]
        else:
            sinks += [audio, envelope]
    if not sinks:
        raise MediaError("nothing to fingerprint: no usable audio or video stream")

    def done() -> tuple[Fingerprint, int]:
        for part in finishers:
            part.finish()
        video_parts_done = video.finish() if video is not None else []
        audio_parts = audio.finish() if audio is not None else []
        if video is not None and not video_parts_done:
            raise MediaError("video stream has no decodable frame")
        rms = envelope.finish()
        fp = _assemble(info, segment_ms, video, video_parts_done, audio, audio_parts, rms, version)
        return fp, aligned.shift if aligned is not None else 0

    return FingerprintParts(graph, outputs, sinks, global_extra, ["-noautorotate"], version, done)


async def _fingerprint(
    src: str | os.PathLike[str],
    info: ProbeInfo,
    segment_ms: int,
    tools: Tools,
    limits: Limits | None,
    align_to: Fingerprint | None = None,
) -> tuple[Fingerprint, tuple[str, ...], int]:
    limits = limits or fingerprint_limits(info)
    parts = await fingerprint_parts(src, info, segment_ms, tools, limits, align_to=align_to)
    argv = [
        tools.ffmpeg,
        *GLOBAL_ARGS,
        *parts.global_args,
        *("-filter_complex_threads", "1"),
        *input_args(src, demuxer=info.demuxer, threads=limits.threads, before=parts.before_input),
        *("-filter_complex", ";".join(parts.graph)),
        *parts.outputs,
    ]
    result = await run(argv, limits=limits, sinks=parts.sinks)
    fp, shift = parts.finish()
    return fp, result.argv, shift


def _assemble(
    info: ProbeInfo,
    segment_ms: int,
    video: VideoSegments | None,
    video_parts: list[SegmentPart],
    audio: AudioSegments | None,
    audio_parts: list[SegmentPart],
    rms: list[int],
    version: str,
) -> Fingerprint:
    n = max(len(video_parts), len(audio_parts))
    per_segment: list[list[int]] = [[] for _ in range(n)]
    for j, value in enumerate(rms):
        k = j * ENVELOPE_MS // segment_ms
        if k < n:
            per_segment[k].append(value)
    none = SegmentPart(EMPTY, 0)
    segments = tuple(
        Segment(
            (v := video_parts[i] if i < len(video_parts) else none).sha256,
            (a := audio_parts[i] if i < len(audio_parts) else none).sha256,
            v.count,
            a.count,
            v.grid,
            tuple(per_segment[i]),
        )
        for i in range(n)
    )
    vmeta: tuple[tuple[str, int | str], ...] = ()
    if video is not None and info.pix_fmt and info.width and info.height:
        vmeta = (
            ("frames", video.frames),
            ("height", info.height),
            ("last_ms", video.last_ms),
            ("pix_fmt", info.pix_fmt),
            ("rotation", info.rotation),
            ("width", info.width),
        )
    ameta: tuple[tuple[str, int], ...] = ()
    if audio is not None and info.sample_rate and info.channels:
        ameta = (
            ("channels", info.channels),
            ("sample_rate", info.sample_rate),
            ("samples", audio.samples),
        )
    return Fingerprint(segment_ms, vmeta, ameta, segments, merkle_root(segments), version)


async def make_fingerprint(
    src: str | os.PathLike[str],
    dst_dir: str | os.PathLike[str],
    info: ProbeInfo,
    *,
    segment_ms: int = 1000,
    tools: Tools | None = None,
    limits: Limits | None = None,
) -> tuple[Rendition, Fingerprint]:
    """:func:`fingerprint`, written to ``dst_dir/fingerprint.json`` (canonical, mode 0600)."""
    tools = tools or Tools()
    fp, argv, _ = await _fingerprint(src, info, segment_ms, tools, limits)
    return await write_fingerprint(fp, dst_dir, argv), fp


async def write_fingerprint(
    fp: Fingerprint,
    dst_dir: str | os.PathLike[str],
    argv: tuple[str, ...],
    *,
    method: str = "decode",
    outputs: tuple[tuple[str, str], ...] = (),
) -> Rendition:
    """Write ``fp`` to ``dst_dir/fingerprint.json`` (canonical, mode 0600) as a rendition made
    by ``argv`` (``outputs``: see :class:`~ingest.media.render.Rendition`)."""
    final = Path(dst_dir) / "fingerprint.json"
    part = Path(dst_dir) / f".fingerprint.{secrets.token_hex(4)}.part"
    data = fp.to_bytes()

    def write() -> None:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        part.replace(final)

    await asyncio.to_thread(write)
    media_type = "application/json"
    return Rendition(final, "fingerprint", argv, fp.ffmpeg, media_type, method, outputs)
