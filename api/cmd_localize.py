"""``evault localize SUSPECT (--evidence ID | --package PKG --index N)``: tamper localisation.

Exit status: 0 identical (every decoded frame and sample equal: the same file or a remux),
1 the same recording re-encoded (perceptually equal, decoded content not identical),
3 altered (the same recording with differing time ranges), 4 not the same recording,
2 error (no such evidence or none visible, no fingerprint, a damaged fingerprint or package,
media that cannot be decoded, refused access).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from api.config import Config
from api.runtime import open_runtime
from ingest.forensics.localize import (
    Localization,
    Original,
    dumps,
    localize,
    original_from_package,
    original_from_vault,
)
from ingest.media import Tools
from ingest.mediajobs import media_limits
from vault.access import principals
from vault.errors import BadRequest
from verify.errors import MalformedError
from verify.note import parse_vkey
from verify.package_checks import verify_package

EPILOG = __doc__.split("\n\n", 1)[1] if __doc__ else ""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "localize",
        help="compare a suspect copy with the original's fingerprint: where does it differ?",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("suspect", type=Path, metavar="SUSPECT", help="the copy to examine")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--evidence", metavar="ID", help="the original in the vault")
    src.add_argument("--package", type=Path, metavar="PKG", help="the original in a package")
    p.add_argument(
        "--index",
        type=int,
        metavar="N",
        help="with --package: the ledger index of the original's `acquired` entry",
    )
    p.add_argument(
        "--vkey",
        metavar="KEY",
        help="with --package: verify the whole package against this trusted key first",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--as", dest="as_principal", default="admin", metavar="PRINCIPAL")
    p.set_defaults(func=cmd_localize)


async def cmd_localize(args: argparse.Namespace, cfg: Config) -> int:
    tools = Tools(ffmpeg=cfg.media.ffmpeg, ffprobe=cfg.media.ffprobe)
    limits = media_limits(cfg.media)
    if args.package is not None:
        original = _from_package(args)
        loc = await localize(original, args.suspect, tools=tools, limits=limits)
    else:
        if args.index is not None or args.vkey is not None:
            raise BadRequest("--index and --vkey go with --package")
        async with open_runtime(cfg) as rt:
            actor = await principals.load(rt.db.pool, args.as_principal)
            content = rt.storage.content
            original = await original_from_vault(
                rt.db.pool, rt.ledger, content, actor, args.evidence
            )
        loc = await localize(original, args.suspect, tools=tools, limits=limits)
    _print(loc, as_json=args.json)
    return loc.exit_code


def _from_package(args: argparse.Namespace) -> Original:
    if args.index is None:
        raise BadRequest("--package needs --index N (the ledger index of the original)")
    if args.vkey is not None:
        try:
            verifier = parse_vkey(args.vkey)
        except MalformedError as exc:
            raise BadRequest(f"--vkey is not a valid verifier key: {exc}") from exc
        try:
            report = verify_package(args.package, verifier)
        except OSError as exc:
            raise BadRequest(f"{args.package}: cannot open the package: {exc}") from exc
        if report.verdict != "ok":
            first = report.findings[0].message if report.findings else report.verdict
            raise BadRequest(
                f"{args.package} does not verify ({report.verdict}): {first}; "
                "see `evault-verify` for the full report"
            )
    return original_from_package(args.package, args.index)


def _print(loc: Localization, *, as_json: bool) -> None:
    if as_json:
        print(dumps(loc))
    else:
        sys.stdout.write(loc.text())
