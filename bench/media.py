"""Media-layer benchmark: proxy, remux vs transcode, fingerprint, one decode for all renditions.

Usage: python bench/media.py [--seconds 20] [--repeat 3] [--grain 0] [--keep DIR] [--only abcdef]

Generates test recordings (not timed): 1080p30 H.264/AAC for (a)-(c) and (e); 1080p30 and
720p30 HEVC/AAC (H.264 when this ffmpeg has no libx265) for (d) and (f); AAC audio for (f).
Every source is ``--seconds`` long, made from ffmpeg's testsrc2 and sine. Each measurement
is the best of ``--repeat`` runs (the machine is shared; the minimum is the least disturbed
run); runs of compared commands are interleaved. Wall and CPU time (user+system of this
process and its children) are both reported; targets are judged on CPU, the steadier on a
busy machine. Every target ends in a line ``target NAME: VALUE (GOAL) met`` or ``MISSED``.

(a) make_proxy (720p transcode) vs the bare ffmpeg command with the same argv, unsandboxed;
    the ffmpeg step with ffprobe (sandbox overhead; target <= 1.05) and the whole call with
    the full decode check of the proxy (info).
(b) remux proxy vs a full transcode at the same size (1080 cap), bare ffmpeg.  target >= 20
(c) info: fingerprint vs ``ffmpeg -i src -f null -`` (same decode threads), the exact frame
    hashes alone, SHA-256 of as many frame bytes alone.
(d) one decode for every rendition (``ingest.media.onepass``) on the HEVC source: proxy +
    poster + fingerprint from one sandboxed run (ffprobe checks, no decode check) vs the bare
    ffmpeg proxy transcode alone with the same encoder settings.   target <= 1.25
    For information: the same with the proxy's full decode check (as the service runs it),
    and the three made by separate runs.
(e) a remuxed original (the H.264 source, 1080 cap): the fingerprint vs its floor, the same
    decode piped out of the sandbox (frames as YUV4MPEG2, audio as s16le) and hashed with
    SHA-256 (each frame, and the audio), nothing else.              target <= 1.1
    For information: the whole one-decode run (remux + poster + fingerprint) vs the floor.
(f) hours of footage processed per core-hour by the one-decode run as the service runs it
    (with the proxy's decode check): 1080p30 and 720p30 HEVC, AAC audio only.

``--only d`` (or ``ab``, ...) runs only those parts; the sources are generated the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.media.ffargs import GLOBAL_ARGS, input_args
from ingest.media.fingerprint import fingerprint, fingerprint_limits, make_fingerprint
from ingest.media.fpstreams import Y4MFrameDigests
from ingest.media.onepass import OnePass, make_renditions
from ingest.media.pixfmt import frame_size
from ingest.media.plan import plan_proxy
from ingest.media.probe import ProbeInfo, probe
from ingest.media.render import make_poster, make_proxy
from ingest.media.sandbox import READ_CHUNK, Limits, run, sink

H264 = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p")
HEVC = (
    *("-c:v", "libx265", "-preset", "veryfast", "-crf", "24", "-pix_fmt", "yuv420p"),
    *("-tag:v", "hvc1", "-x265-params", "log-level=error"),
)


def has_x265() -> bool:
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True)
    return any(line.split()[1:2] == ["libx265"] for line in out.stdout.splitlines())


def generate(
    path: Path, seconds: int, grain: int, size: str = "1920x1080", codec: tuple[str, ...] = H264
) -> None:
    """A testsrc2 + sine recording; ``size`` "audio" makes an AAC-only M4A."""
    vf = ["-vf", f"noise=alls={grain}:allf=t"] if grain else []
    video = ["-f", "lavfi", "-i", f"testsrc2=s={size}:r=30:d={seconds}"]
    if size == "audio":
        video, vf, codec = [], [], ()
    subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-v", "error", "-y"),
            *video,
            *("-f", "lavfi", "-i", f"sine=f=440:r=48000:d={seconds}"),
            *vf,
            *codec,
            *("-c:a", "aac", "-b:a", "128k", "-shortest", "-movflags", "+faststart", str(path)),
        ],
        check=True,
    )


def source(base: Path, name: str, seconds: int, grain: int, *spec: object) -> Path:
    """``base/name``, generated unless a kept one was made with the same parameters."""
    path, stamp = base / name, base / f"{name}.params"
    params = f"{seconds} {grain} {spec}"
    if not (path.exists() and stamp.exists() and stamp.read_text() == params):
        print(f"generating {name} ({seconds} s) ...", flush=True)
        generate(path, seconds, grain, *spec)  # type: ignore[arg-type]
        stamp.write_text(params)
    return path


Timing = tuple[float, float]  # (wall seconds, CPU seconds of this process and its children)


def _cpu() -> float:
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def once(fn: Callable[[], object]) -> Timing:
    c, t = _cpu(), time.perf_counter()
    result = fn()
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    return time.perf_counter() - t, _cpu() - c


def paired(repeat: int, *fns: Callable[[], object]) -> list[Timing]:
    """Best wall and best CPU of each fn, runs interleaved so all see the same load."""
    runs: list[list[Timing]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            runs[i].append(once(fn))
    return [(min(w for w, _ in r), min(c for _, c in r)) for r in runs]


def bare(argv: tuple[str, ...] | list[str]) -> None:
    subprocess.run(list(argv), check=True, stdin=subprocess.DEVNULL)


def fresh(base: Path, name: str) -> Path:
    d = base / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=ap_fmt())
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--keep", type=Path, help="work in DIR and keep it (its clips are reused if they fit)"
    )
    ap.add_argument(
        "--grain",
        type=int,
        default=0,
        help="film-grain noise strength (e.g. 6) for a source closer to camera footage: "
        "more bits, heavier decode",
    )
    ap.add_argument("--only", default="abcdef", help="parts to run, e.g. 'd' (default: abcdef)")
    args = ap.parse_args()
    if not args.only or set(args.only) - set("abcdef"):
        ap.error("--only takes letters from 'abcdef'")
    base = args.keep or Path(tempfile.mkdtemp(prefix="evault-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        src = source(base, "src.mp4", args.seconds, args.grain)
        mbps = src.stat().st_size * 8 / args.seconds / 1e6
        print(f"source: 1080p30 H.264, {mbps:.1f} Mbit/s (grain {args.grain})", flush=True)
        info = asyncio.run(probe(src))
        times, ratios = run_all(base, src, info, args.seconds, args.repeat, args.only, args.grain)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\n{'measurement':<52}{'wall s':>8}{'x realtime':>12}{'CPU s':>8}")
    for name, (wall, cpu) in times:
        print(f"{name:<52}{wall:>8.2f}{args.seconds / wall:>12.1f}{cpu:>8.2f}")
    print(f"\n{'ratio':<58}{'wall':>8}{'CPU':>8}  target")
    for name, wall_ratio, cpu_ratio, target, _ in ratios:
        print(f"{name:<58}{wall_ratio:>8.2f}{cpu_ratio:>8.2f}  {target}")
    if NOTES:
        print()
        print("\n".join(NOTES))
    print(f"\ncores: {os.cpu_count()}, best of {args.repeat}")
    for _, _, cpu_ratio, target, key in ratios:
        if key:
            op, goal = target.split()
            ok = cpu_ratio <= float(goal) if op == "<=" else cpu_ratio >= float(goal)
            verdict = "met" if ok else "MISSED"
            print(f"target {key}: {cpu_ratio:.2f}x CPU ({target}) {verdict}")
    return 0


#: Lines printed after the ratios (throughput figures).
NOTES: list[str] = []


def ap_fmt() -> type[argparse.RawDescriptionHelpFormatter]:
    return argparse.RawDescriptionHelpFormatter


Ratio = tuple[str, float, float, str, str]  # name, wall ratio, CPU ratio, goal, target name
Results = tuple[list[tuple[str, Timing]], list[Ratio]]


def _ratio(name: str, a: Timing, b: Timing, target: str, key: str = "") -> Ratio:
    """a / b; ``key`` names a target (``target`` then reads "<= 1.05" or ">= 20")."""
    return (name, a[0] / b[0], a[1] / b[1], target, key)


def run_all(
    base: Path, src: Path, info: ProbeInfo, seconds: int, repeat: int, only: str, grain: int
) -> Results:
    times: list[tuple[str, Timing]] = []
    ratios: list[Ratio] = []
    codec, name = (HEVC, "HEVC") if has_x265() else (H264, "H.264")
    for part, fn in (("a", _proxy), ("b", _remux), ("c", _fingerprint), ("e", _remux_floor)):
        if part in only:
            t, r = fn(base, src, info, seconds, repeat)
            times += t
            ratios += r
    if "d" in only or "f" in only:
        big = source(base, "big.mp4", seconds, grain, "1920x1080", codec)
        t, r, per_core = _one_decode(base, big, seconds, repeat, name, "d" in only)
        times += t
        ratios += r
        if "f" in only:
            _throughput(base, big, seconds, repeat, f"1080p30 {name}", per_core)
            mid = source(base, "mid.mp4", seconds, grain, "1280x720", codec)
            _throughput(base, mid, seconds, repeat, f"720p30 {name}")
            audio = source(base, "audio.m4a", seconds, grain, "audio")
            _throughput(base, audio, seconds, repeat, "audio only (AAC 48 kHz mono)")
    return times, ratios


def _proxy(base: Path, src: Path, info: ProbeInfo, seconds: int, repeat: int) -> Results:
    """(a) 720p transcode proxy; the bare run repeats make_proxy's exact argv unsandboxed."""
    limits = Limits(wall_s=600.0 + 20 * seconds)
    proxy = asyncio.run(make_proxy(src, fresh(base, "a"), info, limits=limits))
    assert plan_proxy(info).kind == "transcode"
    bare_720, step_720, full_720 = paired(
        repeat,
        lambda: bare(proxy.args),
        lambda: make_proxy(src, fresh(base, "a"), info, full_decode=False, limits=limits),
        lambda: make_proxy(src, fresh(base, "a"), info, limits=limits),
    )
    times = [
        ("(a) transcode 720p, bare ffmpeg", bare_720),
        ("(a) make_proxy 720p, ffmpeg step + ffprobe", step_720),
        ("(a) make_proxy 720p, + full decode check", full_720),
    ]
    ratios = [
        _ratio(
            "(a) make_proxy (no decode check) / bare",
            step_720,
            bare_720,
            "<= 1.05",
            "proxy-overhead",
        ),
        _ratio("(a) make_proxy (with decode check) / bare", full_720, bare_720, "info"),
    ]
    return times, ratios


def _remux(base: Path, src: Path, info: ProbeInfo, seconds: int, repeat: int) -> Results:
    """(b) remux (1080 cap) vs transcode of the same source at the same size."""
    limits = Limits(wall_s=600.0 + 20 * seconds)
    proxy = asyncio.run(make_proxy(src, fresh(base, "a"), info, full_decode=False, limits=limits))
    remux = asyncio.run(make_proxy(src, fresh(base, "b"), info, max_height=1080, limits=limits))
    assert remux.method == "remux", remux.method
    transcode = list(proxy.args)
    transcode[transcode.index("scale=-2:720,format=yuv420p")] = (
        "scale=trunc(iw/2)*2:trunc(ih/2)*2,format=yuv420p"
    )
    transcode[-1] = "file:" + str(base / "b" / "transcode.mp4")
    bare_remux, full_remux = paired(
        repeat,
        lambda: bare(remux.args),
        lambda: make_proxy(src, fresh(base, "b"), info, max_height=1080, limits=limits),
    )
    (bare_transcode,) = paired(max(1, repeat - 1), lambda: bare(transcode))
    times = [
        ("(b) remux 1080p, bare ffmpeg", bare_remux),
        ("(b) transcode 1080p, bare ffmpeg", bare_transcode),
        ("(b) make_proxy remux + full decode check", full_remux),
    ]
    ratios = [
        _ratio(
            "(b) transcode / remux, bare ffmpeg steps",
            bare_transcode,
            bare_remux,
            ">= 20",
            "remux-speed",
        ),
        _ratio(
            "(b) transcode / make_proxy remux + decode check", bare_transcode, full_remux, "info"
        ),
    ]
    return times, ratios


def _fingerprint(base: Path, src: Path, info: ProbeInfo, seconds: int, repeat: int) -> Results:
    """(c) fingerprint vs plain decode with the same decode thread count; the design's floor."""
    threads = os.cpu_count() or 2
    decode = ["ffmpeg", "-nostdin", "-v", "error", "-threads", str(threads)]
    decode += ["-i", str(src), "-f", "null", "-"]
    fp_limits = Limits(wall_s=600.0 + 10 * seconds, threads=threads)
    size = frame_size(str(info.pix_fmt), info.width or 0, info.height or 0) or 0
    num, _, den = (info.fps or "0/1").partition("/")
    frames = round((info.duration_ms or 0) * int(num) / (1000 * int(den or 1)))
    plain, fp, exact, hashing = paired(
        repeat,
        lambda: bare(decode),
        lambda: fingerprint(src, info, limits=fp_limits),
        lambda: _exact_only(src, info, size, fp_limits),
        lambda: _hash_frames(size, frames),
    )
    floor = (plain[0] + hashing[1] / threads, plain[1] + hashing[1])
    times = [
        ("(c) plain decode -f null", plain),
        ("(c) fingerprint", fp),
        ("(c) info: exact frame hashes only", exact),
        (f"(c) info: SHA-256 of {frames} frames alone", hashing),
    ]
    ratios = [
        _ratio("(c) info: fingerprint / plain decode", fp, plain, "info"),
        _ratio("(c) info: exact frame hashes only / plain", exact, plain, "info"),
        _ratio(f"(c) info: plain + SHA-256 on {threads} cores / plain", floor, plain, "info"),
    ]
    return times, ratios


async def _exact_only(src: Path, info: ProbeInfo, size: int, limits: Limits) -> None:
    """The fingerprint's video decode and exact frame digests alone (no perceptual side, audio
    decoded to the null muxer): the cost of moving every frame through a pipe and hashing it.
    """
    argv = [
        "ffmpeg",
        *GLOBAL_ARGS,
        *input_args(src, demuxer=info.demuxer, threads=limits.threads, before=["-noautorotate"]),
        *("-map", f"0:{info.video_index}", "-fps_mode", "passthrough"),
        *("-c:v", "wrapped_avframe", "-f", "yuv4mpegpipe", sink(0)),
        *("-map", f"0:{info.audio_index}", "-c:a", "pcm_s16le", "-f", "null", "-"),
    ]
    digests: list[bytes] = []
    frames = Y4MFrameDigests(size, digests.append)
    await run(argv, limits=limits, sinks=[frames])
    frames.finish()


def _hash_frames(size: int, frames: int) -> None:
    """SHA-256 of ``frames`` frames of ``size`` bytes, fed in chunks as a sink feeds it."""
    data = memoryview(bytes(size))
    for _ in range(frames):
        h = hashlib.sha256()
        for pos in range(0, size, READ_CHUNK):
            h.update(data[pos : pos + READ_CHUNK])
        h.digest()


def _limits(seconds: int) -> Limits:
    return Limits(wall_s=600.0 + 20 * seconds)


def _one_decode(
    base: Path, src: Path, seconds: int, repeat: int, codec: str, timed: bool
) -> tuple[list[tuple[str, Timing]], list[Ratio], Timing]:
    """(d) proxy + poster + fingerprint from one decode vs the bare proxy transcode alone.

    Returns times, ratios and the one-decode run as the service runs it (for (f))."""
    info = asyncio.run(probe(src))
    limits = _limits(seconds)
    proxy = asyncio.run(make_proxy(src, fresh(base, "d"), info, full_decode=False, limits=limits))
    assert proxy.method == "transcode", proxy.method

    def one(full_decode: bool) -> object:
        return _check_one(
            make_renditions(src, fresh(base, "d"), info, full_decode=full_decode, limits=limits)
        )

    async def separate() -> None:
        d = fresh(base, "d")
        await make_proxy(src, d, info, full_decode=False, limits=limits)
        await make_poster(src, d, info, limits=limits)
        await make_fingerprint(src, d, info, limits=fingerprint_limits(info, limits))

    if not timed:
        (service,) = paired(repeat, lambda: one(True))
        return [], [], service
    bare_proxy, shared, service, apart = paired(
        repeat,
        lambda: bare(proxy.args),
        lambda: one(False),
        lambda: one(True),
        separate,
    )
    label = f"1080p30 {codec} -> 720p H.264"
    times = [
        (f"(d) bare proxy transcode, {label}", bare_proxy),
        ("(d) one decode: proxy+poster+fingerprint", shared),
        ("(d) one decode, + proxy decode check (service)", service),
        ("(d) separate runs: proxy, poster, fingerprint", apart),
    ]
    ratios = [
        _ratio(
            "(d) one decode for all / bare proxy transcode",
            shared,
            bare_proxy,
            "<= 1.25",
            "one-decode",
        ),
        _ratio("(d) info: same + proxy decode check / bare", service, bare_proxy, "info"),
        _ratio("(d) info: separate runs / bare proxy transcode", apart, bare_proxy, "info"),
    ]
    return times, ratios, service


async def _check_one(run_all_kinds: Coroutine[Any, Any, OnePass]) -> None:
    out = await run_all_kinds
    assert out.shared and not out.failed, {k: v.reason for k, v in out.failed.items()}


def _remux_floor(base: Path, src: Path, info: ProbeInfo, seconds: int, repeat: int) -> Results:
    """(e) a remuxed original: fingerprint vs the same decode piped out and hashed."""
    limits = fingerprint_limits(info, _limits(seconds))
    assert plan_proxy(info, 1080).kind == "remux"
    size = frame_size(str(info.pix_fmt), info.width or 0, info.height or 0) or 0

    def whole() -> object:
        out = make_renditions(
            src, fresh(base, "e"), info, max_height=1080, full_decode=False, limits=limits
        )
        return _check_one(out)

    floor, fp, shared = paired(
        repeat,
        lambda: _floor(src, info, size, limits),
        lambda: fingerprint(src, info, limits=limits),
        whole,
    )
    times = [
        ("(e) floor: decode piped out + SHA-256", floor),
        ("(e) fingerprint", fp),
        ("(e) one decode: remux+poster+fingerprint", shared),
    ]
    ratios = [
        _ratio(
            "(e) fingerprint / its floor (remuxed original)",
            fp,
            floor,
            "<= 1.1",
            "fingerprint-floor",
        ),
        _ratio("(e) info: remux+poster+fingerprint / floor", shared, floor, "info"),
    ]
    return times, ratios


async def _floor(src: Path, info: ProbeInfo, size: int, limits: Limits) -> None:
    """The fingerprint's decode with nothing else: every frame out as YUV4MPEG2 and hashed
    (SHA-256 per frame), the audio out as s16le and hashed."""
    argv = [
        "ffmpeg",
        *GLOBAL_ARGS,
        *input_args(src, demuxer=info.demuxer, threads=limits.threads, before=["-noautorotate"]),
        *("-map", f"0:{info.video_index}", "-fps_mode", "passthrough"),
        *("-c:v", "wrapped_avframe", "-f", "yuv4mpegpipe", sink(0)),
        *("-map", f"0:{info.audio_index}", "-c:a", "pcm_s16le", "-f", "s16le", sink(1)),
    ]
    digests: list[bytes] = []
    frames = Y4MFrameDigests(size, digests.append)
    pcm = hashlib.sha256()
    await run(argv, limits=limits, sinks=[frames, pcm.update])
    frames.finish()


def _throughput(
    base: Path, src: Path, seconds: int, repeat: int, label: str, known: Timing | None = None
) -> None:
    """(f) hours of footage per core-hour: the one-decode run with the proxy's decode check."""
    if known is None:
        info = asyncio.run(probe(src))
        limits = _limits(seconds)
        (known,) = paired(
            repeat,
            lambda: _check_one(make_renditions(src, fresh(base, "f"), info, limits=limits)),
        )
    NOTES.append(
        f"(f) {label:<36} {seconds / known[1]:>6.1f} h of footage per core-hour "
        f"({known[1]:.2f} CPU-s for {seconds} s)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
