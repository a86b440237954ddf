"""``evault keys rotate`` and ``evault keys list``: the key-encryption keys of sealed content.

``rotate`` creates a new key-encryption key (current at once), re-wraps every data key under
the older ones without re-encrypting any content, retires each old key only when no data key
uses it any more (a file store moves it to ``retired/``: destroy it once no database backup
needs it), and appends a ``key-rotated`` ledger entry. Readers keep working throughout. Only an
``admin`` may rotate. ``list`` shows every key, its state and how many data keys it wraps.
"""

from __future__ import annotations

import argparse
from typing import Any

from api.config import Config
from api.runtime import open_runtime
from vault.access import principals
from vault.storage.keystore_db import kek_usage, rotate_keys
from vault.storage.storage import open_kek_store


def register(sub: Any) -> None:
    p = sub.add_parser("keys", help="key-encryption keys of encrypted (sealed) content")
    keys = p.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)
    r = keys.add_parser(
        "rotate", help="new key-encryption key; re-wrap data keys; retire unused old keys"
    )
    r.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="wait this long after creating the key and before retiring old ones, so writers "
        "and readers that took an old key finish (default 10)",
    )
    r.add_argument("--keep-old", action="store_true", help="re-wrap but retire nothing")
    r.add_argument("--as", dest="as_principal", default="admin", metavar="PRINCIPAL")
    r.set_defaults(func=rotate)
    ls = keys.add_parser("list", help="every key-encryption key, its state and its data keys")
    ls.set_defaults(func=list_keys)


async def rotate(args: argparse.Namespace, cfg: Config) -> int:
    keks = open_kek_store(cfg.keys, cfg.path)
    async with open_runtime(cfg) as rt:
        actor = await principals.load(rt.db.pool, args.as_principal)
        report, idx = await rotate_keys(
            rt.db.pool,
            rt.ledger,
            keks,
            actor,
            grace_seconds=args.grace,
            retire_old=not args.keep_old,
        )
    print(f"new key-encryption key {report.new_kek_id}; {report.rewrapped} data keys re-wrapped")
    for kek_id in report.retired:
        print(f"retired {kek_id}")
    for kek_id in report.kept:
        print(f"kept {kek_id} (still in use, or --keep-old): run again")
    print(f"ledger entry {idx} (key-rotated)")
    return 1 if report.kept and not args.keep_old else 0


async def list_keys(args: argparse.Namespace, cfg: Config) -> int:
    keks = open_kek_store(cfg.keys, cfg.path)
    async with open_runtime(cfg) as rt:
        usage = await kek_usage(rt.db.pool, keks)
    for use in usage:
        print(f"{use.kek_id}\t{use.state}\t{use.objects} data keys")
    if not usage:
        print("no key-encryption key yet (one is created when the first object is sealed)")
    return 0
