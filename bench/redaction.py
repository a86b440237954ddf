"""Redaction benchmark: a redacted copy vs a plain transcode with the same encoder settings.

Usage: python bench/redaction.py [--seconds 20] [--repeat 3] [--boxes 3] [--keep DIR]

Generates a 1080p30 H.264/AAC test recording (not timed; ``bench/media.py``'s recipe, copied
here so the two benches stay independent), then
times, best of ``--repeat`` interleaved runs (wall, and CPU of this process and its children):

(a) the redaction's ffmpeg command (``ingest.media.redact.redaction_argv``: ``--boxes`` moving
    boxes over the whole recording, blur and pixelate alternating, each with a keyframe every
    second, one full-frame range and one mute range) vs the same input and encoder settings
    (``OUTPUT_OPTIONS``, AAC 192k, same threads) with no filter graph.   target ratio <= 1.3
(b) for information: the whole ``make_redacted`` call (sandbox, ffprobe validation).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.media.ffargs import GLOBAL_ARGS, file_url, input_args
from ingest.media.probe import ProbeInfo, probe
from ingest.media.redact import OUTPUT_OPTIONS, make_redacted, redaction_argv
from ingest.media.sandbox import Limits
from ingest.media.tools import Tools
from vault.redaction.spec import Spec, parse_spec

Timing = tuple[float, float]  # (wall seconds, CPU seconds of this process and its children)


def generate(path: Path, seconds: int) -> None:
    """bench/media.py's source: testsrc2 1080p30 and a 440 Hz tone, H.264 CRF 20 + AAC."""
    subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-v", "error", "-y"),
            *("-f", "lavfi", "-i", f"testsrc2=s=1920x1080:r=30:d={seconds}"),
            *("-f", "lavfi", "-i", f"sine=f=440:r=48000:d={seconds}"),
            *("-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"),
            *("-c:a", "aac", "-b:a", "128k", "-shortest", "-movflags", "+faststart", str(path)),
        ],
        check=True,
    )


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
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


def bare(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)


def fresh(base: Path, name: str) -> Path:
    d = base / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def spec_for(info: ProbeInfo, boxes: int) -> Spec:
    """``boxes`` boxes drifting across the picture, a keyframe a second (see module)."""
    w, h, ms = info.display_width or 0, info.display_height or 0, info.duration_ms or 0
    tracks: list[dict[str, Any]] = []
    for n in range(boxes):
        bw, bh = 160 + 40 * n, 200 - 30 * n
        frames = []
        for t in range(0, ms + 1, 1000):
            x = (200 + 300 * n + t // 20) % (w - bw)
            y = (150 + 200 * n + t // 40) % (h - bh)
            frames.append({"t_ms": t, "x": x, "y": y, "w": bw, "h": bh})
        effect = "blur" if n % 2 == 0 else "pixelate"
        tracks.append({"label": f"box {n}", "effect": effect, "keyframes": frames})
    raw = {
        "version": 1,
        "effect": "blur",
        "boxes": tracks,
        "frame_ranges": [{"start_ms": ms // 3, "end_ms": ms // 3 + 500}],
        "mute_ranges": [{"start_ms": ms // 2, "end_ms": ms // 2 + 2000}],
    }
    return parse_spec(raw)


def plain_argv(src: Path, out: Path, info: ProbeInfo, tools: Tools, threads: int) -> list[str]:
    """The same input, encoders and options as a redacted copy, without any filter."""
    opts = [item for k, v in OUTPUT_OPTIONS.items() for item in (f"-{k}", v)]
    n = str(threads)
    return [
        tools.ffmpeg, *GLOBAL_ARGS, "-filter_threads", n, "-filter_complex_threads", n, "-y",
        *input_args(src, demuxer=info.demuxer, threads=threads),
        "-map", f"0:{info.video_index}", "-map", f"0:{info.audio_index}",
        *opts, "-c:a", "aac", "-b:a", "192k", "-threads", n, file_url(out),
    ]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--boxes", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="work in DIR and keep it")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="evault-bench-redact-"))
    base.mkdir(parents=True, exist_ok=True)
    src = base / "src.mp4"
    tools, limits = Tools(), Limits()
    try:
        print(f"generating {args.seconds} s 1080p30 H.264/AAC in {base} ...", flush=True)
        generate(src, args.seconds)
        info = asyncio.run(probe(src))
        spec = spec_for(info, args.boxes)
        out = fresh(base, "out")
        redact = redaction_argv(src, file_url(out / "r.mp4"), spec, info, tools, limits.threads)
        plain = plain_argv(src, out / "p.mp4", info, tools, limits.threads)
        r, p = paired(args.repeat, lambda: bare(redact), lambda: bare(plain))
        whole: Timing = paired(
            args.repeat, lambda: make_redacted(src, fresh(base, "whole"), spec, info)
        )[0]
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\n{'measurement':<46}{'wall s':>8}{'x realtime':>12}{'CPU s':>8}")
    for name, (wall, cpu) in (
        (f"redaction ffmpeg ({args.boxes} boxes)", r),
        ("plain transcode, same encoder settings", p),
        ("make_redacted (sandbox + validation)", whole),
    ):
        print(f"{name:<46}{wall:>8.2f}{args.seconds / wall:>12.1f}{cpu:>8.2f}")
    print(f"\n{'ratio':<52}{'wall':>8}{'CPU':>8}  target")
    print(f"{'(a) redaction / plain transcode':<52}{r[0] / p[0]:>8.2f}{r[1] / p[1]:>8.2f}  <= 1.3")
    print(
        f"{'(b) make_redacted / plain transcode':<52}{whole[0] / p[0]:>8.2f}{whole[1] / p[1]:>8.2f}"
    )
    print(f"\ncores: {os.cpu_count()}, best of {args.repeat}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
