"""Proxy, poster and fingerprint of an original from one decode: one sandboxed ffmpeg run.

:func:`make_renditions` opens the original once (confined as :mod:`ingest.media.ffargs`
says, with ``-noautorotate``) and decodes each stream once. The decoded video goes to a
``split`` in one filter graph that feeds the fingerprint's outputs
(:func:`ingest.media.fingerprint.fingerprint_parts`, unchanged), the proxy's scaler and
encoder, and the poster; the decoded audio feeds the fingerprint's ``asplit`` and, mapped
directly, the proxy's audio encoder (FFmpeg gives both the frames of the one decoder).

Guarantees:

* The same files and values as the separate functions: the fingerprint is the one
  :func:`ingest.media.fingerprint.fingerprint` computes (same graph and outputs, the same
  single filter thread); the proxy gets the output options of
  :func:`ingest.media.plan.plan_proxy` (a remux still copies the streams, keeping the
  rotation metadata); the poster is the first frame at or after
  :func:`ingest.media.plan.poster_seek_ms` (a ``trim`` on the same timestamps the
  output-side ``-ss`` compares, then at most one frame, so the poster's scaler sees one
  frame). Autorotation being off for the fingerprint's exact frames, the proxy and poster
  branches turn the picture upright with the same filters FFmpeg's autorotation inserts;
  outputs of a filter graph carry no display matrix, so the proxy is not rotated twice.
* Each rendition is checked and placed on its own (:func:`ingest.media.render.place`): one
  that fails is reported in :attr:`OnePass.failed` and the others are kept. A poster with no
  frame from the seek time on is retried alone from the first frame (``first-frame``).
* When the shared run itself fails (a limit, a crash, an error in any output or sink), each
  rendition is made again alone by its own function, so each gets its own verdict and
  reason; a missing or broken ffmpeg (:class:`MediaToolError`) is raised as is. Fewer than
  two renditions, or an ffmpeg older than 5.1 (whose passthrough timing is global), also
  take the separate path.
* Sandbox limits are those of the separate runs: ``limits`` with a wall time that is the sum
  of the wall times the separate runs would get.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingest.media.errors import MediaError, MediaToolError
from ingest.media.ffargs import GLOBAL_ARGS, file_url, input_args
from ingest.media.fingerprint import (
    UPRIGHT,
    Fingerprint,
    FingerprintParts,
    fingerprint_limits,
    fingerprint_parts,
    make_fingerprint,
    write_fingerprint,
)
from ingest.media.plan import ProxyPlan, plan_poster, plan_proxy, plan_renditions
from ingest.media.probe import ProbeInfo
from ingest.media.render import (
    NoPicture,
    Rendition,
    default_timeout,
    make_poster,
    make_proxy,
    part_and_final,
    place,
    poster_check,
    proxy_checks,
)
from ingest.media.sandbox import Limits, run
from ingest.media.tools import Tools, ffmpeg_version

__all__ = ["KINDS", "OnePass", "make_renditions"]

#: The renditions one run can make together.
KINDS: tuple[str, ...] = ("proxy", "poster", "fingerprint")
_PROXY_TAP, _POSTER_TAP = "vp", "vq"


@dataclass
class OnePass:
    """What :func:`make_renditions` made (by kind) and what failed (by kind, with why)."""

    made: dict[str, Rendition] = field(default_factory=dict)
    failed: dict[str, MediaError] = field(default_factory=dict)
    fingerprint: Fingerprint | None = None
    shared: bool = False  # True when one ffmpeg run decoded for all


@dataclass
class _Branch:
    """One file output of the shared run: graph parts, output args, where it goes."""

    kind: str
    graph: list[str]
    args: list[str]
    part: Path
    final: Path


def _option(args: Sequence[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def _without(args: Sequence[str], *pairs: tuple[str, str | None]) -> list[str]:
    """``args`` without the option/value ``pairs`` (value None: any value)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        if any(args[i] == k and (v is None or args[i + 1] == v) for k, v in pairs):
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def _proxy_branch(info: ProbeInfo, plan: ProxyPlan, dst: Path) -> _Branch:
    """The proxy as an output of the shared run; a transcode's video comes from the graph."""
    part, final = part_and_final(dst, "proxy", plan.ext)
    args = list(plan.output_args)
    vf = _option(args, "-vf")
    if plan.kind != "transcode" or vf is None:
        return _Branch("proxy", [], args, part, final)
    upright = UPRIGHT.get(info.rotation, "")
    graph = [f"[{_PROXY_TAP}]{upright}{vf}[pv]"]
    args = _without(args, ("-vf", None))
    i = args.index(f"0:{info.video_index}")
    args[i] = "[pv]"
    return _Branch("proxy", graph, args, part, final)


def _poster_branch(info: ProbeInfo, dst: Path) -> _Branch:
    """The poster: frames from the seek time on, the first of them, upright and scaled."""
    plan = plan_poster(info)
    part, final = part_and_final(dst, "poster", plan.ext)
    args = list(plan.output_args)
    start, vf = _option(args, "-ss"), _option(args, "-vf")
    upright = UPRIGHT.get(info.rotation, "")
    graph = [f"[{_POSTER_TAP}]trim=start={start},trim=end_frame=1,{upright}{vf}[pq]"]
    args = _without(args, ("-ss", None), ("-vf", None))
    args[args.index(f"0:{info.video_index}")] = "[pq]"
    return _Branch("poster", graph, args, part, final)


def _shareable(kinds: Sequence[str], version: str) -> bool:
    """Two or more renditions, and an ffmpeg with per-output passthrough timing (5.1+)."""
    major, _, rest = version.partition(".")
    minor = rest.partition(".")[0]
    if not (major.isdigit() and minor.isdigit()):
        return False
    return (int(major), int(minor)) >= (5, 1) and len(kinds) >= 2


async def make_renditions(
    src: str | os.PathLike[str],
    dst_dir: str | os.PathLike[str],
    info: ProbeInfo,
    *,
    kinds: Sequence[str] | None = None,
    max_height: int = 720,
    segment_ms: int = 1000,
    full_decode: bool = True,
    tools: Tools | None = None,
    limits: Limits | None = None,
) -> OnePass:
    """Make ``kinds`` (default: :func:`ingest.media.plan.plan_renditions`) from one decode.

    Never raises :class:`MediaError` (it goes into :attr:`OnePass.failed`); raises
    :class:`MediaToolError` when ffmpeg itself is missing or broken, and ``ValueError`` for a
    kind that is not one of :data:`KINDS`.
    """
    tools = tools or Tools()
    base = limits or Limits()
    kinds = list(kinds if kinds is not None else plan_renditions(info))
    if unknown := set(kinds) - set(KINDS):
        raise ValueError(f"not a standard rendition: {sorted(unknown)}")
    out = OnePass()
    if "poster" in kinds and info.video_index is None:
        out.failed["poster"] = MediaError("no video stream: audio gets no poster")
        kinds.remove("poster")
    version = await asyncio.to_thread(ffmpeg_version, tools)
    if _shareable(kinds, version):
        try:
            await _shared(
                src,
                Path(dst_dir),
                info,
                kinds,
                max_height,
                segment_ms,
                full_decode,
                tools,
                base,
                version,
                out,
            )
            return out
        except MediaToolError:
            raise
        except MediaError:
            out.made.clear()
            out.fingerprint = None
            for kind in kinds:
                out.failed.pop(kind, None)
    for kind in kinds:
        await _alone(
            src, Path(dst_dir), info, kind, max_height, segment_ms, full_decode, tools, base, out
        )
    return out


async def _alone(
    src: str | os.PathLike[str],
    dst: Path,
    info: ProbeInfo,
    kind: str,
    max_height: int,
    segment_ms: int,
    full_decode: bool,
    tools: Tools,
    limits: Limits,
    out: OnePass,
) -> None:
    """Make one rendition by its own function, recording the result in ``out``."""
    try:
        if kind == "proxy":
            out.made[kind] = await make_proxy(
                src,
                dst,
                info,
                max_height=max_height,
                full_decode=full_decode,
                tools=tools,
                limits=limits,
            )
        elif kind == "poster":
            out.made[kind] = await make_poster(src, dst, info, tools=tools, limits=limits)
        else:
            wall = fingerprint_limits(info, limits)
            r, fp = await make_fingerprint(
                src, dst, info, segment_ms=segment_ms, tools=tools, limits=wall
            )
            out.made[kind], out.fingerprint = r, fp
    except MediaToolError:
        raise
    except MediaError as exc:
        out.failed[kind] = exc


async def _shared(
    src: str | os.PathLike[str],
    dst: Path,
    info: ProbeInfo,
    kinds: list[str],
    max_height: int,
    segment_ms: int,
    full_decode: bool,
    tools: Tools,
    base: Limits,
    version: str,
    out: OnePass,
) -> None:
    """One ffmpeg run for every kind; raises :class:`MediaError` when the run itself fails."""
    plan = plan_proxy(info, max_height) if "proxy" in kinds else None
    wall = 0.0
    branches: list[_Branch] = []
    if plan is not None:
        branches.append(_proxy_branch(info, plan, dst))
        wall += default_timeout(plan.kind, info.duration_ms)
    if "poster" in kinds:
        branches.append(_poster_branch(info, dst))
        wall += default_timeout("poster", info.duration_ms)
    taps = [
        t
        for t, b in ((_PROXY_TAP, "proxy"), (_POSTER_TAP, "poster"))
        if any(x.kind == b and x.graph for x in branches)
    ]
    graph: list[str] = []
    fparts: FingerprintParts | None = None
    if "fingerprint" in kinds:
        wall += fingerprint_limits(info).wall_s
        fparts = await fingerprint_parts(
            src, info, segment_ms, tools, fingerprint_limits(info, base), video_taps=taps
        )
        graph += fparts.graph
    elif taps:
        graph.append(f"[0:{info.video_index}]split={len(taps)}" + "".join(f"[{t}]" for t in taps))
    limits = base.with_wall(wall)
    outputs: list[str] = []
    for b in branches:
        graph += b.graph
        outputs += [*b.args, "-threads", str(limits.threads), file_url(b.part)]
    argv = [
        tools.ffmpeg,
        *GLOBAL_ARGS,
        *(fparts.global_args if fparts else []),
        *("-filter_complex_threads", "1", "-y"),
        *input_args(src, demuxer=info.demuxer, threads=limits.threads, before=["-noautorotate"]),
        *(("-filter_complex", ";".join(graph)) if graph else ()),
        *(fparts.outputs if fparts else []),
        *outputs,
    ]
    try:
        result = await run(argv, limits=limits, sinks=fparts.sinks if fparts else ())
    except BaseException:
        for b in branches:
            await asyncio.to_thread(b.part.unlink, missing_ok=True)
        raise
    out.shared = True
    names = {file_url(b.part): b.kind for b in branches}
    for b in branches:
        await _settle(
            src, dst, info, b, plan, result.argv, names, version, full_decode, tools, base, out
        )
    if fparts is not None:
        marks = tuple((url, "{" + kind + "}") for url, kind in names.items())
        try:
            fp, _ = fparts.finish()
            out.made["fingerprint"] = await write_fingerprint(fp, dst, result.argv, outputs=marks)
            out.fingerprint = fp
        except MediaError as exc:
            out.failed["fingerprint"] = exc


async def _settle(
    src: str | os.PathLike[str],
    dst: Path,
    info: ProbeInfo,
    b: _Branch,
    plan: ProxyPlan | None,
    argv: tuple[str, ...],
    names: dict[str, str],
    version: str,
    full_decode: bool,
    tools: Tools,
    limits: Limits,
    out: OnePass,
) -> None:
    """Check and place one file output of the shared run (see module)."""
    marks = tuple((url, "{output}" if k == b.kind else "{" + k + "}") for url, k in names.items())
    try:
        if b.kind == "proxy":
            assert plan is not None
            check = limits.with_wall(default_timeout(plan.kind, info.duration_ms))
            checks = proxy_checks(info, plan.has_video, tools, check, full_decode=full_decode)
            await place(b.part, b.final, checks)
            r = Rendition(b.final, "proxy", argv, version, plan.media_type, plan.kind, marks)
        else:
            seek = plan_poster(info).seek_ms
            wall = limits.with_wall(default_timeout("poster", info.duration_ms))
            try:
                await place(b.part, b.final, [poster_check(tools, wall, seek)])
                r = Rendition(b.final, "poster", argv, version, "image/jpeg", "frame", marks)
            except NoPicture:
                if seek == 0:
                    raise
                r = await make_poster(src, dst, info, tools=tools, limits=limits, seek_ms=0)
                r = dataclasses.replace(r, method="first-frame")
        out.made[b.kind] = r
    except MediaToolError:
        raise
    except MediaError as exc:
        out.failed[b.kind] = exc
