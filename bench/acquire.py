"""Acquisition throughput: BlobStore.ingest_file against the durable-copy limits.

Usage: python bench/acquire.py [--size-gib 2] [--dir DIR] [--repeat 3]

Creates SIZE GiB of pseudo-random data in a fresh temp dir under DIR (default: the current
directory, so source and copies share one file system), reads it once into the page cache, then
times, interleaved, REPEAT rounds of:

  (a) dd if=SRC of=DST bs=4M conv=fsync           -- the durable-copy limit (no hashing)
  (b) cp SRC DST && sync && sha256sum DST         -- the naive copy-then-hash acquisition
  (c) BlobStore.ingest_file(SRC) in a child process -- copy + hash in one pass, fsync, rename
  (d) dd ... oflag=direct                         -- for information: the direct-I/O copy
      limit (ingest_file writes with O_DIRECT where the file system allows it)

and prints MB/s (median and best), the ratios c/a and c/b, and the peak RSS (VmHWM) of (c),
against the targets: c >= 85% of a, c >= 2x b, RSS <= 100 MB. Temp files are always removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GIB = 1 << 30
BLOCK = 16 << 20


def make_source(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(BLOCK, left)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())


def warm(path: Path) -> None:
    """Read the whole file so it sits in the page cache (the dock file was just written)."""
    buf = bytearray(BLOCK)
    with path.open("rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def settle(src: Path) -> None:
    """Flush earlier runs' dirty pages and re-warm the source so runs start alike."""
    os.sync()
    warm(src)
    time.sleep(0.5)


def run_dd(src: Path, dst: Path, *extra: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        ["dd", f"if={src}", f"of={dst}", "bs=4M", "conv=fsync", *extra],
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - t
    dst.unlink()
    return elapsed


def run_cp_sha(src: Path, dst: Path) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(
        ["sh", "-c", 'cp "$1" "$2" && sync && sha256sum "$2"', "sh", str(src), str(dst)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    elapsed = time.perf_counter() - t
    dst.unlink()
    return elapsed, out.split()[0]


def run_ingest(src: Path, store: Path) -> tuple[float, str, int]:
    """Run (c) in a child; returns (seconds, sha256, peak RSS bytes)."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(src), str(store)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    shutil.rmtree(store)
    res = json.loads(out)
    return res["seconds"], res["sha256"], res["vmhwm_kib"] * 1024


def child(src: Path, store_root: Path) -> None:
    sys.path.insert(0, str(REPO))
    from vault.storage.blobstore import BlobStore

    store = BlobStore(store_root)
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        t = time.perf_counter()
        blob = store.ingest_file(fd)
        elapsed = time.perf_counter() - t
    finally:
        os.close(fd)
    hwm = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    if not hwm:
        import resource

        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": elapsed, "sha256": blob.sha256, "vmhwm_kib": hwm}))


def mbps(size: int, seconds: float) -> float:
    return size / 1e6 / seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--dir", type=Path, default=Path.cwd())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0

    size = int(args.size_gib * GIB)
    if shutil.disk_usage(args.dir).free < 2 * size + GIB:
        print(f"not enough free space in {args.dir} for 2 x {args.size_gib} GiB", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="evault-bench-", dir=args.dir))
    try:
        src, dst = work / "src.bin", work / "dst.bin"
        print(f"{os.cpu_count()} CPUs, load {os.getloadavg()}, {size / GIB:g} GiB in {work}")
        make_source(src, size)
        warm(src)
        dd: list[float] = []
        cp: list[float] = []
        ing: list[float] = []
        rss: list[int] = []
        ddd: list[float] = []
        for r in range(args.repeat):
            settle(src)
            dd.append(run_dd(src, dst))
            settle(src)
            seconds, want = run_cp_sha(src, dst)
            cp.append(seconds)
            settle(src)
            seconds, got, peak = run_ingest(src, work / f"store{r}")
            ing.append(seconds)
            rss.append(peak)
            settle(src)
            ddd.append(run_dd(src, dst, "oflag=direct"))
            if got != want:
                print(f"HASH MISMATCH: ingest {got} != sha256sum {want}", file=sys.stderr)
                return 1
        report(size, dd, cp, ing, ddd, max(rss))
        print(f"load after: {os.getloadavg()}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(
    size: int, dd: list[float], cp: list[float], ing: list[float], ddd: list[float], rss: int
) -> None:
    rows = [
        ("(a) dd bs=4M conv=fsync", dd),
        ("(b) cp+sync+sha256sum", cp),
        ("(c) ingest_file", ing),
        ("(d) dd ... oflag=direct", ddd),
    ]
    print(f"\n{'method':<28}{'median s':>10}{'median MB/s':>13}{'best MB/s':>11}   runs (s)")
    for name, times in rows:
        med, best = statistics.median(times), min(times)
        runs = " ".join(f"{t:.2f}" for t in times)
        print(f"{name:<28}{med:>10.2f}{mbps(size, med):>13.0f}{mbps(size, best):>11.0f}   {runs}")
    med_a, med_b, med_c = (statistics.median(t) for t in (dd, cp, ing))
    best_a, best_b, best_c = (min(t) for t in (dd, cp, ing))
    checks = [
        ("c/a throughput (target >= 0.85)", med_a / med_c, best_a / best_c, 0.85),
        ("c/b throughput (target >= 2.00)", med_b / med_c, best_b / best_c, 2.0),
    ]
    print()
    for name, med, best, target in checks:
        verdict = "PASS" if med >= target else "FAIL"
        print(f"{name:<34} median {med:5.2f}  best/best {best:5.2f}  {verdict}")
    med_d, best_d = statistics.median(ddd), min(ddd)
    print(
        f"{'c/d throughput (information)':<34} median {med_d / med_c:5.2f}  best/best "
        f"{best_d / best_c:5.2f}"
    )
    verdict = "PASS" if rss <= 100 * 1000 * 1000 else "FAIL"
    print(f"{'peak RSS of (c) (target <= 100 MB)':<34} {rss / 1e6:.1f} MB  {verdict}")


if __name__ == "__main__":
    sys.exit(main())
