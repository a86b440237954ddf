"""Integrity reports for the legal-review module (法制审核): signed, archivable, re-checkable.

``integrity_report`` builds, for one case, a report on every evidence item of the case that the
caller may list, and signs it with the log key (:mod:`verify.report_note`).

Guarantees:

- Access: the decision is ``read_metadata`` on the case (``access.decide``; a missing case and an
  invisible one are the same ``NotFound``); it is recorded in the ledger before anything is
  reported, as an ``accessed`` (or ``denied``) entry with action ``verify``, indexed under the case
  and every evidence item reported (so each item's custody timeline shows the check). Everything
  the report needs (rows, content checks, ``acquired`` entries, timelines, exports) is read
  before that entry, so a read that fails leaves no ``accessed`` entry; only the checkpoint that
  must cover the entry itself, and the inclusion proofs against it, come after it (a failure
  in that window, an outage, leaves the entry of a report not given). If the entry cannot be
  recorded, nothing is reported (``Unavailable``). Items the caller may not list are
  absent, as from every listing: nothing leaks by their count.
- Content (per item, originals only): ``mode="now"`` re-reads the stored object through the
  ``ContentStore`` and hashes it: ``ok`` only when SHA-256 and size equal the recorded ones;
  ``missing`` when absent; ``mismatch`` otherwise (or when the store refuses damaged bytes,
  when opening as well as while reading: a sealed object failing authentication); ``unreadable``
  on an I/O error. One item's failure never stops the report. ``mode="scrub"`` reports the
  last scrub's mark and time instead (``unchecked`` when never scrubbed). Disposed items are
  ``disposed``, never read.
- Ledger (per item): the ``acquired`` entry the row names must name this item's id and hash
  (and size, where it records one), and its inclusion proof, computed from the stored tiles, must
  verify with ``verify.merkle`` against the root of a checkpoint whose signature by the log key
  (and origin) was verified with ``verify.checkpoint``; that checkpoint also covers the audit
  entry of this very check. Entry text and proof travel in the report, so it can be re-checked
  offline with the vkey alone.
- Custody timeline (per item): every ledger entry about the item, its offers or its
  renditions (acquired, reoffered, derived, linked, unlinked, labelled, accessed, denied, scrub,
  disposed, ...), oldest first, each followed by the ``unserved`` entries naming it, with
  public fields and only the openings naming who acted (``principal``, ``by``) and which case
  (``case``); an entry that also names an evidence item, rendition or case the caller may not
  list is left out (as in ``trails.trail``). Case exports (``exported`` entries are about the
  case) are listed once for the case.
- Verdict: ``ok`` only when every item's content is ``ok`` and its ledger check holds; otherwise
  ``failed`` with one reason per failure, naming the item. A case with no visible item is ``ok``
  with no items.
- The report is canonical JSON (integers and strings only), signed as a note whose text is
  ``"evidence-vault integrity report v1\\n<sha256 hex of the report bytes>\\n"``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from vault import evidence as evrows
from vault.access import decisions, targets
from vault.access.listing import EvidenceQuery, list_evidence
from vault.db import Conn
from vault.errors import IntegrityError, LedgerCorrupt, NotFound, Unavailable
from vault.keys.hostmac import HostMac, RowTampered
from vault.ledger import Ledger
from vault.ledger.entry import rfc3339
from vault.ledger.indoubt import unserved_naming
from vault.ledger.tiles import inclusion_proof
from vault.metrics import INTEGRITY_FAILURES
from vault.policy.decide import Action, Principal, Target, TargetKind, absent, decide, visible
from vault.storage.content import ContentStore, Readable
from verify.canonical import canonical_json, parse_canonical
from verify.checkpoint import Checkpoint, open_checkpoint
from verify.errors import VerificationError
from verify.merkle import leaf_hash, verify_inclusion
from verify.report_note import REPORT_HEADER, sign_report

__all__ = ["Mode", "SignedReport", "integrity_report"]

Mode = Literal["now", "scrub"]
OPENED_FIELDS = ("by", "case", "principal")
_HIDDEN = frozenset({"v", "kind", "time", "commitments"})
TAMPERED = "the stored evidence row does not verify (changed outside the service)"
_CUSTODY = (
    "SELECT ref_id AS eid, ledger_idx AS idx FROM ledger_refs"
    " WHERE ref_kind = 'evidence' AND ref_id = ANY($1::text[])"
    " UNION SELECT id::text, ledger_idx FROM evidence WHERE id = ANY($2::uuid[])"
    " UNION SELECT evidence_id::text, ledger_idx FROM evidence_offers"
    " WHERE evidence_id = ANY($2::uuid[])"
    " UNION SELECT evidence_id::text, ledger_idx FROM renditions"
    " WHERE evidence_id = ANY($2::uuid[])"
    " UNION SELECT r.evidence_id::text, f.ledger_idx FROM ledger_refs f JOIN renditions r"
    " ON f.ref_kind = 'rendition' AND f.ref_id = r.id::text WHERE r.evidence_id = ANY($2::uuid[])"
)


@dataclass(frozen=True)
class SignedReport:
    """The report, its exact canonical bytes, and the signed note over them."""

    report: dict[str, Any]
    data: bytes
    signature: str


async def integrity_report(
    ledger: Ledger, content: ContentStore, actor: Principal, case_id: str, *, mode: Mode = "now"
) -> SignedReport:
    """Check and report on ``case_id`` for ``actor`` (see the module docstring)."""
    db = ledger.pool
    case = await targets.case_target(db, case_id)
    decision = absent("case") if case is None else decide(actor, Action.READ_METADATA, case)
    ids, tampered = await _visible_ids(ledger, actor, case_id) if decision.allowed else ([], [])
    # Everything the report needs is read before its entry (a read that fails leaves none) ...
    rows = await _rows(ledger, ids)
    checks = {eid: await _check(content, row, mode) for eid, row in rows.items()}
    acquired = {eid: await _acquired(ledger, row.ledger_idx) for eid, row in rows.items()}
    timelines = await _timelines(db, ledger.mac, actor, ids)
    exports = await _exports(db, case_id)
    own: dict[str, Any] = {}

    async def own_entry(conn: Conn, indexes: list[int]) -> None:
        # ... and the entry itself, for the timelines, in the transaction that appends it
        data = await conn.fetchval("SELECT data FROM ledger_entries WHERE idx = $1", indexes[0])
        own["item"] = _timeline_item(indexes[0], bytes(data), {"principal": actor.id})

    audit_idx = await decisions.record(
        ledger,
        actor,
        Action.VERIFY,
        "case",
        case_id,
        decision.allowed,
        decision.recorded,
        refs=[("case", case_id), *(("evidence", e) for e in ids)],
        effect=own_entry if decision.allowed else None,
    )
    decision.raise_if_denied()
    # ... except the checkpoint that covers that entry, and the proofs against it
    cp = await ledger.checkpoint_covering(audit_idx)
    reasons: list[str] = []
    checkpoint: Checkpoint | None = None
    try:
        checkpoint = open_checkpoint(cp.note, ledger.verifier)
    except VerificationError as exc:
        reasons.append(f"the checkpoint does not verify with the log key: {exc}")
    items = []
    for eid in ids:
        row = rows.get(eid)
        if row is None:
            item = {"evidence_id": eid, "verdict": "failed", "reasons": [TAMPERED]}
        else:
            item = await _item(ledger, row, checks[eid], acquired[eid], checkpoint, cp.size)
            item["timeline"] = [*timelines.get(eid, []), own["item"]]
        reasons.extend(f"evidence {eid}: {r}" for r in item["reasons"])
        items.append(item)
    for eid in tampered:  # left out of the listing: reported, never with their stored values
        items.append({"evidence_id": eid, "verdict": "failed", "reasons": [TAMPERED]})
        reasons.append(f"evidence {eid}: {TAMPERED}")
    report = {
        "format": REPORT_HEADER,
        "case_id": case_id,
        "generated_at": rfc3339(),
        "requested_by": actor.id,
        "mode": mode,
        "audit_index": audit_idx,
        "log": {"origin": ledger.signer.name, "vkey": ledger.signer.vkey, "checkpoint": cp.note},
        "evidence": items,
        "exports": exports,
        "verdict": "failed" if reasons else "ok",
        "reasons": reasons,
    }
    data = canonical_json(report)
    return SignedReport(report, data, sign_report(data, ledger.signer))


async def _visible_ids(
    ledger: Ledger, actor: Principal, case_id: str
) -> tuple[list[str], list[str]]:
    """(ids of the case's evidence the actor may list, ids of rows left out as tampered)."""
    ids: list[str] = []
    tampered: list[str] = []
    cursor: str | None = None
    while True:
        page = await list_evidence(
            ledger.pool,
            actor,
            EvidenceQuery(case_id=case_id),
            limit=1000,
            cursor=cursor,
            mac=ledger.mac,
        )
        ids.extend(item.id for item in page.items)
        tampered.extend(page.tampered)
        if page.next_cursor is None:
            return ids, tampered
        cursor = page.next_cursor


async def _rows(ledger: Ledger, ids: list[str]) -> dict[str, evrows.Evidence]:
    """The verified rows of ``ids``; one that no longer verifies is absent (alarm raised)."""
    out: dict[str, evrows.Evidence] = {}
    for eid in ids:
        try:
            row = await evrows.load_evidence(ledger.pool, ledger.mac, eid, where="integrity report")
        except RowTampered:
            continue
        if row is not None:
            out[eid] = row
    return out


async def _check(content: ContentStore, row: evrows.Evidence, mode: Mode) -> dict[str, str | None]:
    """The item's content check: disposed, re-hashed now, or the last scrub's mark."""
    if row.disposed_at is not None:
        return {"status": "disposed", "checked_at": rfc3339(row.disposed_at), "source": mode}
    if mode == "now":
        status = await _rehash(content, row.sha256, row.size)
        if status in ("missing", "mismatch"):
            INTEGRITY_FAILURES.labels("report").inc()
        return {"status": status, "checked_at": rfc3339(), "source": "now"}
    scrubbed = row.last_scrub_at
    status = row.integrity if scrubbed is not None else "unchecked"
    return {"status": status, "checked_at": _time(scrubbed), "source": "scrub"}


async def _acquired(ledger: Ledger, idx: int) -> bytes | None:
    """The entry the row names as its ``acquired`` one, or None if the ledger has none."""
    try:
        return await ledger.entry(idx)
    except NotFound:
        return None


async def _item(
    ledger: Ledger,
    row: evrows.Evidence,
    check: dict[str, str | None],
    entry: bytes | None,
    checkpoint: Checkpoint | None,
    size: int,
) -> dict[str, Any]:
    reasons: list[str] = []
    if check["status"] != "ok":
        reasons.append(f"content {check['status']} ({check['source']})")
    ledger_part = await _inclusion(ledger, row, entry, checkpoint, size, reasons)
    return {
        "evidence_id": str(row.id),
        "sha256": row.sha256,
        "size": row.size,
        "recorded_at": _time(row.recorded_at),
        "acquired_at": _time(row.acquired_at),
        "content": check,
        "ledger": ledger_part,
        "verdict": "failed" if reasons else "ok",
        "reasons": reasons,
    }


def _time(t: datetime | None) -> str | None:
    return None if t is None else rfc3339(t)


async def _rehash(content: ContentStore, sha256: str, size: int) -> str:
    try:
        obj = await content.open(sha256)
    except NotFound:
        return "missing"
    except IntegrityError:  # refused when opened: a sealed header or last chunk is damaged
        return "mismatch"
    except (Unavailable, OSError):
        return "unreadable"
    try:
        return await asyncio.to_thread(_hash_object, obj, sha256, size)
    finally:
        obj.close()


def _hash_object(obj: Readable, sha256: str, size: int) -> str:
    if obj.size != size:
        return "mismatch"
    h = hashlib.sha256()
    try:
        for chunk in obj.read_range(0, obj.size):
            h.update(chunk)
    except IntegrityError:
        return "mismatch"
    except (Unavailable, OSError):
        return "unreadable"
    return "ok" if h.hexdigest() == sha256 else "mismatch"


async def _inclusion(
    ledger: Ledger,
    row: evrows.Evidence,
    entry: bytes | None,
    checkpoint: Checkpoint | None,
    size: int,
    reasons: list[str],
) -> dict[str, Any]:
    idx = row.ledger_idx
    out: dict[str, Any] = {"index": idx, "tree_size": size, "status": "failed"}
    if entry is None:
        reasons.append(f"ledger entry {idx} is missing")
        return out
    out["entry"] = entry.decode("utf-8", "replace")
    out["leaf_hash"] = leaf_hash(entry).hex()
    problem = _entry_problem(entry, str(row.id), row.sha256, row.size)
    try:
        async with ledger.pool.acquire() as conn:
            proof = await inclusion_proof(conn, idx, size)
        out["proof"] = [h.hex() for h in proof]
        if checkpoint is not None:
            verify_inclusion(leaf_hash(entry), idx, size, proof, checkpoint.root_hash)
    except (VerificationError, LedgerCorrupt) as exc:
        problem = problem or f"inclusion of entry {idx} does not verify: {exc}"
    if checkpoint is None:
        problem = problem or "no verified checkpoint to prove inclusion against"
    if problem:
        reasons.append(problem)
    else:
        out["status"] = "ok"
    return out


def _entry_problem(entry: bytes, eid: str, sha256: str, size: int) -> str | None:
    try:
        body = parse_canonical(entry)
    except VerificationError as exc:
        return f"the acquired entry is not canonical: {exc}"
    if body.get("kind") != "acquired" or body.get("evidence_id") != eid:
        return "the ledger entry the row names is not this item's acquired entry"
    if body.get("sha256") != sha256:
        return "the acquired entry records another SHA-256"
    if "size" in body and body["size"] != size:
        return "the acquired entry records another size"
    return None


async def _timelines(
    db: Any, mac: HostMac, actor: Principal, ids: Sequence[str]
) -> dict[str, list[Any]]:
    if not ids:
        return {}
    uids = [uuid.UUID(i) for i in ids]
    pairs = await db.fetch(_CUSTODY, list(ids), uids)
    wanted = sorted({p["idx"] for p in pairs})
    entries = await _entries(db, mac, actor, wanted)
    # An entry shown is followed by the ``unserved`` entries naming it (its request answered
    # with an error though the entry was committed), in the same item's timeline.
    unserved = await unserved_naming(db, entries)
    for named in unserved.values():
        for idx, data in named:
            entries[idx] = _timeline_item(idx, data, {})
    items = [(p["idx"], p["eid"]) for p in pairs if p["idx"] in entries]
    items += [(u, eid) for i, eid in items for u, _d in unserved.get(i, [])]
    out: dict[str, list[Any]] = {}
    for idx, eid in sorted(set(items)):
        out.setdefault(eid, []).append(entries[idx])
    return out


async def _entries(
    db: Any, mac: HostMac, actor: Principal, indexes: list[int]
) -> dict[int, dict[str, Any]]:
    """Entries ``indexes`` as timeline items, without those naming anything invisible."""
    rows = await db.fetch(
        "SELECT idx, kind, data FROM ledger_entries WHERE idx = ANY($1::bigint[])", indexes
    )
    ref_rows = await db.fetch(
        "SELECT ledger_idx, ref_kind, ref_id FROM ledger_refs WHERE ledger_idx = ANY($1::bigint[])",
        indexes,
    )
    opened = await db.fetch(
        "SELECT idx, field, value FROM ledger_openings WHERE idx = ANY($1::bigint[])"
        " AND field = ANY($2::text[])",
        indexes,
        list(OPENED_FIELDS),
    )
    seen: dict[tuple[TargetKind, str], bool] = {}
    hidden: set[int] = set()
    for r in ref_rows:
        ref: tuple[TargetKind, str] = (r["ref_kind"], r["ref_id"])
        if ref not in seen:
            try:
                t: Target | None = await targets.target(db, *ref, mac=mac)
            except RowTampered:  # alarm raised; what the entry names stays hidden
                seen[ref] = False
            else:
                seen[ref] = t is None or visible(actor, t)
        if not seen[ref]:
            hidden.add(r["ledger_idx"])
    openings: dict[int, dict[str, Any]] = {}
    for o in opened:
        openings.setdefault(o["idx"], {})[o["field"]] = json.loads(bytes(o["value"]))
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r["idx"] in hidden:
            continue
        case = openings.get(r["idx"], {}).get("case")
        if isinstance(case, str) and not seen.get(("case", case), False):
            openings[r["idx"]].pop("case")  # a case id is shown only when it is visible
        out[r["idx"]] = _timeline_item(r["idx"], bytes(r["data"]), openings.get(r["idx"], {}))
    return out


def _timeline_item(idx: int, data: bytes, opened: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(data)
    fields = {k: v for k, v in body.items() if k not in _HIDDEN}
    return {
        "index": idx,
        "kind": body["kind"],
        "time": body.get("time"),
        "fields": fields,
        "opened": opened,
    }


async def _exports(db: Any, case_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT e.idx, e.data FROM ledger_refs f JOIN ledger_entries e ON e.idx = f.ledger_idx"
        " WHERE f.ref_kind = 'case' AND f.ref_id = $1 AND e.kind = 'exported' ORDER BY e.idx",
        case_id,
    )
    opened = await db.fetch(
        "SELECT idx, value FROM ledger_openings WHERE idx = ANY($1::bigint[])"
        " AND field = 'principal'",
        [r["idx"] for r in rows],
    )
    by = {o["idx"]: json.loads(bytes(o["value"])) for o in opened}
    out = []
    for r in rows:
        body = json.loads(bytes(r["data"]))
        fields = {k: v for k, v in body.items() if k not in _HIDDEN}
        out.append(
            {"index": r["idx"], "time": body.get("time"), "fields": fields, "by": by.get(r["idx"])}
        )
    return out
