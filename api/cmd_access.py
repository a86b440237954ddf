"""``evault principal|token|case|audit|retention …``: access control from the command line.

Every command acts as one principal (``--as``, default ``admin``, which the default
configuration seeds at start) and goes through the same decisions, ledger entries and
visibility filters as the API: a listing shows only what that principal may list, and an item
it may not see is reported exactly like one that does not exist. A token is printed once,
when it is created. ``evault adopt-access-state`` (no ``--as``: the host acts, with its key)
tags the access rows an upgraded database holds from before row tags (``vault.access.adopt``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg

from api.config import Config
from api.runtime import Runtime, open_runtime
from vault.access import adopt as access_adopt
from vault.access import principals, tokens, trails
from vault.cases import links as cases
from vault.ops import disposition
from vault.ops.retention import RetentionPolicy
from vault.policy.decide import Principal
from vault.policy.labels import Caveat, Label, Level


def _add(sub: Any, name: str, help: str, func: Callable[..., Any]) -> Any:
    p = sub.add_parser(name, help=help)
    p.add_argument(
        "--as",
        dest="as_principal",
        default="admin",
        metavar="PRINCIPAL",
        help="act as this principal (default: admin)",
    )
    p.set_defaults(func=func)
    return p


def register(sub: Any) -> None:
    group = sub.add_parser("principal", help="people, docks and modules that may act")
    gs = group.add_subparsers(dest="principal_command", metavar="SUBCOMMAND", required=True)
    p = _add(gs, "add", "add a principal", principal_add)
    p.add_argument("id")
    p.add_argument("--role", action="append", required=True, dest="roles")
    p.add_argument("--clearance", default="internal", help="level slug (public ... top_secret)")
    p.add_argument("--caveat", action="append", default=[], dest="caveats")
    p.add_argument("--officer-id")
    p.add_argument("--dock", action="append", default=[], dest="docks")
    p.add_argument("--name", default="", help="display name")
    _add(gs, "list", "list principals", principal_list)
    for name, func in (("disable", principal_disable), ("enable", principal_enable)):
        _add(gs, name, f"{name} a principal", func).add_argument("id")
    for name, func in (("assign", principal_assign), ("unassign", principal_unassign)):
        p = _add(gs, name, f"{name} a case (need-to-know)", func)
        p.add_argument("id")
        p.add_argument("case")
    p = gs.choices["assign"]
    p.add_argument(
        "--force",
        action="store_true",
        help="assign even though the principal is not cleared for the case's label (warns)",
    )

    group = sub.add_parser("token", help="bearer tokens for the API")
    gs = group.add_subparsers(dest="token_command", metavar="SUBCOMMAND", required=True)
    p = _add(gs, "create", "issue a token (printed once)", token_create)
    p.add_argument("principal")
    p.add_argument("--ttl-days", type=int, default=90)
    p.add_argument("--comment", default="")
    _add(gs, "revoke", "revoke a token by its id", token_revoke).add_argument("token_id")

    group = sub.add_parser("case", help="cases and their evidence")
    gs = group.add_subparsers(dest="case_command", metavar="SUBCOMMAND", required=True)
    p = _add(gs, "add", "register a case", case_add)
    p.add_argument("id")
    p.add_argument("--title", required=True)
    p.add_argument(
        "--label", default="internal", help="level[+caveat...], e.g. secret+personal_privacy"
    )
    for name, func in (("link", case_link), ("unlink", case_unlink)):
        p = _add(gs, name, f"{name} evidence", func)
        p.add_argument("case")
        p.add_argument("evidence")
    _add(gs, "show", "show a case and its visible evidence", case_show).add_argument("case")

    p = sub.add_parser(
        "adopt-access-state",
        help="tag the access rows written before row tags existed (once, right after upgrading)",
    )
    p.set_defaults(func=adopt_access_state)

    p = _add(sub, "audit", "the ledger trail of a case, an evidence item or a principal", audit_cmd)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--case")
    which.add_argument("--evidence")
    which.add_argument("--principal")

    group = sub.add_parser("retention", help="retention periods, holds and disposal")
    gs = group.add_subparsers(dest="retention_command", metavar="SUBCOMMAND", required=True)
    for name, func in (("report", retention_report), ("run", retention_run)):
        p = _add(
            gs,
            name,
            "list what would be disposed of, and why"
            if name == "report"
            else "dispose of what the report lists",
            func,
        )
        p.add_argument("--ordinary-days", type=int, default=RetentionPolicy().ordinary_days)
        p.add_argument(
            "--important-days",
            type=int,
            default=None,
            help="default: important footage is kept permanently",
        )


@asynccontextmanager
async def _acting(
    cfg: Config, args: argparse.Namespace
) -> AsyncIterator[tuple[Runtime, Principal]]:
    async with open_runtime(cfg) as rt:
        actor = await principals.load(rt.db.pool, args.as_principal)
        yield rt, actor


async def principal_add(args: argparse.Namespace, cfg: Config) -> int:
    spec = principals.PrincipalSpec(
        id=args.id,
        roles=principals.parse_roles(args.roles),
        clearance=Level.parse(args.clearance),
        caveats=frozenset(Caveat.parse(c) for c in args.caveats),
        officer_id=args.officer_id,
        dock_ids=frozenset(args.docks),
        display_name=args.name,
    )
    async with _acting(cfg, args) as (rt, actor):
        idx = await principals.add(rt.db.pool, rt.ledger, actor, spec)
    print(f"added {args.id} (ledger entry {idx})")
    return 0


async def principal_list(args: argparse.Namespace, cfg: Config) -> int:
    async with _acting(cfg, args) as (rt, actor):
        records = await principals.list_principals(rt.db.pool, rt.ledger, actor)
    for r in records:
        p = r.principal
        label = Label(p.clearance, p.caveats)
        print(
            f"{p.id}\t{'active' if p.active else 'disabled'}\t{label}\t"
            f"roles={','.join(sorted(p.roles))}\tcases={','.join(sorted(p.cases))}"
            + (f"\tofficer={p.officer_id}" if p.officer_id else "")
            + (f"\tdocks={','.join(sorted(p.dock_ids))}" if p.dock_ids else "")
        )
    return 0


async def principal_disable(args: argparse.Namespace, cfg: Config) -> int:
    async with _acting(cfg, args) as (rt, actor):
        await principals.disable(rt.db.pool, rt.ledger, actor, args.id)
    print(f"disabled {args.id}")
    return 0


async def principal_enable(args: argparse.Namespace, cfg: Config) -> int:
    async with _acting(cfg, args) as (rt, actor):
        await principals.enable(rt.db.pool, rt.ledger, actor, args.id)
    print(f"enabled {args.id}")
    return 0


async def principal_assign(args: argparse.Namespace, cfg: Config) -> int:
    async with _acting(cfg, args) as (rt, actor):
        gap = None
        if args.force:
            gap = await principals.clearance_gap(rt.db.pool, actor, args.id, args.case)
        await principals.assign(rt.db.pool, rt.ledger, actor, args.id, args.case, force=args.force)
    print(f"assigned {args.id} to {args.case}")
    if gap is not None:
        warning = gap.removesuffix(" or pass --force")
        print(
            f"warning: forced: {warning}; until then it sees nothing of the case", file=sys.stderr
        )
    return 0


async def principal_unassign(args: argparse.Namespace, cfg: Config) -> int:
    async with _acting(cfg, args) as (rt, actor):
        await principals.unassign(rt.db.pool, rt.ledger, actor, args.id, args.case)
    print(f"unassigned {args.id} from {args.case}")
    return 0


async def token_create(args: argparse.Namespace, cfg: Config) -> int:
    async with _acting(cfg, args) as (rt, actor):
        issued = await tokens.create(
            rt.db.pool,
            rt.ledger,
            actor,
            args.principal,
            timedelta(days=args.ttl_days),
            comment=args.comment,
        )
    print(issued.token)
    print(f"token id {issued.id}, expires {issued.expires_at.isoformat()}", file=sys.stderr)
    return 0


async def token_revoke(args: argparse.Namespace, cfg: Config) -> int:
    async with _acting(cfg, args) as (rt, actor):
        await tokens.revoke(rt.db.pool, rt.ledger, actor, args.token_id)
    print(f"revoked {args.token_id}")
    return 0


async def case_add(args: argparse.Namespace, cfg: Config) -> int:
    label = Label.from_wire(args.label, "--label")
    async with _acting(cfg, args) as (rt, actor):
        await cases.create(rt.db.pool, rt.ledger, actor, args.id, args.title, label)
    print(f"case {args.id} registered ({label})")
    return 0


async def case_link(args: argparse.Namespace, cfg: Config) -> int:
    async with _acting(cfg, args) as (rt, actor):
        done = await cases.link_reporting(rt.db.pool, rt.ledger, actor, args.case, args.evidence)
        await rt.extend_locks(args.evidence)
    print(f"linked {args.evidence} to {args.case} (ledger entry {done.index})")
    if done.raised:
        print(
            f"label raised from {done.previous} to {done.label}: readers cleared for"
            f" {done.previous} but not {done.label} no longer see {args.evidence}, in any case"
        )
    return 0


async def case_unlink(args: argparse.Namespace, cfg: Config) -> int:
    async with _acting(cfg, args) as (rt, actor):
        idx = await cases.unlink(rt.db.pool, rt.ledger, actor, args.case, args.evidence)
    print(f"unlinked {args.evidence} from {args.case} (ledger entry {idx})")
    return 0


async def case_show(args: argparse.Namespace, cfg: Config) -> int:
    async with _acting(cfg, args) as (rt, actor):
        detail = await cases.show(rt.db.pool, rt.ledger, actor, args.case, limit=1000)
    print(f"case\t{detail.id}\nlabel\t{detail.label}\ntitle\t{detail.title}")
    print(f"evidence\t{detail.evidence_count}")
    for e in detail.evidence:
        when = e.recorded_at.isoformat() if e.recorded_at else "-"
        print(f"  {e.id}\t{e.sha256}\t{e.label}\t{when}\t{e.media_status}")
    return 0


async def adopt_access_state(args: argparse.Namespace, cfg: Config) -> int:
    async with open_runtime(cfg) as rt:
        owner = await asyncpg.connect(rt.db.dsn)
        try:
            counts = await access_adopt.adopt(owner, rt.ledger, rt.mac)
        finally:
            await owner.close()
    print(" ".join(f"{table}={n}" for table, n in counts.items()))
    return 0


async def audit_cmd(args: argparse.Namespace, cfg: Config) -> int:
    async with _acting(cfg, args) as (rt, actor), rt.db.pool.acquire() as conn:
        entries = await trails.trail(
            conn,
            rt.ledger,
            actor,
            case=args.case,
            evidence=args.evidence,
            principal=args.principal,
        )
    for e in entries:
        public = " ".join(f"{k}={v}" for k, v in sorted(e.fields.items()))
        opened = " ".join(f"{k}={v}" for k, v in sorted(e.opened.items()) if k != "title")
        print(f"{e.idx}\t{e.time}\t{e.kind}\t{public}\t{opened}".rstrip())
    return 0


def _policy(args: argparse.Namespace) -> RetentionPolicy:
    return RetentionPolicy(ordinary_days=args.ordinary_days, important_days=args.important_days)


async def retention_report(args: argparse.Namespace, cfg: Config) -> int:
    async with _acting(cfg, args) as (rt, actor):
        plan = await disposition.report(rt.db.pool, rt.ledger, actor, _policy(args))
    for d in plan:
        print(f"{d.evidence_id}\t{d.action}\t{d.reason}")
    go = sum(1 for d in plan if d.action == "dispose")
    print(f"{go} to dispose of, {len(plan) - go} kept", file=sys.stderr)
    return 0


async def retention_run(args: argparse.Namespace, cfg: Config) -> int:
    from vault.ops import objectlock
    from vault.storage.superseded import remove_expired

    async with _acting(cfg, args) as (rt, actor):
        store = rt.storage.blobs
        policy = _policy(args)
        result = await disposition.run(rt.db.pool, rt.ledger, actor, policy, store.remove)
        locked = await objectlock.refresh(store, rt.db.pool, rt.mac, actor, policy)
        plain = await remove_expired(rt.storage, rt.db.pool, rt.ledger)
    if locked:
        print(f"Object Lock brought up to the rules on {locked} objects", file=sys.stderr)
    for sha, version in plain.removed:
        print(f"{sha}\tplain-removed\tsuperseded plain version {version} deleted")
    for sha, until in plain.waiting:
        print(f"{sha}\tplain-kept\tsuperseded plain version locked until {until.isoformat()}")
    for sha, why in plain.refused:
        print(f"{sha}\tplain-refused\t{why}")
    for eid in result.disposed:
        print(f"{eid}\tdisposed")
    for eid, why in result.skipped:
        print(f"{eid}\tskipped\t{why}")
    for eid in result.pending:
        print(f"{eid}\tpending\tblob removal failed; the next run retries it")
    print(
        f"{len(result.disposed)} disposed, {len(result.skipped)} skipped, "
        f"{len(result.pending)} pending (summary entry {result.summary_idx})",
        file=sys.stderr,
    )
    return 1 if result.pending or plain.refused else 0
