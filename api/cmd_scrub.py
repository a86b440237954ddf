"""``evault scrub [--all] [--sample N]``: re-hash stored objects, run the ledger fsck and
``fsck --state`` by hand.

Without options a random sample is checked (the ``[scrub]`` sample size); ``--all`` checks every
object; ``--sample N`` checks N random evidence items. The run is paced by ``scrub.rate_mb_s``
(``--rate`` overrides it, 0: unlimited) and recorded as a ``scrub`` ledger entry.

Every object missing, altered (a sealed object failing authentication included) or unreadable
is a finding: printed with its evidence id and object, marked on the item, recorded in the
entry; the pass goes on to the end.

Exit status: 0 everything verified, 1 an object missing, altered or unreadable, fsck failed,
or a table differs from the ledger (fsck --state),
2 error, 3 another process is running a scrub now.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from api.config import Config
from api.runtime import open_runtime
from vault.ops.scrub import ScrubBusy, run_scrub
from vault.ops.scrubmodel import ScrubReport

EPILOG = __doc__.split("\n\n", 1)[1] if __doc__ else ""
EXIT_BUSY = 3


def register(sub: Any) -> None:
    p = sub.add_parser(
        "scrub",
        help="re-hash stored objects (originals and renditions) and run the ledger fsck",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="check every object (a full pass)")
    which.add_argument("--sample", type=int, metavar="N", help="check N random evidence items")
    p.add_argument("--rate", type=float, metavar="MIB_S", help="read rate limit (0: unlimited)")
    p.add_argument("--no-fsck", action="store_true", help="skip the ledger fsck (and fsck --state)")
    p.set_defaults(func=cmd_scrub)


async def cmd_scrub(args: argparse.Namespace, cfg: Config) -> int:
    scfg = cfg.scrub
    if args.rate is not None:
        scfg = msgspec.structs.replace(scfg, rate_mb_s=max(0.0, args.rate))
    if args.no_fsck:
        scfg = msgspec.structs.replace(scfg, fsck=False)
    if args.sample is not None and args.sample < 0:
        print("evault: --sample must be 0 or more", file=sys.stderr)
        return 2
    async with open_runtime(cfg) as rt:
        try:
            report = await run_scrub(
                rt.ledger,
                rt.storage.content,
                scfg,
                mode="full" if args.all else "sample",
                sample=args.sample,
            )
        except ScrubBusy as exc:
            print(f"evault: {exc.detail}", file=sys.stderr)
            return EXIT_BUSY
    sys.stdout.write(summary_text(report))
    return 0 if report.ok else 1


def summary_text(r: ScrubReport) -> str:
    """The run's summary for people."""
    lines = [
        f"scrub ({r.mode} pass, {r.trigger}): {r.evidence} evidence items, {r.objects} objects, "
        f"{r.bytes} bytes in {r.duration_ms / 1000:.1f} s",
        f"ok {r.objects_ok}, failed {r.failed_objects}",
    ]
    for f in r.findings:
        what = f.object if f.rendition_id is None else f"{f.object} rendition {f.rendition_id}"
        lines.append(
            f"{f.status.upper()}: evidence {f.evidence_id} {what} sha256 {f.sha256}"
            + (f" ({f.reason})" if f.reason else "")
        )
    lines.extend(f"restored to ok: evidence {eid}" for eid in r.restored)
    if r.fsck_ok is None:
        lines.append("ledger fsck: not run")
    elif r.fsck_ok:
        lines.append(f"ledger fsck: ok ({r.fsck_size} entries)")
    else:
        where = (
            "" if r.fsck_first_bad_index is None else f", first bad index {r.fsck_first_bad_index}"
        )
        lines.append(f"ledger fsck: FAILED ({len(r.fsck_problems)} problems{where})")
        lines.extend(f"  {p}" for p in r.fsck_problems[:20])
    if r.fsck_ok is not None and not r.state_findings:
        lines.append("ledger fsck --state: ok (tables agree with the ledger)")
    elif r.state_findings:
        lines.append(f"ledger fsck --state: FAILED ({len(r.state_findings)} findings)")
        lines.extend(f"  {f}" for f in r.state_findings[:20])
    lines.append(f"summary recorded as ledger entry {r.ledger_index}")
    lines.append("result: " + ("ok" if r.ok else "INTEGRITY FAILURE"))
    return "\n".join(lines) + "\n"
