"""``evault-verify``: check offline, against a log key given out of band, an evidence package or
any other artefact the service gives out (see :mod:`verify.artefacts`).

Guarantees:

* Exit status 0 only when the artefact verifies completely (verdict ``ok``); 1 tampered,
  2 wrong key, 3 malformed, 4 usage or I/O error (no verdict), 5 a library the verifier needs
  (``cryptography``) is not installed (no verdict; one line saying what to install). argparse's
  own exit status 2 for usage errors is remapped to 4 so that 2 always means "wrong key".
* What the file is comes from its content: a folder or a zip is a package; a signed integrity
  report response, a ``c2sp.org/tlog-proof@v1`` (with ``--entry``, the exact bytes of the entry
  it proves) and a dock receipt are recognised and checked (:mod:`verify.artefacts`, which says
  what each check covers and what a receipt cannot show); anything else is MALFORMED.
* With ``--sm2-key`` the checkpoint of a package or receipt must carry a valid SM2 cosignature
  by that key (:mod:`verify.package_sm2`), checked in pure Python (:mod:`verify.sm2`): SM2
  needs no library here.
* The trusted key comes only from ``--vkey`` or ``--vkey-file``; an artefact's own copy of a
  key is only compared with it.
* With ``--json`` stdout holds exactly one JSON document (:meth:`PackageReport.to_json` or
  :meth:`ArtefactReport.to_json`); the progress bar goes to stderr, and only when stderr is a
  terminal.
* A reader that closes standard output early (``| head``) ends the output quietly: no
  traceback; the exit status is still the verdict's.
* Imports only the standard library, ``cryptography`` and ``verify``, so it runs from the
  single-file ``evault-verify.pyz``; ``cryptography`` only once the arguments are parsed
  (``--help`` works without it, and its absence is reported, not a traceback).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from verify.errors import MalformedError
from verify.report import EXIT_USAGE, VERDICT_LINES
from verify.terminal import columns as _columns

if TYPE_CHECKING:
    from verify.note import Verifier
    from verify.package_sm2 import Sm2Key

__all__ = ["EXIT_MISSING_DEPENDENCY", "main"]

EXIT_MISSING_DEPENDENCY = 5
_MAX_ARTEFACT = 256 << 20  # an artefact that is not a package is read whole

EPILOG = """\
exit status:
  0  VERIFIED    验证通过  every signature, proof, commitment and file hash holds
  1  TAMPERED    已被篡改  something differs from what the log recorded (named in the report)
  2  WRONG KEY   密钥不符  not signed by the key given (or the package carries another key),
                          or fewer than --witness-threshold of the --witness keys cosigned
  3  MALFORMED   格式无效  not a package or artefact in the exact format, or a needed proof is
                          missing
  4  usage or I/O error (bad arguments, unreadable key, --since, --entry, --tsa-ca,
     --sm2-key, --witness or FILE path)
  5  a library evault-verify needs is missing (install it: python3 -m pip install cryptography)

FILE may be:
  a package (folder or .zip)         evault export, GET /v1/exports/{job}/package
  a signed integrity report (.json)  GET /v1/cases/{id}/integrity-report, the console's download
  a tlog-proof, with --entry ENTRY   evault ledger proof N / GET /v1/evidence/{id}/proof, and
                                     the entry's exact bytes: evault ledger entry N > ENTRY
  a dock receipt (.json)             <name>.evault-receipt.json beside the source: its
                                     checkpoint is checked; the report says what a receipt
                                     cannot show

The key must come from a trusted source (not from the package): a vkey looks like
  example.org/log+1a2b3c4d+AeWv...=
"""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise _UsageError(message)

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=_columns() - 2)  # type: ignore[call-arg]


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="evault-verify",
        description=(
            "Verify offline an evidence-vault package (a folder or a .zip), a signed integrity "
            "report, a tlog-proof with its entry, or a dock receipt."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "package",
        type=Path,
        metavar="FILE",
        help="package folder or .zip, integrity report, tlog-proof or receipt",
    )
    key = p.add_mutually_exclusive_group(required=True)
    key.add_argument("--vkey", metavar="KEY", help="the log's trusted verifier key (vkey)")
    key.add_argument("--vkey-file", type=Path, metavar="F", help="file holding the trusted vkey")
    p.add_argument(
        "--entry",
        type=Path,
        metavar="ENTRY",
        help="the exact bytes of the ledger entry a tlog-proof proves (or a receipt names)",
    )
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
    p.add_argument(
        "--sm2-key",
        type=Path,
        metavar="FILE",
        help="PEM file of the SM2 public key or certificate (from the bureau's CA): require the "
        "checkpoint's SM2 cosignature (GM/T 0003, SM3) by it",
    )
    p.add_argument(
        "--sm2-id",
        default="1234567812345678",
        metavar="ID",
        help="the SM2 signer's user ID (default: GM/T 0009's 1234567812345678)",
    )
    p.add_argument(
        "--witness",
        action="append",
        default=[],
        metavar="VKEY",
        help="a trusted witness's cosignature/v1 vkey (name+keyid+base64(0x04||key)); "
        "repeat for each witness",
    )
    p.add_argument(
        "--witness-threshold",
        type=int,
        metavar="N",
        help="how many distinct --witness keys must have cosigned the package's checkpoint "
        "(default 1 when --witness is given)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="print only the verdict")
    return p


def _witnesses(args: argparse.Namespace) -> tuple[Any, int]:
    """(trusted witness keys or None, threshold) from --witness and --witness-threshold."""
    from verify.cosignature import parse_cosigner_vkey

    n = args.witness_threshold
    if not args.witness:
        if n is not None:
            raise _UsageError("--witness-threshold needs at least one --witness VKEY")
        return None, 0
    keys = []
    for text in args.witness:
        try:
            keys.append(parse_cosigner_vkey(text))
        except MalformedError as exc:
            raise _UsageError(f"--witness {text!r}: {exc}") from exc
    if len({(k.name, k.key_id) for k in keys}) != len(keys):
        raise _UsageError("--witness: the same witness key is given twice")
    n = 1 if n is None else n
    if not 1 <= n <= len(keys):
        raise _UsageError(
            f"--witness-threshold {n}: must be between 1 and the {len(keys)} --witness keys given"
        )
    return keys, n


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
    from verify.errors import MalformedError
    from verify.note import parse_vkey

    text = args.vkey if args.vkey is not None else args.vkey_file.read_text("utf-8").strip()
    try:
        return parse_vkey(text)
    except MalformedError as exc:
        raise _UsageError(f"the trusted key is not a valid vkey: {exc}") from exc


class _Sm2KeyError(Exception):
    pass


def _sm2_key(args: argparse.Namespace) -> Sm2Key | None:
    """The SM2 key of ``--sm2-key`` (pure Python: no library needed), or None."""
    from verify.package_sm2 import Sm2Key
    from verify.sm2 import load_public_key

    if args.sm2_key is None:
        return None
    try:
        public = load_public_key(args.sm2_key.read_bytes())
    except MalformedError as exc:
        raise _Sm2KeyError(str(exc)) from exc
    user_id = args.sm2_id.encode("utf-8")
    if not user_id or len(user_id) > 8191:
        raise _UsageError("--sm2-id must be 1 to 8191 bytes")
    return Sm2Key(public, user_id)


def _missing(exc: ModuleNotFoundError) -> int:
    name = (exc.name or "a module").split(".")[0]
    print(
        f"evault-verify: error: the Python package {name!r} is not installed; install it "
        f"(python3 -m pip install {name}) and run again: no verdict",
        file=sys.stderr,
    )
    return EXIT_MISSING_DEPENDENCY


def _stdout_closed() -> None:
    """The reader went away: point stdout at /dev/null so the final flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _emit(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_closed()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``evault-verify``; returns the exit status (see :data:`EPILOG`)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except _UsageError as exc:
        print(f"evault-verify: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        import cryptography.hazmat.primitives.asymmetric.ed25519  # noqa: F401 (needed below)

        from verify import artefacts, package  # noqa: F401
        from verify.timestamp import load_tsa_certs

        verifier = _key(args)
        witnesses = _witnesses(args)
        tsa_ca = load_tsa_certs(args.tsa_ca.read_bytes()) if args.tsa_ca is not None else None
        if tsa_ca == ():
            raise _UsageError(f"{args.tsa_ca}: no certificate in it")
        sm2 = _sm2_key(args)
    except ModuleNotFoundError as exc:
        return _missing(exc)
    except _UsageError as exc:
        print(f"evault-verify: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, UnicodeDecodeError) as exc:
        print(f"evault-verify: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MalformedError as exc:
        print(f"evault-verify: error: --tsa-ca: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _Sm2KeyError as exc:
        print(f"evault-verify: error: --sm2-key {args.sm2_key}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    import zipfile

    try:
        since = args.since.read_text("utf-8") if args.since is not None else None
        entry = args.entry.read_bytes() if args.entry is not None else None
        path: Path = args.package
        data = None
        if not path.is_dir() and not zipfile.is_zipfile(path):
            with path.open("rb") as f:
                data = f.read(_MAX_ARTEFACT)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"evault-verify: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if data is not None and artefacts.kind_of(data) is not None:
        if witnesses[0] is not None:
            print(
                "evault-verify: error: --witness checks a package's cosignatures; "
                f"{path} is not a package",
                file=sys.stderr,
            )
            return EXIT_USAGE
        try:
            art = artefacts.check_artefact(str(path), data, verifier, entry=entry, sm2=sm2)
        except artefacts.NeedsEntry as exc:
            print(f"evault-verify: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if args.json:
            _emit(art.to_json() + "\n")
        elif args.quiet:
            _emit(VERDICT_LINES[art.verdict] + "\n")
        else:
            _emit(artefacts.render_artefact_text(art))
        return art.exit_code
    return _package(args, verifier, since, tsa_ca, sm2, witnesses)


def _package(
    args: argparse.Namespace,
    verifier: Verifier,
    since: str | None,
    tsa_ca: Any,
    sm2: Any,
    witnesses: tuple[Any, int],
) -> int:
    from verify.package_checks import verify_package as check
    from verify.report import render_text

    progress = _Progress() if sys.stderr.isatty() and not args.quiet else None
    try:
        report = check(
            args.package,
            verifier,
            since=since,
            progress=progress,
            tsa_ca=tsa_ca,
            sm2=sm2,
            witnesses=witnesses[0],
            witness_threshold=witnesses[1],
        )
    except OSError as exc:
        print(f"evault-verify: error: cannot open the package: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if progress is not None:
            progress.finish()
    if args.json:
        _emit(report.to_json() + "\n")
    elif args.quiet:
        _emit(VERDICT_LINES[report.verdict] + "\n")
    else:
        _emit(render_text(report))
    return report.exit_code
