"""Bench: verifying a package vs plain hashlib SHA-256 of the same files, in the same run.

Builds a valid package of ``--gib`` GiB (default 4) of random files with the test package
builder (tests/verify/package_builder.py: in-memory ledger, real signatures and proofs), reads
every file once so the page cache is warm for both sides, then times, alternately and
``--rounds`` times each:

* ``hashlib``: SHA-256 of each listed file, one after another, reading 1 MiB chunks (the
  textbook loop), and ``hashlib.file_digest`` (takes the faster of the two, to be strict);
* ``verify_package``: the whole verification (signatures, proofs, openings, every file hash).

Prints the best time of each and the ratio verify / hashlib; the target is <= 1.2.
``--zip`` also times the same package as a stored (uncompressed) zip.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "verify")]

from package_builder import build_package  # noqa: E402

from verify.package_checks import verify_package  # noqa: E402

GIB = 1 << 30


def hash_loop(paths: list[Path]) -> list[str]:
    out = []
    for p in paths:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(chunk)
        out.append(h.hexdigest())
    return out


def hash_file_digest(paths: list[Path]) -> list[str]:
    out = []
    for p in paths:
        with p.open("rb") as f:
            out.append(hashlib.file_digest(f, "sha256").hexdigest())
    return out


def timed(fn: object, *args: object) -> float:
    t = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=4.0, help="package size in GiB (default 4)")
    ap.add_argument("--evidence", type=int, default=6, help="evidence items (original + proxy)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where to build (default: a temp dir)")
    ap.add_argument("--zip", action="store_true", help="also time the package as a zip")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="evault-bench-verify-", dir=args.dir))
    try:
        total = int(args.gib * GIB)
        original = total * 3 // (4 * args.evidence)  # a proxy is a third of its original
        t0 = time.perf_counter()
        built = build_package(work / "pkg", sizes=[original] * args.evidence)
        paths = [built.path / f.path for f in built.manifest.files]
        size = sum(p.stat().st_size for p in paths)
        print(f"built {len(paths)} files, {size / GIB:.2f} GiB in {time.perf_counter() - t0:.1f} s")
        for p in paths:  # warm the page cache for both sides
            with p.open("rb") as f:
                while f.read(16 << 20):
                    pass
        verifier = built.signer.verifier
        assert hash_loop(paths) == [f.sha256 for f in built.manifest.files]
        base, ours = [], []
        for _ in range(args.rounds):
            base.append(min(timed(hash_loop, paths), timed(hash_file_digest, paths)))
            t = time.perf_counter()
            report = verify_package(built.path, verifier)
            ours.append(time.perf_counter() - t)
            assert report.verdict == "ok", report.findings
        b, o = min(base), min(ours)
        print(f"cpus: {os.cpu_count()}  python {sys.version.split()[0]}  {hashlib.sha256().name}")
        print(f"hashlib        {b:7.2f} s  {size / b / 2**20:8.0f} MiB/s  (best of {args.rounds})")
        print(f"verify_package {o:7.2f} s  {size / o / 2**20:8.0f} MiB/s  (best of {args.rounds})")
        verdict = "OK" if o / b <= 1.2 else "SLOW"
        print(f"ratio verify/hashlib = {o / b:.2f}  (target <= 1.2)  {verdict}")
        if args.zip:
            z = built.zip_to(work / "pkg.zip")
            shutil.rmtree(built.path)
            zt = min(timed(verify_package, z, verifier) for _ in range(args.rounds))
            print(f"verify zip     {zt:7.2f} s  ratio {zt / b:.2f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
