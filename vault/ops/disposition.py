"""The retention job: legal holds, categories, and disposal of footage whose period is over.

Guarantees:

- ``report`` and ``run`` build the same plan with ``retention.plan`` from the same inputs
  (acquired_at, category, number of CURRENT case links, active legal holds on the evidence or on
  any case it was ever linked to, already disposed), over the evidence the acting principal may
  list; so for a given actor and ``now``, ``run`` disposes exactly what ``report`` lists.
- For each item to dispose, ``run`` first appends a ``disposed`` entry (evidence id, SHA-256 of
  the original and of its renditions: the hashes stay in the ledger for ever) and, in the same
  transaction and under the ledger's lock, re-checks that the item is still in no case, on no
  hold and not disposed; only after that entry is committed does it call ``remove_blob`` for each
  hash, and then sets ``evidence.disposed_at``. A failure between the two leaves the item
  pending; the next run finishes it without a second entry.
- Each run ends with one ``retention`` entry summarising it. Holds and category changes are
  ``retention`` entries too. Running, holding and categorising need ``administer`` (the job) or
  ``label`` on the target (holds, categories); refusals are recorded.
- The database is not trusted (DESIGN §7): the plan and the re-check before each disposal
  decide on verified rows only. Acquisition time and category come from evidence rows whose tag
  verifies, the links from the verified link history (``visibility.link_history``), and the
  holds from the ledger's own ``retention`` entries (placed minus released; a case hold's case
  is the opened commitment), never from ``legal_holds`` rows. An item with a row that does not
  verify is left out of the plan (never disposed of) and raises the alarm; a link or hold row
  forged, edited or deleted in the database neither keeps nor frees an item.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vault import evidence as evrows
from vault.access import decisions
from vault.access.filters import Args, evidence_filter, link_history
from vault.access.principals import require_admin
from vault.access.replay import opened
from vault.access.targets import authorize
from vault.db import Conn, Db
from vault.errors import BadRequest, Conflict, EvaultError, IntegrityError, NotFound
from vault.keys.hostmac import HostMac
from vault.ledger import LedgerWriter, make_entry
from vault.ops.retention import Disposition, RetentionItem, RetentionPolicy, plan
from vault.policy.decide import Action, Principal, TargetKind, not_found_detail

__all__ = [
    "RunResult",
    "gather",
    "place_hold",
    "release_hold",
    "report",
    "run",
    "set_category",
]

RemoveBlob = Callable[[str], object]
"""Removes one stored object by SHA-256 (e.g. ``BlobStore.remove``); called in a thread."""


class _StateChanged(ValueError):
    """Raised inside a ledger effect when the item may no longer be disposed of."""


_HOLD_ENTRIES = (
    "SELECT e.idx, e.data, array_agg(o.field) FILTER (WHERE o.field IS NOT NULL) AS fields,"
    " array_agg(o.salt) FILTER (WHERE o.field IS NOT NULL) AS salts,"
    " array_agg(o.value) FILTER (WHERE o.field IS NOT NULL) AS vals"
    " FROM ledger_entries e LEFT JOIN ledger_openings o ON o.idx = e.idx AND o.field = 'case'"
    " WHERE e.kind = 'retention' AND (position('\"op\":\"hold-placed\"'::bytea IN e.data) > 0"
    ' OR position(\'"op":"hold-released"\'::bytea IN e.data) > 0)'
    " GROUP BY e.idx ORDER BY e.idx"
)


@dataclass(frozen=True)
class Holds:
    """The active legal holds as the ledger records them: on evidence ids, on case ids."""

    evidence: frozenset[str]
    cases: frozenset[str]

    def holds(self, evidence_id: str, ever_linked: frozenset[str]) -> bool:
        return evidence_id in self.evidence or not self.cases.isdisjoint(ever_linked)


async def ledger_holds(db: Db) -> Holds:
    """Fold the ledger's hold entries (placed, then released by index); IntegrityError if one
    does not open (a hold that cannot be read must not be taken as absent)."""
    placed: dict[int, tuple[str, str]] = {}
    for r in await db.fetch(_HOLD_ENTRIES):
        openings = zip(r["fields"] or (), r["salts"] or (), r["vals"] or (), strict=True)
        try:
            body, values = opened(bytes(r["data"]), openings)
        except ValueError as exc:
            raise IntegrityError(f"hold entry {r['idx']} does not open: {exc}") from exc
        if body.get("op") == "hold-released":
            placed.pop(int(body.get("placed", -1)), None)
        elif isinstance(body.get("evidence_id"), str):
            placed[r["idx"]] = ("evidence", body["evidence_id"])
        elif isinstance(values.get("case"), str):
            placed[r["idx"]] = ("case", values["case"])
        else:
            raise IntegrityError(f"hold entry {r['idx']} names no target")
    return Holds(
        frozenset(t for k, t in placed.values() if k == "evidence"),
        frozenset(t for k, t in placed.values() if k == "case"),
    )


async def gather(db: Db, actor: Principal, *, mac: HostMac) -> list[RetentionItem]:
    """What retention needs to know about every item the actor may list, from verified rows
    only (module docstring); an item with a row that does not verify is left out (never
    disposed of on a forged date, category, link or hold) and raises the alarm."""
    args = Args()
    rows = await db.fetch(
        f"SELECT {evrows.evidence_columns()},"  # noqa: S608
        " (e.disposed_at IS NOT NULL OR EXISTS (SELECT 1 FROM dispositions d"
        " WHERE d.evidence_id = e.id)) AS gone"
        f" FROM evidence e WHERE {evidence_filter(actor, 'e', args)} ORDER BY e.acquired_at, e.id",
        *args.values,
    )
    good = await evrows.check_page(db, mac, rows)
    holds = await ledger_holds(db)
    out: list[RetentionItem] = []
    for start in range(0, len(good), 1000):
        chunk = good[start : start + 1000]
        current, ever, _bad = await link_history(db, [r["id"] for r in chunk])
        for r in chunk:
            if r["id"] not in current:
                continue  # a link or case row of it does not verify (alarm raised)
            out.append(
                RetentionItem(
                    evidence_id=str(r["id"]),
                    acquired_at=r["acquired_at"],
                    category=r["category"],
                    case_count=len(current[r["id"]]),
                    on_hold=holds.holds(str(r["id"]), ever[r["id"]]),
                    disposed=r["gone"],
                )
            )
    return out


async def report(
    db: Db,
    ledger: LedgerWriter,
    actor: Principal,
    policy: RetentionPolicy,
    now: datetime | None = None,
) -> list[Disposition]:
    """The plan ``run`` would carry out now (a dry run: nothing is changed or recorded)."""
    await require_admin(ledger, actor, "retention")
    return plan(await gather(db, actor, mac=ledger.mac), policy, now or datetime.now(UTC))


@dataclass
class RunResult:
    plan: list[Disposition]
    disposed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (evidence id, why)
    pending: list[str] = field(default_factory=list)  # entry appended, blob removal failed
    summary_idx: int | None = None


async def _finish(
    db: Db, mac: HostMac, evidence_id: uuid.UUID, hashes: Sequence[str], remove: RemoveBlob
) -> bool:
    """Remove the blobs of a recorded disposal, then mark it done; False if removal failed."""
    try:
        for sha in hashes:
            await asyncio.to_thread(remove, sha)
    except (OSError, EvaultError):
        return False
    await evrows.finish_disposal(db, mac, evidence_id)
    return True


async def _hashes(db: Db, mac: HostMac, evidence_id: uuid.UUID) -> tuple[str, list[str]]:
    row = await evrows.load_evidence(db, mac, evidence_id, where="disposal")
    if row is None:
        raise NotFound(f"no evidence {evidence_id}")
    sha = row.sha256
    # Only hashes from rows that verify: a forged hash must never get another item's blob
    # removed (a rendition row that does not verify is left, and raises the alarm).
    renditions = await evrows.renditions_of(db, mac, evidence_id)
    return sha, sorted({r.sha256 for r in renditions})


async def _dispose(
    db: Db, ledger: LedgerWriter, actor: Principal, d: Disposition, remove: RemoveBlob
) -> bool | None:
    """Record, then remove. None: not disposed (state changed); False: recorded, pending."""
    eid = uuid.UUID(d.evidence_id)
    sha, renditions = await _hashes(db, ledger.mac, eid)

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await conn.execute("SELECT 1 FROM evidence WHERE id = $1 FOR UPDATE", eid)
        current, ever, _bad = await link_history(conn, [eid])
        held = eid not in current or (await ledger_holds(conn)).holds(str(eid), ever[eid])
        gone = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM dispositions WHERE evidence_id = $1)", eid
        )
        if held or current[eid] or gone:
            raise _StateChanged("linked, held or disposed meanwhile")
        await conn.execute(
            "INSERT INTO dispositions (evidence_id, ledger_idx, sha256) VALUES ($1, $2, $3)",
            eid,
            indexes[0],
            sha,
        )
        await decisions.add_refs(conn, [(indexes[0], "evidence", str(eid))])

    entry = make_entry(
        "disposed",
        {"evidence_id": str(eid), "sha256": sha, "renditions": renditions, "reason": d.reason},
        {"by": actor.id},
    )
    try:
        await ledger.append([entry], effect=effect)
    except _StateChanged:
        return None
    return await _finish(db, ledger.mac, eid, [sha, *renditions], remove)


async def run(
    db: Db,
    ledger: LedgerWriter,
    actor: Principal,
    policy: RetentionPolicy,
    remove_blob: RemoveBlob,
    now: datetime | None = None,
) -> RunResult:
    """Carry out the retention plan (see the module docstring for the order of things)."""
    await require_admin(ledger, actor, "retention")
    pending = await db.fetch(
        "SELECT d.evidence_id FROM dispositions d JOIN evidence e ON e.id = d.evidence_id"
        " WHERE e.disposed_at IS NULL ORDER BY d.ledger_idx"
    )
    result = RunResult(plan=[])
    for p in pending:
        sha, renditions = await _hashes(db, ledger.mac, p["evidence_id"])
        if not await _finish(db, ledger.mac, p["evidence_id"], [sha, *renditions], remove_blob):
            result.pending.append(str(p["evidence_id"]))
    result.plan = plan(await gather(db, actor, mac=ledger.mac), policy, now or datetime.now(UTC))
    for d in result.plan:
        if d.action != "dispose":
            continue
        done = await _dispose(db, ledger, actor, d, remove_blob)
        if done is None:
            result.skipped.append((d.evidence_id, "linked, held or disposed meanwhile"))
        elif done:
            result.disposed.append(d.evidence_id)
        else:
            result.pending.append(d.evidence_id)
    summary = make_entry(
        "retention",
        {
            "op": "run",
            "disposed": len(result.disposed),
            "kept": sum(1 for d in result.plan if d.action == "keep"),
            "skipped": len(result.skipped),
            "pending": len(result.pending),
            "policy": {
                "ordinary_days": policy.ordinary_days,
                "important_days": policy.important_days,
            },
        },
        {"by": actor.id},
    )
    (result.summary_idx,) = await ledger.append([summary])
    return result


# -- holds and categories --------------------------------------------------------------------


async def place_hold(
    db: Db,
    ledger: LedgerWriter,
    actor: Principal,
    *,
    evidence_id: str | None = None,
    case_id: str | None = None,
    reason: str,
) -> int:
    """Put an evidence item, or every item ever linked to a case, on legal hold; return the
    hold's id. Needs ``label`` on the target."""
    if (evidence_id is None) == (case_id is None):
        raise BadRequest("a hold is on exactly one of an evidence item or a case")
    if not 0 < len(reason) <= 2000:
        raise BadRequest("hold reason: 1 to 2000 characters")
    kind: TargetKind = "case" if case_id is not None else "evidence"
    target_id = case_id if case_id is not None else str(evidence_id)
    await authorize(db, ledger, actor, Action.LABEL, kind, target_id)
    hold_id: list[int] = []

    async def effect(conn: Conn, indexes: list[int]) -> None:
        hid = await conn.fetchval(
            "INSERT INTO legal_holds (evidence_id, case_id, reason, placed_by, placed_idx)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            None if evidence_id is None else uuid.UUID(evidence_id),
            case_id,
            reason,
            actor.id,
            indexes[0],
        )
        hold_id.append(hid)
        await decisions.add_refs(conn, [(indexes[0], kind, target_id)])

    fields: dict[str, object] = {"op": "hold-placed"}
    secrets: dict[str, object] = {"reason": reason, "by": actor.id}
    if case_id is not None:
        secrets["case"] = case_id
    else:
        fields["evidence_id"] = target_id
    await ledger.append([make_entry("retention", fields, secrets)], effect=effect)
    return hold_id[0]


async def release_hold(db: Db, ledger: LedgerWriter, actor: Principal, hold_id: int) -> int:
    """Release a hold (it stays on record with its release entry)."""
    row = await db.fetchrow(
        "SELECT evidence_id, case_id, placed_idx, released_at FROM legal_holds WHERE id = $1",
        hold_id,
    )
    if row is None:
        raise NotFound(not_found_detail("hold"))
    kind: TargetKind = "case" if row["case_id"] is not None else "evidence"
    target_id = row["case_id"] if row["case_id"] is not None else str(row["evidence_id"])
    await authorize(db, ledger, actor, Action.LABEL, kind, target_id)
    if row["released_at"] is not None:
        raise Conflict("the hold was already released")

    async def effect(conn: Conn, indexes: list[int]) -> None:
        status = await conn.execute(
            "UPDATE legal_holds SET released_at = now(), released_idx = $2"
            " WHERE id = $1 AND released_at IS NULL",
            hold_id,
            indexes[0],
        )
        if status != "UPDATE 1":
            raise _StateChanged("the hold was already released")
        await decisions.add_refs(conn, [(indexes[0], kind, target_id)])

    entry = make_entry(
        "retention", {"op": "hold-released", "placed": row["placed_idx"]}, {"by": actor.id}
    )
    try:
        (idx,) = await ledger.append([entry], effect=effect)
    except _StateChanged as exc:
        raise Conflict(str(exc)) from None
    return idx


async def set_category(
    db: Db, ledger: LedgerWriter, actor: Principal, evidence_id: str, category: str
) -> int:
    """Mark evidence ``important`` (kept permanently by default) or ``ordinary``."""
    if category not in ("ordinary", "important"):
        raise BadRequest("category must be ordinary or important")
    await authorize(db, ledger, actor, Action.LABEL, "evidence", evidence_id)

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await evrows.set_category(conn, ledger.mac, uuid.UUID(evidence_id), category, indexes[0])
        await decisions.add_refs(conn, [(indexes[0], "evidence", evidence_id)])

    entry = make_entry(
        "retention",
        {"op": "category", "evidence_id": evidence_id, "category": category},
        {"by": actor.id},
    )
    (idx,) = await ledger.append([entry], effect=effect)
    return idx
