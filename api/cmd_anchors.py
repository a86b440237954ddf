"""``evault timestamps``: the RFC 3161 time-stamps of checkpoints ([anchors]).

Without options, lists the newest stored tokens (size, attested time, TSA) as the database
says. With ``--check``, verifies every stored token the way ``evault-verify --tsa-ca`` does,
trusting nothing in the database: the checkpoint of its size must carry the log's signature
and the token must verify for that checkpoint's body against the TSA CA (``--tsa-ca`` or
``anchors.tsa_ca_file``). Exit status 1 names each token that does not.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from api.config import Config
from api.runtime import open_runtime
from vault.anchors.timestamps import check_timestamps, list_timestamps
from vault.errors import ConfigError
from verify.errors import MalformedError
from verify.timestamp import load_tsa_certs


def register(sub: Any) -> None:
    p = sub.add_parser(
        "timestamps",
        help="list the checkpoints' RFC 3161 time-stamps; --check verifies every one",
    )
    p.add_argument("--check", action="store_true", help="verify every stored token (exit 1 if not)")
    p.add_argument("--tsa-ca", type=Path, metavar="FILE", help="TSA CA (default: tsa_ca_file)")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="newest N to list (20)")
    p.set_defaults(func=timestamps)


async def timestamps(args: argparse.Namespace, cfg: Config) -> int:
    async with open_runtime(cfg) as rt:
        if not args.check:
            for t in await list_timestamps(rt.db.pool, args.limit):
                print(f"{t.size}\t{t.gen_time.isoformat().replace('+00:00', 'Z')}\t{t.tsa}")
            return 0
        ca = args.tsa_ca or (
            cfg.path(Path(cfg.anchors.tsa_ca_file)) if cfg.anchors.tsa_ca_file else None
        )
        if ca is None:
            raise ConfigError("--check needs the TSA's CA: --tsa-ca FILE or anchors.tsa_ca_file")
        try:
            cas = load_tsa_certs(ca.read_bytes())
        except (OSError, MalformedError) as exc:
            raise ConfigError(f"{ca}: {exc}") from exc
        checked, problems = await check_timestamps(rt.db.pool, rt.ledger.verifier, cas)
    for problem in problems:
        print(f"FAIL: {problem}")
    print(f"{checked} time-stamps checked, {len(problems)} failed")
    return 1 if problems else 0
