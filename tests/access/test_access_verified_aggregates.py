"""Attacks on counts, statistics, retention and rendition lists, by the app role and by the
superuser: a link inserted, a label lowered, a hold row deleted or a date moved in the database
changes no count, no statistic, no hold and shows no rendition (each decides on verified rows).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from tests.access.access_fixtures import ADMIN, add_evidence, add_rendition, open_vault, person
from vault.access.listing import EvidenceQuery, count_evidence, list_evidence, visible_renditions
from vault.cases import links as cases
from vault.keys.hostmac import RowTampered
from vault.ops import disposition
from vault.ops.retention import RetentionPolicy
from vault.policy.decide import Role
from vault.policy.labels import Label, Level
from vault.review.statistics import year_statistics

ROLES = ["evault_app", "superuser"]
TABLES = ("evidence", "renditions", "case_evidence_history", "legal_holds", "cases")
NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=400)


@asynccontextmanager
async def insider(dsn: str, role: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """The app role, or the superuser with every trigger of the touched tables off."""
    conn = await asyncpg.connect(dsn)
    always = []
    try:
        if role == "evault_app":
            await conn.execute("SET ROLE evault_app")
        else:
            always = await conn.fetch(
                "SELECT tgrelid::regclass::text AS t, tgname FROM pg_trigger"
                " WHERE tgenabled = 'A' AND tgrelid::regclass::text = ANY($1::text[])",
                list(TABLES),
            )
            for t in TABLES:
                await conn.execute(f"ALTER TABLE {t} DISABLE TRIGGER ALL")
        yield conn
    finally:
        if role != "evault_app":
            for t in TABLES:
                await conn.execute(f"ALTER TABLE {t} ENABLE TRIGGER ALL")
            for r in always:
                await conn.execute(f"ALTER TABLE {r['t']} ENABLE ALWAYS TRIGGER {r['tgname']}")
        await conn.close()


async def forge_link(conn: asyncpg.Connection[Any], case_id: str, evidence_id: str) -> None:
    """A ``linked`` row the service never wrote (on an index no link uses: the item's own)."""
    await conn.execute(
        "INSERT INTO case_evidence_history (ledger_idx, case_id, evidence_id, action,"
        " principal_id) SELECT ledger_idx, $1, id, 'linked', 'admin' FROM evidence"
        " WHERE id = $2::uuid",
        case_id,
        evidence_id,
    )


@pytest.mark.parametrize("role", ROLES)
async def test_attack_forged_link_or_lowered_label_changes_no_count(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "K1", "t", Label(Level.INTERNAL))
        genuine = await add_evidence(ledger)
        other = await add_evidence(ledger)
        secret = await add_evidence(ledger, label=Label(Level.SECRET))
        await cases.link(pool, ledger, ADMIN, "K1", genuine)
        await cases.link(pool, ledger, ADMIN, "K1", secret)
        p = person("r1", {Role.REVIEWER}, Level.INTERNAL, cases=frozenset({"K1"}))
        q = EvidenceQuery(case_id="K1")
        assert await count_evidence(pool, p) == 1
        assert await count_evidence(pool, p, q) == 1
        async with insider(pg_dsn, role) as conn:
            await forge_link(conn, "K1", other)
            await conn.execute("UPDATE evidence SET label_level = 0 WHERE id = $1::uuid", secret)
        # the SQL alone would now count three; the verified decision counts the genuine one
        for query in (None, q):
            page = await list_evidence(pool, p, query, mac=ledger.mac)
            assert [i.id for i in page.items] == [genuine]
            assert await count_evidence(pool, p, query) == 1
            assert await count_evidence(pool, ADMIN, query) == 1


@pytest.mark.parametrize("role", ROLES)
async def test_attack_tampered_rows_are_not_counted_in_statistics(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    zone = "Asia/Shanghai"
    year = datetime.now(ZoneInfo(zone)).year
    mid = datetime(year, 6, 1, 8, tzinfo=UTC)
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        for c in ("S1", "S9"):
            await cases.create(pool, ledger, ADMIN, c, "t", Label(Level.INTERNAL))
        e1 = await add_evidence(ledger, recorded_at=mid)
        e2 = await add_evidence(ledger, recorded_at=mid)
        old = await add_evidence(ledger, recorded_at=datetime(year - 1, 6, 1, tzinfo=UTC))
        await cases.link(pool, ledger, ADMIN, "S1", e1)
        await cases.link(pool, ledger, ADMIN, "S1", e2)
        before = await year_statistics(pool, year, zone, mac=ledger.mac)
        async with insider(pg_dsn, role) as conn:
            await forge_link(conn, "S9", e1)  # a case with footage that has none
            await conn.execute(  # last year's recording moved into this year
                "UPDATE evidence SET recorded_at = $2 WHERE id = $1::uuid", old, mid
            )
        after = await year_statistics(pool, year, zone, mac=ledger.mac)
        assert after.cases_with_footage == before.cases_with_footage  # S9 is not counted
        # the moved row is not counted; the item with a forged link is left out (alarm)
        assert after.recordings == before.recordings - 1
        previous = await year_statistics(pool, year - 1, zone, mac=ledger.mac)
        assert previous.recordings == 0  # the moved row counts nowhere: it does not verify


class Blobs:
    def __init__(self) -> None:
        self.removed: list[str] = []

    def remove(self, sha256: str) -> bool:
        self.removed.append(sha256)
        return True


@pytest.mark.parametrize("role", ROLES)
async def test_attack_hold_rows_and_links_edited_decide_no_disposal(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    """A hold row deleted frees nothing (holds come from the ledger); a hold row forged keeps
    nothing; a forged link to a held case neither frees nor silently keeps (alarm: left out)."""
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "H1", "t", Label(Level.INTERNAL))
        held = await add_evidence(ledger, acquired_at=OLD)
        held_via_case = await add_evidence(ledger, acquired_at=OLD)
        due = await add_evidence(ledger, acquired_at=OLD)
        forged = await add_evidence(ledger, acquired_at=OLD)
        await cases.link(pool, ledger, ADMIN, "H1", held_via_case)
        await cases.unlink(pool, ledger, ADMIN, "H1", held_via_case)
        await disposition.place_hold(pool, ledger, ADMIN, evidence_id=held, reason="court")
        await disposition.place_hold(pool, ledger, ADMIN, case_id="H1", reason="court")
        plan = await disposition.report(pool, ledger, ADMIN, RetentionPolicy(), NOW)
        assert {d.evidence_id for d in plan if d.action == "dispose"} == {due, forged}
        async with insider(pg_dsn, role) as conn:
            if role == "superuser":  # the app role may not delete: it may release
                await conn.execute("DELETE FROM legal_holds")
            else:
                await conn.execute(
                    "UPDATE legal_holds SET released_at = now(), released_idx = placed_idx"
                )
            await conn.execute(  # a hold the ledger never recorded
                "INSERT INTO legal_holds (evidence_id, reason, placed_by, placed_idx)"
                " SELECT id, 'x', 'admin', ledger_idx FROM evidence WHERE id = $1::uuid",
                due,
            )
            await forge_link(conn, "H1", forged)
        plan = await disposition.report(pool, ledger, ADMIN, RetentionPolicy(), NOW)
        assert {d.evidence_id for d in plan if d.action == "dispose"} == {due}
        assert forged not in {d.evidence_id for d in plan}  # left out, alarm raised
        result = await disposition.run(pool, ledger, ADMIN, RetentionPolicy(), Blobs().remove, NOW)
        assert result.disposed == [due]


@pytest.mark.parametrize("role", ROLES)
async def test_attack_lowered_rendition_label_shows_no_rendition(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        eid = await add_evidence(ledger)
        await add_rendition(ledger, eid, Label(Level.INTERNAL))
        hidden = await add_rendition(ledger, eid, Label(Level.SECRET), "poster")
        p = person("r2", {Role.REVIEWER}, Level.INTERNAL, officer_id=None)
        admin_view = await visible_renditions(pool, ledger.mac, ADMIN, eid)
        assert len(admin_view) == 2
        async with insider(pg_dsn, role) as conn:
            await conn.execute("UPDATE renditions SET label_level = 0 WHERE id = $1::uuid", hidden)
        assert str(hidden) not in {
            str(r.id) for r in await visible_renditions(pool, ledger.mac, ADMIN, eid)
        }
        assert str(hidden) not in {
            str(r.id) for r in await visible_renditions(pool, ledger.mac, p, eid)
        }
        async with insider(pg_dsn, role) as conn:
            await conn.execute("UPDATE evidence SET label_level = 0 WHERE id = $1::uuid", eid)
        with pytest.raises(RowTampered):
            await visible_renditions(pool, ledger.mac, ADMIN, eid)
