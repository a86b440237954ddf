"""Render a redacted copy of an original, in the sandbox, from a validated spec.

Guarantees of :func:`make_redacted` (besides those of every rendition, see
:mod:`ingest.media.render`: the original opened only confined and never written, output to a
hidden part file renamed into place only once validated, mode 0600, exact argv and ffmpeg
version returned):

* The filter graph is built through ffmpeg-python from :mod:`ingest.media.redactplan`: the
  picture padded to even size and made yuv420p, then each patch cut out, made unrecognisable
  and laid back while its box is active, then the full-frame ranges, all on the original's
  upright pixels; audio frames overlapping a mute range multiplied by zero, and samples in a
  tone range replaced by the tone (``aeval``) in the same graph.
* The spec is checked against the probed picture and duration first
  (``vault.redaction.spec.parse_spec`` with the frame): boxes outside the picture, times past
  the end, or boxes on a recording without video are :class:`~vault.redaction.spec.InvalidSpec`.
* Output: H.264 (CRF 18, ``veryfast``, yuv420p) and AAC 192k in MP4, as a clip is made; an
  audio-only original gives an M4A. Only the first video and audio streams are kept; metadata
  and chapters are dropped (an original's tags may name people too).
"""

from __future__ import annotations

import asyncio
import os
from functools import partial
from pathlib import Path
from typing import Any

import ffmpeg

from ingest.media.ffargs import GLOBAL_ARGS, file_url, input_options
from ingest.media.plan import _aac
from ingest.media.probe import ProbeInfo
from ingest.media.redactplan import (
    PREPARE,
    effect_filters,
    enable_expr,
    mute_expr,
    mute_frame_samples,
    patches,
    tone_expr,
)
from ingest.media.render import (
    Rendition,
    _validate,
    default_timeout,
    finish_part,
    part_and_final,
)
from ingest.media.sandbox import Limits, run
from ingest.media.tools import Tools, ffmpeg_version
from vault.redaction.spec import Frame, InvalidSpec, Spec, parse_spec, spec_json

__all__ = ["OUTPUT_OPTIONS", "check_against", "make_redacted", "redaction_argv"]

#: Encoder settings of every redacted copy (those of a clip).
OUTPUT_OPTIONS: dict[str, str] = {
    "c:v": "libx264",
    "preset": "veryfast",
    "pix_fmt": "yuv420p",
    "crf": "18",
    "map_metadata": "-1",
    "map_chapters": "-1",
    "movflags": "+faststart",
    "f": "mp4",
}


def check_against(spec: Spec, info: ProbeInfo) -> Spec:
    """``spec`` re-validated against the probed original (see module); returns it."""
    frame = Frame(info.display_width, info.display_height, info.duration_ms)
    checked = parse_spec(spec_json(spec), frame)
    if info.video_index is None and spec.has_video_work:
        field = "boxes" if spec.boxes else "frame_ranges"
        raise InvalidSpec([(field, "the recording has no video")])
    if info.audio_index is None and spec.has_audio_work:
        field = "mute_ranges" if spec.mute_ranges else "tone_ranges"
        raise InvalidSpec([(field, "the recording has no audio")])
    return checked


def _video(stream: Any, spec: Spec, info: ProbeInfo) -> Any:
    for name, kwargs in PREPARE:
        stream = stream.filter(name, **kwargs)
    width, height = info.display_width or 0, info.display_height or 0
    for patch in patches(spec, width, height):
        split = stream.filter_multi_output("split")
        main, part = split[0], split[1]
        part = part.filter("crop", w=str(patch.w), h=str(patch.h), x=patch.x, y=patch.y)
        for name, kwargs in effect_filters(patch.effect, patch.w, patch.h):
            part = part.filter(name, enable=patch.enable, **kwargs)
        stream = ffmpeg.overlay(main, part, x=patch.x, y=patch.y, enable=patch.enable)
    if spec.frame_ranges:
        enable = enable_expr(spec.frame_ranges)
        for name, kwargs in effect_filters(spec.effect, width, height):
            stream = stream.filter(name, enable=enable, **kwargs)
    return stream


def _audio(stream: Any, spec: Spec, info: ProbeInfo) -> Any:
    if spec.mute_ranges:
        n = mute_frame_samples(info.sample_rate)
        stream = stream.filter("asetnsamples", n=str(n), p="0")
        enable = mute_expr(spec.mute_ranges, info.sample_rate)
        stream = stream.filter("volume", volume="0", enable=enable)
    if spec.tone_ranges:
        stream = stream.filter("aeval", exprs=tone_expr(spec.tone_ranges), c="same")
    return stream


def redaction_argv(
    src: str | os.PathLike[str], out: str, spec: Spec, info: ProbeInfo, tools: Tools, threads: int
) -> list[str]:
    """The whole ffmpeg argv that renders ``spec`` from ``src`` into ``out`` (a URL)."""
    inp = ffmpeg.input(file_url(src), **input_options(demuxer=info.demuxer, threads=threads))
    streams: list[Any] = []
    options: dict[str, str] = {}
    if info.video_index is not None:
        streams.append(_video(inp[str(info.video_index)], spec, info))
        options.update(OUTPUT_OPTIONS)
    else:
        options.update(map_metadata="-1", map_chapters="-1", movflags="+faststart", f="mp4")
    if info.audio_index is not None:
        streams.append(_audio(inp[str(info.audio_index)], spec, info))
        aac = _aac(info, "192k")
        options.update({k.lstrip("-"): v for k, v in zip(aac[::2], aac[1::2], strict=True)})
    options["threads"] = str(threads)
    graph = ffmpeg.output(*streams, out, **options)
    n = str(threads)
    head = ["-filter_threads", n, "-filter_complex_threads", n, "-y"]
    return [tools.ffmpeg, *GLOBAL_ARGS, *head, *graph.get_args()]


async def make_redacted(
    src: str | os.PathLike[str],
    dst_dir: str | os.PathLike[str],
    spec: Spec,
    info: ProbeInfo,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - the child's wall limit, not ours
    tools: Tools | None = None,
    limits: Limits | None = None,
) -> Rendition:
    """The redacted copy of ``src`` per ``spec`` (see module); raises ``InvalidSpec`` for a spec
    that does not fit the recording, :class:`~ingest.media.errors.MediaError` for the rest."""
    tools = tools or Tools()
    spec = check_against(spec, info)
    wall = timeout if timeout is not None else default_timeout("clip", info.duration_ms)
    limits = (limits or Limits()).with_wall(wall)
    ext = "mp4" if info.video_index is not None else "m4a"
    part, final = part_and_final(dst_dir, "redacted", ext)
    argv = redaction_argv(src, file_url(part), spec, info, tools, limits.threads)
    check = partial(_validate, source=info, tools=tools, limits=limits, expect_video=info.has_video)
    async with finish_part(part, final):
        result = await run(argv, limits=limits)
        await check(part)
    version = await asyncio.to_thread(ffmpeg_version, tools)
    media_type = "video/mp4" if ext == "mp4" else "audio/mp4"
    return Rendition(Path(final), "redacted", result.argv, version, media_type, "filter-graph")
