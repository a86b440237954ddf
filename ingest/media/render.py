"""Make renditions of an original: playback proxy, poster, frame-exact clip.

Guarantees of :func:`make_proxy`, :func:`make_poster` and :func:`make_clip`:

* The original is opened only through the sandbox, with its probed demuxer forced
  (``-f``) on top of the format whitelist, and is never written.
* ffmpeg writes to a hidden temporary name in ``dst_dir``; only after the output has been
  validated is it renamed to its final name (``proxy.mp4``/``proxy.m4a``, ``poster.jpg``,
  ``clip-<start>-<end>.mp4``/``.m4a``). On any failure nothing is left in ``dst_dir``.
* Validation: ffprobe must read the output with the expected streams (a video stream for a
  video source, an audio stream when the source has one); a proxy must additionally decode
  completely (``-xerror … -f null -``) with no error printed.
* The file is made mode 0600 (the service's own files are private; see DESIGN §8).
* The returned :class:`Rendition` carries the exact argv that produced the file and the ffmpeg
  version, for the ``derived`` ledger entry.

Wall-time limits: ``timeout`` (seconds) bounds the main ffmpeg run; when omitted it is derived
from the declared duration (see :func:`default_timeout`). Validation runs get their own limit
of 30 s plus the duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import ffmpeg

from ingest.media.errors import MediaError
from ingest.media.ffargs import GLOBAL_ARGS, file_url, input_args, input_options
from ingest.media.plan import (
    PosterPlan,
    ProxyKind,
    ms_to_seconds,
    plan_clip,
    plan_poster,
    plan_proxy,
)
from ingest.media.probe import ProbeInfo, parse_probe
from ingest.media.sandbox import Limits, run
from ingest.media.tools import Tools, ffmpeg_version

__all__ = [
    "Check",
    "NoPicture",
    "Rendition",
    "default_timeout",
    "ffmpeg_version",
    "make_clip",
    "make_poster",
    "make_proxy",
    "part_and_final",
    "place",
    "poster_check",
    "proxy_checks",
]

# wall seconds = base + per_second * declared duration, by kind of work
_TIMEOUTS: dict[str, tuple[float, float]] = {
    "remux": (30.0, 0.5),
    "remux-video": (60.0, 2.0),
    "audio": (60.0, 2.0),
    "transcode": (60.0, 8.0),
    "poster": (30.0, 0.25),
    "clip": (60.0, 8.0),
    "check": (30.0, 1.0),
}


@dataclass(frozen=True)
class Rendition:
    """A validated derived file. ``args`` is the exact argv (argv[0] resolved) that made it.

    ``outputs`` maps the output URLs in ``args`` to the placeholders :meth:`portable_args`
    puts in their place (``{output}`` for this rendition's own, ``{poster}``… for the others
    of a run that made several); empty means the last argument is the only output.
    """

    path: Path
    kind: str
    args: tuple[str, ...]
    ffmpeg_version: str
    media_type: str
    method: str = ""
    outputs: tuple[tuple[str, str], ...] = ()

    def portable_args(self, source: str | os.PathLike[str]) -> list[str]:
        """``args`` with the input and output URLs replaced by ``{input}``, ``{output}``…"""
        names = {file_url(source): "{input}"}
        names.update(self.outputs or ((self.args[-1], "{output}"),))
        return [names.get(a, a) for a in self.args]


def default_timeout(kind: str, duration_ms: int | None) -> float:
    """Wall-time limit for one run of ``kind`` on a recording of ``duration_ms``."""
    base, per_second = _TIMEOUTS[kind]
    return base + per_second * (duration_ms or 0) / 1000


def _threads(limits: Limits) -> list[str]:
    n = str(limits.threads)
    return ["-filter_threads", n, "-filter_complex_threads", n]


Check = Callable[[Path], Awaitable[None]]


async def _render(
    src: str | os.PathLike[str],
    dst_dir: str | os.PathLike[str],
    name: str,
    ext: str,
    info: ProbeInfo,
    *,
    before: Sequence[str],
    output_args: Sequence[str],
    limits: Limits,
    tools: Tools,
    checks: Sequence[Check],
) -> tuple[Path, tuple[str, ...]]:
    """Run ffmpeg into a hidden part file, run ``checks`` on it, then rename it into place."""
    part, final = part_and_final(dst_dir, name, ext)
    argv = [
        tools.ffmpeg,
        *GLOBAL_ARGS,
        *_threads(limits),
        "-y",
        *input_args(src, demuxer=info.demuxer, threads=limits.threads, before=before),
        *output_args,
        "-threads",
        str(limits.threads),
        file_url(part),
    ]
    async with finish_part(part, final):
        result = await run(argv, limits=limits)
        for check in checks:
            await check(part)
    return final, result.argv


def part_and_final(dst_dir: str | os.PathLike[str], name: str, ext: str) -> tuple[Path, Path]:
    """(hidden part file, final name) of a rendition written into ``dst_dir``."""
    final = Path(dst_dir) / f"{name}.{ext}"
    return Path(dst_dir) / f".{name}.{secrets.token_hex(4)}.part", final


async def place(part: Path, final: Path, checks: Sequence[Check]) -> None:
    """Run ``checks`` on ``part`` (written already), then make it private and rename it to
    ``final``; the part file is gone afterwards whatever happened."""
    async with finish_part(part, final):
        for check in checks:
            await check(part)


@contextlib.asynccontextmanager
async def finish_part(part: Path, final: Path) -> AsyncIterator[None]:
    """Around writing and checking ``part``: on success make it 0600 and rename it to ``final``;
    whatever happens, leave no part file behind."""
    try:
        yield
        await asyncio.to_thread(part.chmod, 0o600)
        await asyncio.to_thread(os.replace, part, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(part.unlink)


def proxy_checks(
    info: ProbeInfo, has_video: bool, tools: Tools, limits: Limits, *, full_decode: bool = True
) -> list[Check]:
    """What a proxy must pass: ffprobe reads the expected streams; with ``full_decode``, every
    frame decodes without an error."""
    checks: list[Check] = [
        partial(_validate, source=info, tools=tools, limits=limits, expect_video=has_video)
    ]
    if full_decode:
        checks.append(partial(_decode_check, source=info, tools=tools, limits=limits))
    return checks


def poster_check(tools: Tools, limits: Limits, seek_ms: int) -> Check:
    """What a poster must pass: one non-empty JPEG picture (else :class:`NoPicture` when
    empty, :class:`MediaError` when not a JPEG)."""
    return partial(_validate_jpeg, tools=tools, limits=limits, seek_ms=seek_ms)


async def _validate(
    path: Path, *, source: ProbeInfo, tools: Tools, limits: Limits, expect_video: bool
) -> None:
    check = limits.with_wall(default_timeout("check", source.duration_ms))
    argv = [
        tools.ffprobe,
        "-v",
        "error",
        *input_args(path, demuxer="mov", allowed=("mov",)),
        "-show_format",
        "-show_streams",
        "-of",
        "json",
    ]
    result = await run(argv, limits=check, stdout_limit=1 << 20)
    size = (await asyncio.to_thread(path.stat)).st_size
    try:
        info = parse_probe(json.loads(result.stdout), size)
    except MediaError as exc:  # about our output, not the original: say so
        raise MediaError(f"the rendition made is unusable: {exc.reason}") from exc
    if expect_video and not info.has_video:
        raise MediaError("rendition has no video stream")
    if source.has_audio and not info.has_audio:
        raise MediaError("rendition has no audio stream")


async def _decode_check(path: Path, *, source: ProbeInfo, tools: Tools, limits: Limits) -> None:
    """Decode every frame of our own output; any error printed fails the rendition."""
    check = limits.with_wall(default_timeout("check", source.duration_ms))
    options = input_options(demuxer="mov", allowed=("mov",), threads=limits.threads)
    graph = ffmpeg.output(ffmpeg.input(file_url(path), **options), "-", f="null")
    argv = [tools.ffmpeg, *GLOBAL_ARGS, "-xerror", *graph.get_args()]
    result = await run(argv, limits=check)
    if result.stderr_tail.strip():
        raise MediaError("rendition does not decode cleanly")


async def make_proxy(
    src: str | os.PathLike[str],
    dst_dir: str | os.PathLike[str],
    info: ProbeInfo,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - the child's wall limit, not ours
    max_height: int = 720,
    full_decode: bool = True,
    tools: Tools | None = None,
    limits: Limits | None = None,
) -> Rendition:
    """A browser-playable proxy per :func:`ingest.media.plan.plan_proxy`, validated.

    ``full_decode=False`` skips the decode of the finished proxy (ffprobe still checks it).
    """
    tools = tools or Tools()
    plan = plan_proxy(info, max_height)
    wall = timeout if timeout is not None else default_timeout(plan.kind, info.duration_ms)
    limits = (limits or Limits()).with_wall(wall)
    checks = proxy_checks(info, plan.has_video, tools, limits, full_decode=full_decode)
    path, argv = await _render(
        src,
        dst_dir,
        "proxy",
        plan.ext,
        info,
        before=(),
        output_args=plan.output_args,
        limits=limits,
        tools=tools,
        checks=checks,
    )
    kind: ProxyKind = plan.kind
    version = await asyncio.to_thread(ffmpeg_version, tools)
    return Rendition(path, "proxy", argv, version, plan.media_type, kind)


async def make_poster(
    src: str | os.PathLike[str],
    dst_dir: str | os.PathLike[str],
    info: ProbeInfo,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - the child's wall limit, not ours
    tools: Tools | None = None,
    limits: Limits | None = None,
    seek_ms: int | None = None,
) -> Rendition:
    """An upright JPEG of the first frame at or after min(1 s, duration/2) (or ``seek_ms``);
    video only.

    The seek is output-side (see :func:`ingest.media.plan.plan_poster`). When no frame is
    decoded from there on (a declared duration longer than the pictures, say), the first
    decodable frame is taken instead (``method`` then says ``first-frame``). The JPEG is
    checked by ffprobe (it must parse as one JPEG picture with non-zero dimensions).
    Raises ``ValueError`` for a file without video (:func:`ingest.media.plan.plan_renditions`
    gives it no poster).
    """
    tools = tools or Tools()
    limits = (limits or Limits()).with_wall(
        timeout if timeout is not None else default_timeout("poster", info.duration_ms)
    )
    plan = plan_poster(info, seek_ms=seek_ms)
    method = "frame"
    try:
        path, argv = await _poster(src, dst_dir, info, plan, tools, limits)
    except NoPicture:
        if plan.seek_ms == 0:
            raise
        path, argv = await _poster(src, dst_dir, info, plan_poster(info, seek_ms=0), tools, limits)
        method = "first-frame"
    version = await asyncio.to_thread(ffmpeg_version, tools)
    return Rendition(path, "poster", argv, version, plan.media_type, method)


class NoPicture(MediaError):
    """ffmpeg wrote no picture (no frame decoded from the seek time on)."""


async def _poster(
    src: str | os.PathLike[str],
    dst_dir: str | os.PathLike[str],
    info: ProbeInfo,
    plan: PosterPlan,
    tools: Tools,
    limits: Limits,
) -> tuple[Path, tuple[str, ...]]:
    return await _render(
        src,
        dst_dir,
        "poster",
        plan.ext,
        info,
        before=(),
        output_args=plan.output_args,
        limits=limits,
        tools=tools,
        checks=[poster_check(tools, limits, plan.seek_ms)],
    )


async def _validate_jpeg(path: Path, *, tools: Tools, limits: Limits, seek_ms: int) -> None:
    if (await asyncio.to_thread(path.stat)).st_size == 0:
        raise NoPicture(f"no video frame decoded from {ms_to_seconds(seek_ms)} s on")
    argv = [
        tools.ffprobe,
        "-v",
        "error",
        *input_args(path, demuxer="jpeg_pipe", allowed=("jpeg_pipe",)),
        "-show_streams",
        "-of",
        "json",
    ]
    result = await run(argv, limits=limits.with_wall(30.0), stdout_limit=1 << 20)
    streams = json.loads(result.stdout).get("streams") or [{}]
    first = streams[0] if isinstance(streams[0], dict) else {}
    if first.get("codec_name") != "mjpeg" or not first.get("width") or not first.get("height"):
        raise MediaError("poster is not a JPEG picture")


async def make_clip(
    src: str | os.PathLike[str],
    dst_dir: str | os.PathLike[str],
    start_ms: int,
    end_ms: int,
    info: ProbeInfo,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - the child's wall limit, not ours
    tools: Tools | None = None,
    limits: Limits | None = None,
) -> Rendition:
    """Frame-exact clip of [start_ms, end_ms) per :func:`ingest.media.plan.plan_clip`.

    Method: ``-accurate_seek -ss START`` *before* ``-i`` plus a re-encode, so the clip starts
    at the first frame at or after START and ends before END (``end_ms`` is clamped to the
    duration). Raises ``ValueError`` for an empty or out-of-range range.
    """
    tools = tools or Tools()
    plan = plan_clip(info, start_ms, end_ms)
    wall = timeout if timeout is not None else default_timeout("clip", plan.duration_ms)
    limits = (limits or Limits()).with_wall(wall)
    check = partial(_validate, source=info, tools=tools, limits=limits, expect_video=info.has_video)
    path, argv = await _render(
        src,
        dst_dir,
        f"clip-{start_ms}-{start_ms + plan.duration_ms}",
        plan.ext,
        info,
        before=plan.input_args,
        output_args=plan.output_args,
        limits=limits,
        tools=tools,
        checks=[check],
    )
    method = "accurate-seek-reencode"
    version = await asyncio.to_thread(ffmpeg_version, tools)
    return Rendition(path, "clip", argv, version, plan.media_type, method)
