"""The SQL visibility filters against access.decide(), on random data in a real database."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.access.access_fixtures import ADMIN, add_evidence, add_rendition, open_vault
from vault.access import targets
from vault.access.filters import Args, evidence_filter
from vault.access.listing import EvidenceQuery, EvidenceSummary, count_evidence, list_evidence
from vault.cases import links as cases
from vault.errors import BadRequest
from vault.policy.decide import (
    Action,
    Principal,
    Role,
    Target,
    decide,
    effective_label,
    rendition_label,
)
from vault.policy.labels import Caveat, Label, Level

BASE = datetime(2025, 1, 1, tzinfo=UTC)
OFFICERS = [None, "o1", "o2", "o3"]


def random_label(rng: random.Random) -> Label:
    level = rng.choice([Level.PUBLIC, Level.INTERNAL, Level.INTERNAL, Level.CONFIDENTIAL,
                        Level.SECRET, Level.TOP_SECRET])  # fmt: skip
    caveats = frozenset(c for c in Caveat if rng.random() < 0.25)
    return Label(level, caveats)


def random_principal(rng: random.Random, i: int, case_ids: list[str]) -> Principal:
    roles = frozenset(r for r in Role if rng.random() < 0.2)
    return Principal(
        id=f"p{i}",
        clearance=rng.choice(list(Level)),
        caveats=frozenset(c for c in Caveat if rng.random() < 0.5),
        roles=roles,
        cases=frozenset(c for c in [*case_ids, "C-unknown"] if rng.random() < 0.3),
        officer_id=rng.choice(OFFICERS),
        active=rng.random() < 0.9,
    )


async def test_sql_filters_agree_with_decide(pg_dsn: str, tmp_path: Path) -> None:
    """For random principals, evidence, renditions, cases and link histories, the SQL filters
    select exactly the rows decide() allows, for every action: zero disagreements."""
    rng = random.Random(20250101)
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        case_labels = {f"C{i}": random_label(rng) for i in range(6)}
        for cid, label in case_labels.items():
            await cases.create(pool, ledger, ADMIN, cid, f"title {cid}", label)
        evidence: dict[str, tuple[Label, str | None]] = {}
        for _ in range(40):
            label, officer = random_label(rng), rng.choice(OFFICERS)
            at = BASE + timedelta(minutes=rng.randrange(0, 5) * 10)  # many equal times
            eid = await add_evidence(ledger, label=label, officer_id=officer, acquired_at=at)
            evidence[eid] = (label, officer)
        links: set[tuple[str, str]] = set()
        for _ in range(90):
            pair = (rng.choice(list(case_labels)), rng.choice(list(evidence)))
            if pair in links:
                await cases.unlink(pool, ledger, ADMIN, *pair)
                links.discard(pair)
            else:
                await cases.link(pool, ledger, ADMIN, *pair)
                links.add(pair)
        renditions: dict[str, tuple[str, Label]] = {}
        for eid in rng.sample(list(evidence), 15):
            label = random_label(rng)
            renditions[await add_rendition(ledger, eid, label)] = (eid, label)

        def ev_target(eid: str, kind: str = "evidence") -> Target:
            own, officer = evidence[eid]
            linked = frozenset(c for c, e in links if e == eid)
            label = effective_label(own, [case_labels[c] for c in linked])
            return Target(kind, label, linked, officer)  # type: ignore[arg-type]

        def rd_target(rid: str) -> Target:
            eid, own = renditions[rid]
            src = ev_target(eid, "rendition")
            return Target("rendition", rendition_label(src.label, own), src.cases, src.officer_id)

        for eid in evidence:  # the Python loaders build the same targets
            assert await targets.evidence_target(pool, eid, mac=ledger.mac) == ev_target(eid)
        for rid in renditions:
            assert await targets.rendition_target(pool, rid, mac=ledger.mac) == rd_target(rid)

        checked = 0
        for i in range(80):
            p = random_principal(rng, i, list(case_labels))
            for action in Action:
                args = Args()
                rows = await pool.fetch(
                    f"SELECT e.id FROM evidence e WHERE {evidence_filter(p, 'e', args, action)}",
                    *args.values,
                )
                got = {str(r["id"]) for r in rows}
                want = {e for e in evidence if decide(p, action, ev_target(e)).allowed}
                assert got == want, (p, action)
                checked += len(evidence)
            listed = {c.id for c in await cases.list_cases(pool, p)}
            want_cases = {
                c
                for c, lab in case_labels.items()
                if decide(p, Action.LIST, Target("case", lab, frozenset({c}))).allowed
            }
            assert listed == want_cases, p
            # paging: small pages, ties on acquired_at, same set and count as the filter
            seen: list[str] = []
            cursor = None
            while True:
                page = await list_evidence(pool, p, limit=3, cursor=cursor, mac=ledger.mac)
                seen += [item.id for item in page.items]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            want = {e for e in evidence if decide(p, Action.LIST, ev_target(e)).allowed}
            assert len(seen) == len(set(seen)) and set(seen) == want, p
            assert await count_evidence(pool, p) == len(want)
            for case_id in case_labels:
                query = EvidenceQuery(case_id=case_id)
                by_case = {
                    item.id for item in (await list_evidence(pool, p, query, mac=ledger.mac)).items
                }
                case_ok = decide(
                    p, Action.LIST, Target("case", case_labels[case_id], frozenset({case_id}))
                ).allowed
                expect = {e for e in want if (case_id, e) in links} if case_ok else set()
                assert by_case == expect, (p, case_id)
        assert checked > 10_000


async def test_filters_and_cursor(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        secret = Label(Level.SECRET, frozenset({Caveat.PERSONAL_PRIVACY}))
        a = await add_evidence(ledger, officer_id="o1", device_id="r1", acquired_at=BASE)
        b = await add_evidence(
            ledger, officer_id="o2", dock_id="dock-02", acquired_at=BASE + timedelta(hours=1),
            recorded_at=BASE, media_status="failed",
        )  # fmt: skip
        c = await add_evidence(ledger, label=secret, acquired_at=BASE + timedelta(hours=2))
        await cases.create(pool, ledger, ADMIN, "K1", "t", Label(Level.CONFIDENTIAL))
        await cases.link(pool, ledger, ADMIN, "K1", a)

        async def ids(**kw: object) -> list[str]:
            page = await list_evidence(pool, ADMIN, EvidenceQuery(**kw), mac=ledger.mac)  # type: ignore[arg-type]
            return [i.id for i in page.items]

        assert await ids() == [a, b, c]
        assert await ids(officer_id="o1") == [a]
        assert await ids(device_id="r1") == [a]
        assert await ids(dock_id="dock-02") == [b]
        assert await ids(status="failed") == [b]
        assert await ids(acquired_from=BASE + timedelta(minutes=30)) == [b, c]
        assert await ids(acquired_to=BASE + timedelta(minutes=30)) == [a]
        assert await ids(recorded_from=BASE) == [b]
        assert await ids(level=Level.CONFIDENTIAL) == [a]  # effective, raised by its case
        assert await ids(level=Level.SECRET, caveats=frozenset({Caveat.PERSONAL_PRIVACY})) == [c]
        assert await ids(case_id="K1") == [a]
        assert await ids(disposed=True) == []
        page = await list_evidence(pool, ADMIN, limit=2, mac=ledger.mac)
        assert page.next_cursor is not None
        rest = await list_evidence(pool, ADMIN, limit=2, cursor=page.next_cursor, mac=ledger.mac)
        assert [i.id for i in rest.items] == [c] and rest.next_cursor is None
        item = page.items[0]
        assert item.label == Label(Level.CONFIDENTIAL) and item.cases == ("K1",)
        # every other field of a summary is the stored column of that name
        stored = await pool.fetchrow("SELECT * FROM evidence WHERE id = $1", uuid.UUID(b))
        (summary,) = [i for i in page.items if i.id == b]
        plain = [f for f in EvidenceSummary._fields if f not in ("id", "label", "cases")]
        assert [getattr(summary, f) for f in plain] == [stored[f] for f in plain]
        assert summary.media_status == "failed" and summary.dock_id == "dock-02"
        for bad in ("x", "!!!", page.next_cursor[:-3]):
            with pytest.raises(BadRequest):
                await list_evidence(pool, ADMIN, cursor=bad, mac=ledger.mac)
        with pytest.raises(BadRequest):
            await list_evidence(pool, ADMIN, limit=0, mac=ledger.mac)
        assert await targets.evidence_target(pool, str(uuid.uuid4()), mac=ledger.mac) is None
        assert await targets.evidence_target(pool, "not-a-uuid", mac=ledger.mac) is None
