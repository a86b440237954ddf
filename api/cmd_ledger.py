"""``evault ledger …``: notes, checkpoints, entries, proofs, the verifier key, fsck (of the
ledger, or with ``--state`` of the tables against the ledger).

Guarantees: ``entry`` writes exactly the logged bytes (nothing added), so the file it is
redirected to is the entry a tlog-proof proves; ``consistency`` refuses (exit 2, before touching
the database) an older size of 0, for which RFC 9162 defines no proof, and an older size above
the newer. ``vkey`` reads only the configuration's ``[ledger]`` section (checked as every
command checks it; other sections are not read, ``api.configfile``) and the key files (the vkey
``init`` wrote beside the signing key when it is that key's, else derived from the key): it
imports neither the database driver nor the ledger (the commands that need them import them
when run).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import TYPE_CHECKING, Any

from vault.errors import BadRequest

if TYPE_CHECKING:
    import contextlib

    from api.config import Config
    from api.runtime import Runtime


def open_runtime(cfg: Config) -> contextlib.AbstractAsyncContextManager[Runtime]:
    from api.runtime import open_runtime as open_

    return open_(cfg)


def register(sub: Any) -> None:
    ledger = sub.add_parser("ledger", help="the Merkle ledger")
    lsub = ledger.add_subparsers(dest="ledger_command", metavar="SUBCOMMAND", required=True)

    p = lsub.add_parser("note", help="append operator notes, one entry per text")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.set_defaults(func=note)

    p = lsub.add_parser("checkpoint", help="sign a checkpoint now and print it")
    p.set_defaults(func=checkpoint)

    p = lsub.add_parser("entry", help="print the exact logged bytes of an entry")
    p.add_argument("index", type=int)
    p.set_defaults(func=entry)

    p = lsub.add_parser(
        "proof", help="print a tlog-proof@v1 of an entry against the latest checkpoint"
    )
    p.add_argument("index", type=int)
    p.set_defaults(func=proof)

    p = lsub.add_parser(
        "consistency", help="print a consistency proof between two sizes (base64 lines)"
    )
    p.add_argument("old", type=int)
    p.add_argument("new", type=int)
    p.set_defaults(func=consistency)

    p = lsub.add_parser("vkey", help="print the log's verifier key (C2SP vkey)")
    # Reads [ledger] and the key files only, logs nothing: starts faster.
    p.set_defaults(func=vkey, logs=False, no_config=True)

    p = lsub.add_parser(
        "fsck", help="recompute every tile and root; check every checkpoint and batch tag"
    )
    p.add_argument(
        "--state",
        action="store_true",
        help="instead: replay the ledger and compare the tables that decide access or point at"
        " bytes with the state it implies (one line per difference)",
    )
    p.add_argument("--json", action="store_true", help="with --state: findings as JSON lines")
    p.set_defaults(func=run_fsck)


async def note(args: argparse.Namespace, cfg: Config) -> int:
    from vault.ledger import make_entry

    entries = [make_entry("note", {"text": t}) for t in args.texts]
    async with open_runtime(cfg) as rt:
        indexes = await rt.ledger.append(entries)
        cp = await rt.ledger.checkpoint()
    for i in indexes:
        print(i)
    print(f"checkpoint size {cp.size}", file=sys.stderr)
    return 0


async def checkpoint(args: argparse.Namespace, cfg: Config) -> int:
    async with open_runtime(cfg) as rt:
        cp = await rt.ledger.checkpoint()
    sys.stdout.write(cp.note)
    return 0


async def entry(args: argparse.Namespace, cfg: Config) -> int:
    async with open_runtime(cfg) as rt:
        data = await rt.ledger.entry(args.index)
    sys.stdout.flush()
    sys.stdout.buffer.write(data)  # exactly the logged bytes: no newline added
    sys.stdout.buffer.flush()
    return 0


async def proof(args: argparse.Namespace, cfg: Config) -> int:
    async with open_runtime(cfg) as rt:
        text = await rt.ledger.tlog_proof(args.index)
    sys.stdout.write(text)
    return 0


async def consistency(args: argparse.Namespace, cfg: Config) -> int:
    if args.old < 1:
        raise BadRequest(
            f"no consistency proof from tree size {args.old}: RFC 9162 defines none for an "
            "empty tree (every tree extends it); give an older size of at least 1"
        )
    if args.old > args.new:
        raise BadRequest(f"the older size {args.old} exceeds the newer size {args.new}")
    async with open_runtime(cfg) as rt:
        hashes = await rt.ledger.consistency(args.old, args.new)
    for h in hashes:
        print(base64.b64encode(h).decode())
    return 0


def vkey(args: argparse.Namespace, _cfg: None) -> int:
    from api.configfile import load_ledger
    from vault.keys.signing import load_signer, recorded_vkey

    ledger, data = load_ledger(args.config, args.data)
    path = ledger.key_file if ledger.key_file.is_absolute() else data / ledger.key_file
    print(recorded_vkey(path) or load_signer(path).vkey)
    return 0


async def run_fsck(args: argparse.Namespace, cfg: Config) -> int:
    if args.state:
        return await run_fsck_state(args, cfg)
    from vault.ledger.fsck import fsck

    async with open_runtime(cfg) as rt, rt.db.pool.acquire() as conn:
        report = await fsck(conn, rt.ledger.verifier, rt.ledger.log_path, rt.mac)
    for problem in report.problems:
        print(f"FAIL: {problem}")
    if report.ok:
        print(
            f"ok: {report.size} entries, {report.checkpoints_checked} checkpoints verified, "
            f"{report.batches_checked} batches authenticated"
        )
        return 0
    where = "" if report.first_bad_index is None else f"; first bad index {report.first_bad_index}"
    print(f"fsck found {len(report.problems)} problem(s){where}")
    return 1


async def run_fsck_state(args: argparse.Namespace, cfg: Config) -> int:
    """``fsck --state``: exit 1 when a stored row differs from what the ledger implies."""
    from vault.statecheck import NOT_RECORDED_COLUMNS, fsck_state

    async with open_runtime(cfg) as rt, rt.db.pool.acquire() as conn:
        report = await fsck_state(conn)
    for finding in report.findings:
        print(json.dumps(finding.to_json(), ensure_ascii=False) if args.json else finding.line())
    rows = sum(report.rows.values())
    summary = (
        f"fsck --state: {report.entries} entries replayed, {rows} rows compared, "
        f"{len(report.findings)} finding(s)"
    )
    print(summary, file=sys.stderr if args.json else sys.stdout)
    if report.unchecked:
        skipped = ", ".join(f"{c} ({n} rows)" for c, n in sorted(report.unchecked.items()))
        print(f"not checked, not recorded by older entries: {skipped}", file=sys.stderr)
    never = "; ".join(f"{t}: {', '.join(cs)}" for t, cs in NOT_RECORDED_COLUMNS.items())
    print(f"not checked: not recorded in the ledger: {never}", file=sys.stderr)
    return 0 if report.ok else 1
