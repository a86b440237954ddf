"""Yearly publicity statistics: what is counted, and that nothing but numbers comes out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.review.review_fixtures import ADMIN, add_evidence, open_vault
from vault.access import decisions
from vault.cases import links as cases
from vault.errors import BadRequest
from vault.policy.decide import Action
from vault.policy.labels import Label, Level
from vault.review.statistics import _LEDGER, year_bounds, year_statistics


async def test_counts_of_one_year(pg_dsn: str, tmp_path: Path) -> None:
    year = datetime.now(ZoneInfo("Asia/Shanghai")).year
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        mid = datetime(year, 6, 1, 8, tzinfo=UTC)
        e1 = await add_evidence(ledger, recorded_at=mid, duration_ms=3_600_000)
        e2 = await add_evidence(ledger, recorded_at=mid, duration_ms=1_800_500)
        e3 = await add_evidence(ledger, recorded_at=mid)  # never probed
        old = await add_evidence(
            ledger, recorded_at=datetime(year - 1, 6, 1, tzinfo=UTC), duration_ms=5000
        )
        await add_evidence(ledger, duration_ms=1000)  # start unknown: acquired now, this year
        for c in ("C1", "C2", "C3"):
            await cases.create(pool, ledger, ADMIN, c, "t", Label(Level.INTERNAL))
        await cases.link(pool, ledger, ADMIN, "C1", e1)
        await cases.link(pool, ledger, ADMIN, "C1", e2)
        await cases.link(pool, ledger, ADMIN, "C2", e3)
        await cases.link(pool, ledger, ADMIN, "C3", old)
        await cases.link(pool, ledger, ADMIN, "C3", e3)
        await cases.unlink(pool, ledger, ADMIN, "C3", e3)  # no longer C3's footage
        before = await year_statistics(pool, year, "Asia/Shanghai")
        await decisions.record(ledger, ADMIN, Action.VERIFY, "evidence", e1, True, "allowed")
        await decisions.record(ledger, ADMIN, Action.VERIFY, "case", "C1", True, "allowed")
        await decisions.record(ledger, ADMIN, Action.STREAM, "evidence", e1, True, "allowed")
        await decisions.record(ledger, ADMIN, Action.VERIFY, "evidence", e2, False, "nope")
        stats = await year_statistics(pool, year, "Asia/Shanghai")

        assert stats.recordings == 4
        assert stats.recordings_without_duration == 1
        assert stats.footage_seconds == 3600 + 1800 + 1
        assert stats.footage_hours == 1.5
        assert stats.cases_with_footage == 2
        assert stats.verifications == before.verifications + 2
        assert stats.denials == before.denials + 1
        previous = await year_statistics(pool, year - 1, "Asia/Shanghai")
        assert (previous.recordings, previous.footage_seconds, previous.cases_with_footage) == (
            1,
            5,
            1,
        )
        assert (previous.verifications, previous.denials) == (0, 0)
        # numbers and the year only
        assert set(stats.to_json()) == {
            "year", "recordings", "recordings_without_duration", "footage_seconds",
            "footage_hours", "cases_with_footage", "verifications", "denials",
        }  # fmt: skip
        assert all(isinstance(v, int | float) for v in stats.to_json().values())


async def test_ledger_counts_are_served_by_the_partial_created_index(
    pg_dsn: str, tmp_path: Path
) -> None:
    """The statistics read `accessed`/`denied` entries of a year through the BRIN index that
    only those kinds enter (migration 008), not by a scan of every entry."""
    async with open_vault(pg_dsn, tmp_path) as (_ledger, db), db.pool.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")  # tiny table: say whether it *can*
        start, end = year_bounds(2026, "Asia/Shanghai")
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + _LEDGER, start, end))
        assert "ledger_entries_created" in plan, plan
        predicate = await conn.fetchval(
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index"
            " WHERE indexrelid = 'ledger_entries_created'::regclass"
        )
        assert "accessed" in predicate and "denied" in predicate
        assert "note" not in predicate


def test_year_bounds_follow_the_time_zone() -> None:
    start, end = year_bounds(2026, "Asia/Shanghai")
    assert start.astimezone(UTC) == datetime(2025, 12, 31, 16, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime(2026, 12, 31, 16, tzinfo=UTC)
    for bad in (1999, 3000):
        with pytest.raises(BadRequest):
            year_bounds(bad, "UTC")
