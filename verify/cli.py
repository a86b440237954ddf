"""``evault-verify``: check an evidence package offline, against a log key given out of band.

Guarantees:

* Exit status 0 only when the package verifies completely (verdict ``ok``); 1 tampered,
  2 wrong key, 3 malformed, 4 usage or I/O error (no verdict). argparse's own exit status 2
  for usage errors is remapped to 4 so that 2 always means "wrong key".
* The trusted key comes only from ``--vkey`` or ``--vkey-file``; the package's own ``vkey``
  copy is only compared with it.
* With ``--json`` stdout holds exactly one JSON document (:meth:`PackageReport.to_json`);
  the progress bar goes to stderr, and only when stderr is a terminal.
* Imports only the standard library, ``cryptography`` and ``verify``, so it runs from the
  single-file ``evault-verify.pyz``.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from verify.errors import MalformedError
from verify.note import Verifier, parse_vkey
from verify.package_checks import verify_package
from verify.report import EXIT_USAGE, VERDICT_LINES, render_text
from verify.timestamp import load_tsa_certs

__all__ = ["main"]

EPILOG = """\
exit status:
  0  VERIFIED    验证通过  every signature, proof, commitment and file hash holds
  1  TAMPERED    已被篡改  something differs from what the log recorded (named in the report)
  2  WRONG KEY   密钥不符  not signed by the key given (or the package carries another key)
  3  MALFORMED   格式无效  not a package in the exact format, or a needed proof is missing
  4  usage or I/O error (bad arguments, unreadable key, --since, --tsa-ca or package path)

With --tsa-ca, the package's RFC 3161 time-stamp (timestamp.tsr) must verify against that CA
and be for the package's checkpoint; its attested time is printed. An edited token or one for
another checkpoint is TAMPERED, one not from that TSA (or from an expired certificate) WRONG KEY.

The key must come from a trusted source (not from the package): a vkey looks like
  example.org/log+1a2b3c4d+AeWv...=
"""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="evault-verify",
        description="Verify an evidence-vault package (a folder or a .zip) offline.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("package", type=Path, metavar="PKG", help="package folder or .zip")
    key = p.add_mutually_exclusive_group(required=True)
    key.add_argument("--vkey", metavar="KEY", help="the log's trusted verifier key (vkey)")
    key.add_argument("--vkey-file", type=Path, metavar="F", help="file holding the trusted vkey")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--since",
        type=Path,
        metavar="CHECKPOINT_FILE",
        help="a checkpoint seen before: require the package's to be consistent with it",
    )
    p.add_argument(
        "--tsa-ca",
        type=Path,
        metavar="FILE",
        help="PEM file of the time-stamping authority's CA: check the checkpoint's RFC 3161 "
        "time-stamp against it and print the attested time",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="print only the verdict")
    return p


class _Progress:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        frac = done / total if total else 1.0
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\rhashing [{bar:<30}] {frac:4.0%} {done / 2**20:,.0f} MiB")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.last:
            sys.stderr.write("\r" + " " * 70 + "\r")
            sys.stderr.flush()


def _key(args: argparse.Namespace) -> Verifier:
    text = args.vkey if args.vkey is not None else args.vkey_file.read_text("utf-8").strip()
    try:
        return parse_vkey(text)
    except MalformedError as exc:
        raise _UsageError(f"the trusted key is not a valid vkey: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``evault-verify``; returns the exit status (see :data:`EPILOG`)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        args = _parser().parse_args(argv)
        verifier = _key(args)
        since = args.since.read_text("utf-8") if args.since is not None else None
        tsa_ca = load_tsa_certs(args.tsa_ca.read_bytes()) if args.tsa_ca is not None else None
        if tsa_ca == ():
            raise _UsageError(f"{args.tsa_ca}: no certificate in it")
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except _UsageError as exc:
        print(f"evault-verify: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, UnicodeDecodeError) as exc:
        print(f"evault-verify: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MalformedError as exc:
        print(f"evault-verify: error: --tsa-ca: {exc}", file=sys.stderr)
        return EXIT_USAGE
    progress = _Progress() if sys.stderr.isatty() and not args.quiet else None
    try:
        report = verify_package(
            args.package, verifier, since=since, progress=progress, tsa_ca=tsa_ca
        )
    except OSError as exc:
        print(f"evault-verify: error: cannot open the package: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if progress is not None:
            progress.finish()
    if args.json:
        print(report.to_json())
    elif args.quiet:
        print(VERDICT_LINES[report.verdict])
    else:
        print(render_text(report), end="")
    return report.exit_code
