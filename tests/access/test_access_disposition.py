"""Retention: what is past its period and in no case goes, with a `disposed` entry first; what
is in a case, on hold or important stays; the report matches what the job then does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.access.access_fixtures import (
    ADMIN,
    add_evidence,
    add_rendition,
    entries,
    open_vault,
    person,
)
from vault.cases import links as cases
from vault.errors import Conflict, Forbidden
from vault.ops import disposition
from vault.ops.retention import Disposition, RetentionPolicy
from vault.policy.decide import Role
from vault.policy.labels import Label, Level

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=400)
POLICY = RetentionPolicy()


class Blobs:
    """Stands in for BlobStore.remove; can be told to fail for one hash."""

    def __init__(self) -> None:
        self.removed: list[str] = []
        self.fail: set[str] = set()

    def remove(self, sha256: str) -> bool:
        if sha256 in self.fail:
            raise OSError("disk unavailable")
        self.removed.append(sha256)
        return True


async def test_disposition(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        add = ledger

        async def sha(eid: str) -> str:
            return str(await pool.fetchval("SELECT sha256 FROM evidence WHERE id = $1::uuid", eid))

        plain = await add_evidence(add, acquired_at=OLD)
        with_proxy = await add_evidence(add, acquired_at=OLD)
        proxy = await add_rendition(add, with_proxy, Label(Level.INTERNAL))
        in_case = await add_evidence(add, acquired_at=OLD)
        was_in_case = await add_evidence(add, acquired_at=OLD)
        held = await add_evidence(add, acquired_at=OLD)
        held_via_case = await add_evidence(add, acquired_at=OLD)
        important = await add_evidence(add, acquired_at=OLD)
        recent = await add_evidence(add, acquired_at=NOW - timedelta(days=30))
        flaky = await add_evidence(add, acquired_at=OLD)
        await cases.create(pool, ledger, ADMIN, "K1", "t", Label(Level.INTERNAL))
        await cases.create(pool, ledger, ADMIN, "K2", "t", Label(Level.INTERNAL))
        await cases.link(pool, ledger, ADMIN, "K1", in_case)
        await cases.link(pool, ledger, ADMIN, "K1", was_in_case)
        await cases.unlink(pool, ledger, ADMIN, "K1", was_in_case)
        await cases.link(pool, ledger, ADMIN, "K2", held_via_case)
        await cases.unlink(pool, ledger, ADMIN, "K2", held_via_case)
        await disposition.place_hold(pool, ledger, ADMIN, evidence_id=held, reason="appeal")
        await disposition.place_hold(pool, ledger, ADMIN, case_id="K2", reason="litigation")
        released = await disposition.place_hold(
            pool, ledger, ADMIN, evidence_id=was_in_case, reason="briefly"
        )
        await disposition.release_hold(pool, ledger, ADMIN, released)
        with pytest.raises(Conflict):
            await disposition.release_hold(pool, ledger, ADMIN, released)
        await disposition.set_category(pool, ledger, ADMIN, important, "important")

        report = await disposition.report(pool, ledger, ADMIN, POLICY, NOW)
        plan = {d.evidence_id: d for d in report}
        going = {e for e, d in plan.items() if d.action == "dispose"}
        assert going == {plain, with_proxy, was_in_case, flaky}
        assert plan[in_case].reason == "linked to 1 case"
        assert plan[held].reason.startswith("legal hold")
        assert plan[held_via_case].reason.startswith("legal hold")
        assert plan[important].reason == "permanent: important"
        assert plan[recent].reason.startswith("retained until")

        with pytest.raises(Forbidden):
            await disposition.run(pool, ledger, person("r", {Role.AUDITOR}), POLICY, print, NOW)
        blobs = Blobs()
        blobs.fail.add(await sha(flaky))
        before = len(await entries(db))
        result = await disposition.run(pool, ledger, ADMIN, POLICY, blobs.remove, NOW)
        assert result.plan == report  # the report matched what the job did
        assert set(result.disposed) == going - {flaky} and result.pending == [flaky]
        proxy_sha = await pool.fetchval("SELECT sha256 FROM renditions WHERE id = $1::uuid", proxy)
        assert sorted(blobs.removed) == sorted(
            [await sha(e) for e in going - {flaky}] + [proxy_sha]
        )
        new = (await entries(db))[before:]
        disposed = [e for e in new if e["kind"] == "disposed"]
        assert {e["evidence_id"] for e in disposed} == going  # flaky's entry came before removal
        for e in disposed:
            assert e["sha256"] == await sha(str(e["evidence_id"]))  # the hash stays for ever
        assert new[-1]["kind"] == "retention" and new[-1]["disposed"] == 3
        marked = {
            str(r["id"])
            for r in await pool.fetch("SELECT id FROM evidence WHERE disposed_at IS NOT NULL")
        }
        assert marked == going - {flaky}

        # the next run finishes the pending one without a second entry, and disposes nothing else
        blobs.fail.clear()
        again = await disposition.run(pool, ledger, ADMIN, POLICY, blobs.remove, NOW)
        assert again.disposed == [] and again.pending == []
        assert await sha(flaky) in blobs.removed
        assert len([e for e in await entries(db, "disposed")]) == 4
        assert all(
            d.reason == "already disposed"
            for d in await disposition.report(pool, ledger, ADMIN, POLICY, NOW)
            if d.evidence_id in going
        )
        with pytest.raises(Conflict):  # disposed evidence cannot be linked again
            await cases.link(pool, ledger, ADMIN, "K1", plain)

        # an item linked between plan and disposal is not disposed (re-checked under the lock)
        late = await add_evidence(add, acquired_at=OLD)
        stale = Disposition(late, "dispose", "ordinary retention ended")
        await cases.link(pool, ledger, ADMIN, "K1", late)
        assert await disposition._dispose(pool, ledger, ADMIN, stale, blobs.remove) is None
        assert not await pool.fetchval(
            "SELECT count(*) FROM dispositions WHERE evidence_id = $1::uuid", late
        )
        # history tables are append-only: the app role may not, and the owner is stopped too
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await pool.execute("DELETE FROM dispositions")
        owner = await asyncpg.connect(db.dsn)
        try:
            for table in ("dispositions", "case_evidence_history", "label_history", "ledger_refs"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                    await owner.execute(f"DELETE FROM {table}")
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                    await owner.execute(f"TRUNCATE {table} CASCADE")
        finally:
            await owner.close()


@pytest.mark.parametrize("role", ["evault_app", "superuser"])
async def test_attack_category_or_date_edited_disposes_nothing(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    """An insider makes important evidence ordinary, and recent evidence old: retention leaves
    both alone (their rows do not verify), and disposes of what really is due."""
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        important = await add_evidence(ledger, acquired_at=OLD, category="important")
        recent = await add_evidence(ledger, acquired_at=NOW - timedelta(days=3))
        due = await add_evidence(ledger, acquired_at=OLD)
        conn = await asyncpg.connect(pg_dsn)
        try:
            if role == "evault_app":
                await conn.execute("SET ROLE evault_app")
            else:
                await conn.execute("ALTER TABLE evidence DISABLE TRIGGER ALL")
            await conn.execute(
                "UPDATE evidence SET category = 'ordinary' WHERE id = $1::uuid", important
            )
            await conn.execute(
                "UPDATE evidence SET acquired_at = $2 WHERE id = $1::uuid", recent, OLD
            )
            if role != "evault_app":
                await conn.execute("ALTER TABLE evidence ENABLE TRIGGER ALL")
        finally:
            await conn.close()
        plan = await disposition.report(pool, ledger, ADMIN, POLICY, NOW)
        assert {d.evidence_id for d in plan} == {due}
        result = await disposition.run(pool, ledger, ADMIN, POLICY, Blobs().remove, NOW)
        assert result.disposed == [due]
        disposed = {e["evidence_id"] for e in await entries(db, "disposed")}
        assert disposed == {due}
