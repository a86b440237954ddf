"""Encryption-at-rest throughput: sealed objects against the plaintext path, in the same run.

Usage: python bench/crypto.py [--mib 1024] [--dir DIR] [--chunks-kib 64,1024] [--repeat 1]

Creates MIB MiB of random data in a fresh temp dir under DIR (default: the current directory),
reads it once into the page cache, then times, interleaved, REPEAT rounds of:

  write (a) plaintext: read the source in 1 MiB blocks, SHA-256, write, fsync
        (b) sealed:    vault.storage.sealing.seal_stream (SHA-256 of the plaintext + AES-256-GCM),
        fsync
                       -- once per chunk size in --chunks-kib
  read  (a) plaintext: read in 1 MiB blocks + SHA-256          (the content-address check),
                       with the read-ahead hint both product read paths use (vault.storage.prefetch)
        (b) sealed:    SealedReader.read_all + SHA-256 of the plaintext (the reader decrypts
                       on a worker thread one batch ahead: vault.storage.pipeline)
        each twice: "warm" (file in the page cache: the CPU cost) and "cold" (the file's pages
        dropped first with posix_fadvise DONTNEED: what a disk read costs)

and prints medians over rounds (the order of the paths rotates each round) of wall-clock MB/s and
of MB per user-CPU second of the process (the hashing and crypto cost alone: stable when the disk
and CPUs are shared and noisy; kernel I/O time is excluded), with the ratio
sealed / plaintext. The target (>= 70% for write and read) is on throughput, the wall-clock
figures; the CPU figures are what sealing costs per byte, shown for capacity planning: a host
whose cores are all busy gets about that ratio. Temp files are always removed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from vault.storage.keyring import new_data_key
from vault.storage.prefetch import ReadAhead
from vault.storage.sealing import SealedReader, seal_stream

MIB = 1 << 20
BLOCK = MIB
TARGET = 0.70


def make_source(path: Path, size: int) -> None:
    with path.open("wb") as f:
        for _ in range(size // (16 * MIB)):
            f.write(os.urandom(16 * MIB))
        f.write(os.urandom(size % (16 * MIB)))
        os.fsync(f.fileno())


def read_through(path: Path) -> None:
    buf = bytearray(16 * MIB)
    with path.open("rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def plain_write(src: Path, dst: Path) -> str:
    sha = hashlib.sha256()
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    with src.open("rb", buffering=0) as fin, dst.open("wb", buffering=0) as fout:
        while n := fin.readinto(buf):
            sha.update(view[:n])
            fout.write(view[:n])
        os.fsync(fout.fileno())
    return sha.hexdigest()


def plain_read(path: Path) -> str:
    """The plaintext read path as ``vault.storage.content.PlainObject`` does it: 1 MiB reads with
    the same read-ahead hint as the sealed reader (``vault.storage.prefetch``), plus SHA-256."""
    sha = hashlib.sha256()
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        ahead = ReadAhead(f, os.fstat(f.fileno()).st_size)
        pos = 0
        while n := f.readinto(buf):
            pos += n
            ahead.at(pos)
            sha.update(view[:n])
    return sha.hexdigest()


def sealed_write(dek: bytes, chunk: int) -> Callable[[Path, Path], str]:
    def run(src: Path, dst: Path) -> str:
        with src.open("rb", buffering=0) as fin, dst.open("wb") as fout:
            result = seal_stream(dek, fin, fout, chunk)
            fout.flush()
            os.fsync(fout.fileno())
        return result.sha256

    return run


def sealed_read(dek: bytes) -> Callable[[Path], str]:
    def run(path: Path) -> str:
        sha = hashlib.sha256()
        with path.open("rb") as f:
            for piece in SealedReader(dek, f).read_all():
                sha.update(piece)
        return sha.hexdigest()

    return run


def timed(fn: Callable[[], str], expect: str, size: int) -> tuple[float, float]:
    """Run ``fn``; return (wall MB/s, MB per user-CPU second of this process)."""
    c0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime, time.perf_counter()
    got = fn()
    dt, dc = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_utime - c0
    if got != expect:
        raise SystemExit(f"hash mismatch: {got} != {expect}")
    return size / dt / 1e6, size / max(dc, 1e-9) / 1e6


OPS = ("write", "read warm", "read cold")


def report(res: dict[str, dict[str, list[tuple[float, float]]]], which: int, title: str) -> bool:
    """Print medians of measure ``which`` (0 wall, 1 user CPU) and ratios; True if all >= TARGET."""
    med = {
        n: {op: statistics.median(x[which] for x in r[op]) for op in OPS} for n, r in res.items()
    }
    base = med["plaintext"]
    print(f"\n{title}")
    print(f"{'path':<18}" + "".join(f"{op:>11}" for op in OPS) + "   sealed / plaintext")
    ok = True
    for name, m in med.items():
        ratios = {op: m[op] / base[op] for op in OPS}
        text = "  ".join(f"{op} {ratios[op]:4.0%}" for op in OPS) if name != "plaintext" else ""
        print(f"{name:<18}" + "".join(f"{m[op]:>11.0f}" for op in OPS) + f"   {text}")
        ok = ok and (name == "plaintext" or min(ratios.values()) >= TARGET)
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=Path.cwd())
    ap.add_argument("--chunks-kib", default="64,1024")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--samples", action="store_true", help="print every wall-clock measurement")
    args = ap.parse_args()
    size = args.mib * MIB
    chunks = [int(c) * 1024 for c in args.chunks_kib.split(",")]
    dek = new_data_key()
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="evault-bench-crypto-", dir=args.dir))
    try:
        src = work / "source"
        make_source(src, size)
        expect = plain_read(src)
        paths: dict[str, tuple[Callable[[Path, Path], str], Callable[[Path], str]]] = {
            "plaintext": (plain_write, plain_read)
        }
        for c in chunks:
            paths[f"sealed {c // 1024} KiB"] = (sealed_write(dek, c), sealed_read(dek))
        res: dict[str, dict[str, list[tuple[float, float]]]] = {
            name: {op: [] for op in OPS} for name in paths
        }
        names = list(paths)
        for rnd in range(args.repeat):
            for name in names[rnd % len(names) :] + names[: rnd % len(names)]:  # rotate order
                write, read = paths[name]
                dst = work / "dst"
                os.sync()
                read_through(src)
                res[name]["write"].append(timed(partial(write, src, dst), expect, size))
                read_through(dst)
                res[name]["read warm"].append(timed(partial(read, dst), expect, size))
                drop_cache(dst)
                res[name]["read cold"].append(timed(partial(read, dst), expect, size))
                dst.unlink()
        if args.samples:
            for name, r in res.items():
                print(name, {op: [round(x[0]) for x in v] for op, v in r.items()})
        print(
            f"{args.mib} MiB object, {os.cpu_count()} CPUs, {args.repeat} round(s), medians; "
            f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
            "(other work on the machine makes wall-clock figures noisy)"
        )
        ok = report(res, 0, "wall clock, MB/s (includes fsync and disk)")
        cpu_ok = report(res, 1, "MB per user-CPU second (hashing + crypto; no kernel I/O, no disk)")
        verdict = "met" if ok else "NOT met"
        print(
            f"\ntarget: sealed throughput >= {TARGET:.0%} of plaintext (wall clock): {verdict}\n"
            f"(no target) CPU per byte, sealed >= {TARGET:.0%} of plaintext's rate: "
            f"{'yes' if cpu_ok else 'no'}: with every core busy, sealed reads and writes run "
            "at about the CPU ratio above"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
