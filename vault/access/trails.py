"""Trails: the ledger entries about a case, an evidence item or a principal.

Guarantee: ``trail`` finds a case's, an evidence item's or a principal's entries (the
principal through the openings table), each followed by the ``unserved`` entries naming it
(its request answered with an error though the entry was committed), is itself an audited
``read_metadata`` decision on the ledger (``decisions.guard``), and leaves out every entry that
names an evidence item, rendition or case the reader may not list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vault.access.decisions import guard
from vault.access.targets import case_target, evidence_target, target
from vault.db import Conn, Db
from vault.errors import BadRequest
from vault.keys.hostmac import RowTampered
from vault.ledger import LedgerWriter
from vault.ledger.indoubt import unserved_naming
from vault.policy.decide import Action, Principal, Target, TargetKind, decide, visible
from vault.policy.labels import INTERNAL_LABEL
from verify.canonical import canonical_json

__all__ = ["TrailEntry", "trail"]


@dataclass(frozen=True)
class TrailEntry:
    """One ledger entry of a trail, with the openings of its commitments."""

    idx: int
    kind: str
    time: str
    fields: dict[str, Any]  # the public fields, without v/kind/time/commitments
    opened: dict[str, Any]  # commitment field -> opened value


_PRINCIPAL_FIELDS = ["principal", "by"]


async def _indexes(
    conn: Db, case: str | None, evidence: str | None, principal: str | None
) -> list[int]:
    if case is not None:
        rows = await conn.fetch(
            "SELECT ledger_idx AS idx FROM ledger_refs WHERE ref_kind = 'case' AND ref_id = $1",
            case,
        )
    elif evidence is not None:
        rows = await conn.fetch(
            "SELECT ledger_idx AS idx FROM ledger_refs WHERE ref_kind = 'evidence' AND ref_id = $1"
            " UNION SELECT ledger_idx FROM evidence WHERE id = $2"
            " UNION SELECT ledger_idx FROM evidence_offers WHERE evidence_id = $2"
            " UNION SELECT ledger_idx FROM renditions WHERE evidence_id = $2"
            " UNION SELECT f.ledger_idx FROM ledger_refs f JOIN renditions r"
            " ON f.ref_kind = 'rendition' AND f.ref_id = r.id::text WHERE r.evidence_id = $2",
            evidence,
            evidence,
        )
    else:
        value = canonical_json(principal)
        rows = await conn.fetch(
            "SELECT DISTINCT idx FROM ledger_openings WHERE field = ANY($1::text[])"
            " AND sha256(value) = sha256($2::bytea) AND value = $2::bytea",
            _PRINCIPAL_FIELDS,
            value,
        )
    return sorted(r["idx"] for r in rows)


async def trail(
    conn: Db,
    ledger: LedgerWriter,
    actor: Principal,
    *,
    case: str | None = None,
    evidence: str | None = None,
    principal: str | None = None,
    limit: int = 1000,
) -> list[TrailEntry]:
    """The newest ``limit`` entries about exactly one of a case, an evidence item or a
    principal, oldest first. Reading a trail is a ``read_metadata`` decision on the ledger,
    scoped like its subject (a case's trail: that case's label and need-to-know; a principal's
    trail: case-independent roles only); NotFound for a subject the actor may not see."""
    if [case, evidence, principal].count(None) != 2:
        raise BadRequest("give exactly one of case, evidence, principal")
    if case is not None:
        subject = await case_target(conn, case)
        tid, refs = f"case:{case}", [("case", case)]
    elif evidence is not None:
        subject = await evidence_target(conn, evidence, mac=ledger.mac)
        tid, refs = f"evidence:{evidence}", [("evidence", evidence)]
    else:
        subject = Target("ledger", INTERNAL_LABEL)
        tid, refs = f"principal:{principal}", []
    scoped = None if subject is None else Target("ledger", subject.label, subject.cases)
    found: list[TrailEntry] = []
    if scoped is not None and decide(actor, Action.READ_METADATA, scoped).allowed:
        # read before the decision's entry: a read that fails leaves no ``accessed`` entry
        indexes = (await _indexes(conn, case, evidence, principal))[-limit:]
        found = await _trail_entries(conn, ledger, actor, indexes)
        # An entry shown is followed by any ``unserved`` entry naming it (its request was
        # answered with an error though the entry was committed).
        unserved = await unserved_naming(conn, [e.idx for e in found])
        extra = sorted(u for named in unserved.values() for u, _data in named)
        if extra:
            more = await _trail_entries(conn, ledger, actor, extra, check=False)
            found = sorted([*found, *more], key=lambda e: e.idx)
    own: list[TrailEntry] = []

    async def own_entry(tx: Conn, indexes: list[int]) -> None:
        # The entry of this very read is part of the trail it is about (its refs are the
        # subject's; a principal's trail holds it when the actor is that principal): read in
        # the transaction that appends it.
        if principal is None or principal == actor.id:
            own[:] = await _trail_entries(tx, ledger, actor, indexes, check=False)

    await guard(
        ledger, actor, Action.READ_METADATA, "ledger", tid, scoped, refs=refs, effect=own_entry
    )
    return [*found, *own][-limit:]


async def _trail_entries(
    conn: Db, ledger: LedgerWriter, actor: Principal, indexes: list[int], *, check: bool = True
) -> list[TrailEntry]:
    """Entries ``indexes`` with their openings, oldest first, without those naming what the
    actor may not list (``check``)."""
    entries = await conn.fetch(
        "SELECT idx, kind, data FROM ledger_entries WHERE idx = ANY($1::bigint[]) ORDER BY idx",
        indexes,
    )
    openings = await conn.fetch(
        "SELECT idx, field, value FROM ledger_openings WHERE idx = ANY($1::bigint[])", indexes
    )
    ref_rows = []
    if check:
        ref_rows = await conn.fetch(
            "SELECT ledger_idx, ref_kind, ref_id FROM ledger_refs"
            " WHERE ledger_idx = ANY($1::bigint[])",
            indexes,
        )
    opened: dict[int, dict[str, Any]] = {}
    for o in openings:
        opened.setdefault(o["idx"], {})[o["field"]] = json.loads(bytes(o["value"]))
    about: dict[int, list[tuple[TargetKind, str]]] = {}
    for r in ref_rows:
        about.setdefault(r["ledger_idx"], []).append((r["ref_kind"], r["ref_id"]))
    seen: dict[tuple[TargetKind, str], bool] = {}
    out = []
    for e in entries:
        hidden = False
        for ref in about.get(e["idx"], []):
            if ref not in seen:
                try:
                    t = await target(conn, *ref, mac=ledger.mac)
                except RowTampered:  # alarm raised: what it names stays hidden
                    seen[ref] = False
                    continue
                seen[ref] = t is None or visible(actor, t)
            hidden = hidden or not seen[ref]
        if hidden:
            continue
        body = json.loads(bytes(e["data"]))
        public = {k: v for k, v in body.items() if k not in ("v", "kind", "time", "commitments")}
        out.append(TrailEntry(e["idx"], e["kind"], body["time"], public, opened.get(e["idx"], {})))
    return out
