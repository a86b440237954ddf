"""``evault export CASE --out PKG``: a self-verifying case package for offline review.

Files in a package are PLAINTEXT, also those the vault stores encrypted: a package is for a
court or a reviewer who must open and hash them without our keys. Once written, keeping it safe
(an encrypted volume, controlled hand-over) is the exporter's responsibility; the ``exported``
entry records who exported what.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from api.config import Config
from api.runtime import open_runtime
from vault.access import principals
from vault.review.export import RENDITION_KINDS, export_case


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="export a case as a package that evault-verify checks offline"
    )
    p.add_argument("case")
    p.add_argument("--out", required=True, type=Path, help="package folder (or .zip with --zip)")
    p.add_argument(
        "--renditions",
        default="",
        help=f"comma-separated rendition kinds to include ({', '.join(RENDITION_KINDS)})",
    )
    p.add_argument("--zip", action="store_true", help="write one zip file instead of a folder")
    p.add_argument(
        "--no-originals",
        dest="originals",
        action="store_false",
        help="leave the originals out (with --renditions redacted: share redacted copies only)",
    )
    p.add_argument(
        "--since",
        type=Path,
        help="a checkpoint the reviewer already holds: include a consistency proof from it",
    )
    p.add_argument("--as", dest="as_principal", default="admin", metavar="PRINCIPAL")
    p.set_defaults(func=export)


async def export(args: argparse.Namespace, cfg: Config) -> int:
    kinds = [k.strip() for k in args.renditions.split(",") if k.strip()]
    since = args.since.read_text(encoding="utf-8") if args.since else None
    async with open_runtime(cfg) as rt:
        actor = await principals.load(rt.db.pool, args.as_principal)
        content = rt.storage.content
        result = await export_case(
            rt.ledger, content, actor, args.case, args.out,
            renditions=kinds, as_zip=args.zip, since=since, timezone=cfg.export.timezone,
            timestamp_wait=cfg.anchors.export_wait, witnesses=cfg.anchors.witness_export,
            originals=args.originals,
        )  # fmt: skip
    print(f"wrote {result.path}: {result.files} files, {result.entries} ledger entries")
    print(f"manifest sha256 {result.manifest_sha256} (ledger entry {result.exported_index})")
    for note in result.skipped:
        print(f"skipped {note}")
    print(f"verify with: evault-verify {result.path} --vkey '{rt.signer.vkey}'")
    return 0
