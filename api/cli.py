"""``evault``: the command line. Each command group lives in its own module and registers here.

Every command finds its configuration the same way (see ``api.config``); commands that touch the
database open it directly, so they work with or without a running ``evault serve`` (on the
embedded server they share the one that is running, or start it for their own duration).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any

from api import (
    cmd_access,
    cmd_anchors,
    cmd_backup,
    cmd_demo,
    cmd_export,
    cmd_ingest,
    cmd_keys,
    cmd_ledger,
    cmd_localize,
    cmd_scrub,
    cmd_setup,
)
from api.config import Config, load
from api.logs import setup_logging
from vault.errors import EvaultError

COMMAND_MODULES = [
    cmd_setup,
    cmd_ledger,
    cmd_anchors,
    cmd_access,
    cmd_ingest,
    cmd_export,
    cmd_keys,
    cmd_scrub,
    cmd_localize,
    cmd_backup,
    cmd_demo,
]

Handler = Callable[[argparse.Namespace, Config], Any]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evault", description="evidence-vault: write-once evidence with a Merkle ledger."
    )
    parser.add_argument(
        "--config", help="configuration file (default: $EVAULT_CONFIG or <data>/evault.toml)"
    )
    parser.add_argument("--data", help="data directory (default: $EVAULT_DATA or ./data)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging("warning")
    try:
        cfg = None if getattr(args, "no_config", False) else load(args.config, args.data)
        if cfg is not None:
            setup_logging(cfg.service.log_level if args.command == "serve" else "warning")
        func: Handler = args.func
        result = func(args, cfg)  # type: ignore[arg-type]
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except EvaultError as exc:
        print(f"evault: {exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
