"""``evault ingest FILE… --dock ID``: take files by hand through the dock acquisition path.

Files inside the dock's folder are acquired and released exactly as the watcher would (but
without waiting for them to settle: the operator says they are complete); files outside it (a
USB stick, a re-import) are acquired and never moved or deleted. One JSON line per file goes to
standard output: the receipt, or what happened instead. Exit status 0 only if every file was
acquired or recognised as already held. A name that does not exist is refused before anything is
ingested (``evault: no such file: NAME``, exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from api.config import Config
from api.runtime import open_runtime
from ingest.acquire import Deferred
from ingest.dockfs import display
from ingest.quarantine import Quarantined
from ingest.service import open_acquirer
from vault.errors import BadRequest


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ingest", help="acquire files by hand (USB stick, re-import) as if offered by a dock"
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--dock", required=True, help="dock id the files are recorded under")
    p.set_defaults(func=ingest)


def ingest(args: argparse.Namespace, cfg: Config) -> Coroutine[Any, Any, int]:
    """Refuse names that do not exist (before anything is opened), then acquire the files."""
    missing = [name for name in args.files if not Path(name).exists()]
    if missing:  # before anything is opened or acquired: most likely a mistyped name
        raise BadRequest(
            ("no such file: " if len(missing) == 1 else "no such files: ")
            + ", ".join(display(os.fsencode(n)) for n in missing)
            + " (nothing was ingested)"
        )
    return _ingest(args, cfg)


async def _ingest(args: argparse.Namespace, cfg: Config) -> int:
    status = 0
    async with open_runtime(cfg) as rt:
        acquirer = open_acquirer(cfg, rt.ledger, rt.storage)
        dock = acquirer.dock(args.dock)
        for name in args.files:
            outcome = await acquirer.acquire_path(dock, name)
            shown = display(os.fsencode(name))
            line: dict[str, Any]
            if isinstance(outcome, Deferred):
                status = 1
                line = {"file": shown, "deferred": outcome.reason, "detail": outcome.detail}
            elif isinstance(outcome, Quarantined):
                status = 1
                where = None if outcome.stored_as is None else str(outcome.stored_as)
                line = {
                    "file": shown,
                    "quarantined": outcome.reason,
                    "ledger_index": outcome.ledger_index,
                    "stored_as": where,
                }
            else:
                line = {"file": shown, "receipt": outcome.to_json()}
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    return status
