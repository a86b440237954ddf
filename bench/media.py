"""Media-layer benchmark: proxy, remux vs transcode, fingerprint vs plain decode.

Usage: python bench/media.py [--seconds 60] [--repeat 3] [--grain 0] [--keep DIR] [--only abc]

Generates a 1080p30 H.264/AAC test recording (not timed), then times, taking the best of
``--repeat`` runs of each (the machine is shared; the minimum is the least disturbed run):

Runs of the compared commands are interleaved; wall and CPU time (user+system of the
process and its children) are both reported, CPU being the steadier on a busy machine.

(a) make_proxy (720p transcode) vs the bare ffmpeg command with the same argv, unsandboxed;
    reported for the ffmpeg step alone (sandbox overhead) and for the whole call (which also
    validates the proxy with ffprobe and a full decode).          target ratio <= 1.05
(b) remux proxy vs a full transcode at the same size (1080 cap), bare ffmpeg steps and whole
    make_proxy calls.                                              target remux >= 20x faster
(c) fingerprint vs ``ffmpeg -i src -f null -`` (same decode threads).  target ratio <= 1.3
    For information: the exact frame hashes alone (the same decode, every frame through a
    sandbox pipe as YUV4MPEG2 and hashed as the fingerprint does, nothing else: the floor of
    this design), SHA-256 of as many frame bytes alone, and plain decode + that SHA-256 spread
    over every core (the floor of any design that hashes the decoded frames on this machine).

``--only c`` (or ``ab``, ...) runs only those parts; the clip is generated the same way.
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
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.media.ffargs import GLOBAL_ARGS, input_args
from ingest.media.fingerprint import fingerprint
from ingest.media.fpstreams import Y4MFrameDigests
from ingest.media.pixfmt import frame_size
from ingest.media.plan import plan_proxy
from ingest.media.probe import ProbeInfo, probe
from ingest.media.render import make_proxy
from ingest.media.sandbox import READ_CHUNK, Limits, run, sink


def generate(path: Path, seconds: int, grain: int) -> None:
    vf = ["-vf", f"noise=alls={grain}:allf=t"] if grain else []
    subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-v", "error", "-y"),
            *("-f", "lavfi", "-i", f"testsrc2=s=1920x1080:r=30:d={seconds}"),
            *("-f", "lavfi", "-i", f"sine=f=440:r=48000:d={seconds}"),
            *vf,
            *("-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"),
            *("-c:a", "aac", "-b:a", "128k", "-shortest", "-movflags", "+faststart", str(path)),
        ],
        check=True,
    )


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
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--keep", type=Path, help="work in DIR and keep it (its clip is reused if it fits)"
    )
    ap.add_argument(
        "--grain",
        type=int,
        default=0,
        help="film-grain noise strength (e.g. 6) for a source closer to camera footage: "
        "more bits, heavier decode",
    )
    ap.add_argument("--only", default="abc", help="parts to run, e.g. 'c' (default: abc)")
    args = ap.parse_args()
    if not args.only or set(args.only) - set("abc"):
        ap.error("--only takes letters from 'abc'")
    base = args.keep or Path(tempfile.mkdtemp(prefix="evault-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    src = base / "src.mp4"
    try:
        print(f"generating {args.seconds} s 1080p30 H.264/AAC in {base} ...", flush=True)
        stamp = base / "src.params"
        params = f"{args.seconds} {args.grain}"
        if not (src.exists() and stamp.exists() and stamp.read_text() == params):
            generate(src, args.seconds, args.grain)
            stamp.write_text(params)
        mbps = src.stat().st_size * 8 / args.seconds / 1e6
        print(f"source: {mbps:.1f} Mbit/s (grain {args.grain})", flush=True)
        info = asyncio.run(probe(src))
        times, ratios = run_all(base, src, info, args.seconds, args.repeat, args.only)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\n{'measurement':<46}{'wall s':>8}{'x realtime':>12}{'CPU s':>8}")
    for name, (wall, cpu) in times:
        print(f"{name:<46}{wall:>8.2f}{args.seconds / wall:>12.1f}{cpu:>8.2f}")
    print(f"\n{'ratio':<52}{'wall':>8}{'CPU':>8}  target")
    for name, wall_ratio, cpu_ratio, target in ratios:
        print(f"{name:<52}{wall_ratio:>8.2f}{cpu_ratio:>8.2f}  {target}")
    print(f"\ncores: {os.cpu_count()}, best of {args.repeat}")
    return 0


def ap_fmt() -> type[argparse.RawDescriptionHelpFormatter]:
    return argparse.RawDescriptionHelpFormatter


Results = tuple[list[tuple[str, Timing]], list[tuple[str, float, float, str]]]


def _ratio(name: str, a: Timing, b: Timing, target: str) -> tuple[str, float, float, str]:
    return (name, a[0] / b[0], a[1] / b[1], target)


def run_all(
    base: Path, src: Path, info: ProbeInfo, seconds: int, repeat: int, only: str
) -> Results:
    times: list[tuple[str, Timing]] = []
    ratios: list[tuple[str, float, float, str]] = []
    for part, fn in (("a", _proxy), ("b", _remux), ("c", _fingerprint)):
        if part in only:
            t, r = fn(base, src, info, seconds, repeat)
            times += t
            ratios += r
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
        _ratio("(a) make_proxy (no decode check) / bare", step_720, bare_720, "<= 1.05"),
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
        _ratio("(b) transcode / remux, bare ffmpeg steps", bare_transcode, bare_remux, ">= 20"),
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
        _ratio("(c) fingerprint / plain decode", fp, plain, "<= 1.3"),
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


if __name__ == "__main__":
    raise SystemExit(main())
