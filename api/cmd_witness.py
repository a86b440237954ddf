"""``evault witness``: this service's witness key and the cosignatures of this log.

``evault witness vkey`` prints the witness's cosignature/v1 verifier key (creating the key
once, as ``evault serve`` with ``witness.enabled`` would): give it to the logs this service
witnesses, for their ``[[anchors.witnesses]]`` and ``evault-verify --witness``.
``evault witness cosignatures [--limit N]`` lists the newest stored cosignatures of this log's
checkpoints (size, witness, cosigned time), as the database says.
"""

from __future__ import annotations

import argparse
from typing import Any

from api.config import Config


def register(sub: Any) -> None:
    witness = sub.add_parser("witness", help="witness key (cosignature/v1 vkey) and cosignatures")
    wsub = witness.add_subparsers(dest="witness_command", metavar="SUBCOMMAND", required=True)
    p = wsub.add_parser("vkey", help="print the witness key's vkey (created once if absent)")
    p.set_defaults(func=vkey)
    p = wsub.add_parser("cosignatures", help="list the newest cosignatures of this log")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="newest N to list (20)")
    p.set_defaults(func=cosignatures)


def vkey(args: argparse.Namespace, cfg: Config) -> int:
    from api.routes_witness import witness_key_path, witness_name
    from vault.anchors.witness import load_cosigner

    print(load_cosigner(witness_key_path(cfg), witness_name(cfg)).key.vkey)
    return 0


async def cosignatures(args: argparse.Namespace, cfg: Config) -> int:
    from api.runtime import open_runtime
    from vault.anchors.cosigners import list_cosignatures

    async with open_runtime(cfg) as rt:
        for size, witness, cosigned in await list_cosignatures(rt.db.pool, args.limit):
            print(f"{size}\t{witness}\t{cosigned.isoformat().replace('+00:00', 'Z')}")
    return 0
