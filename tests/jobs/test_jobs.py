"""The PostgreSQL job queue: exclusive claims, leases, fencing, retries, final failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vault.config import DatabaseConfig
from vault.db import Database, open_database
from vault.jobs import Job, JobFailed, JobRunner, backoff_seconds, claim, complete, enqueue, fail


@pytest.fixture
async def db(pg_dsn: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with open_database(DatabaseConfig(dsn=pg_dsn), tmp_path) as database:
        yield database


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff_seconds(a) for a in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert backoff_seconds(50) == 3600.0


async def test_concurrent_claims_never_share_a_job(db: Database) -> None:
    async with db.pool.acquire() as conn:
        for i in range(60):
            await enqueue(conn, "k", {"i": i})
    claimed: list[int] = []

    async def worker(name: str) -> None:
        while (job := await claim(db.pool, ["k"], name, 30)) is not None:
            claimed.append(job.id)
            await complete(db.pool, job, {})

    await asyncio.gather(*(worker(f"w{i}") for i in range(6)))
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 60


async def test_dedupe_key_makes_enqueue_idempotent(db: Database) -> None:
    async with db.pool.acquire() as conn:
        first = await enqueue(conn, "k", {}, dedupe_key="proxy:abc")
        second = await enqueue(conn, "k", {}, dedupe_key="proxy:abc")
    assert first is not None and second is None


async def test_expired_lease_is_taken_over_and_the_old_worker_is_fenced(db: Database) -> None:
    async with db.pool.acquire() as conn:
        await enqueue(conn, "k", {"x": 1})
    slow = await claim(db.pool, ["k"], "slow", 0.2)
    assert slow is not None
    assert await claim(db.pool, ["k"], "other", 30) is None  # still leased
    await asyncio.sleep(0.4)
    fast = await claim(db.pool, ["k"], "fast", 30)
    assert fast is not None and fast.id == slow.id and fast.attempt == 2
    assert await complete(db.pool, slow, {"by": "slow"}) is False
    assert await fail(db.pool, slow, "late") == ""
    assert await complete(db.pool, fast, {"by": "fast"}) is True
    row = await db.pool.fetchrow("SELECT status, result FROM jobs WHERE id = $1", fast.id)
    assert row is not None and row["status"] == "done" and '"fast"' in row["result"]


async def test_job_whose_workers_keep_dying_is_failed_not_run_again(db: Database) -> None:
    """A poison job that kills every worker taking it (as a node crash would) is retaken after
    each lease, up to max_attempts; then it is failed without running once more."""
    async with db.pool.acquire() as conn:
        await enqueue(conn, "poison", {}, max_attempts=2)
    for _ in range(2):  # two workers take it and die: their leases lapse
        assert await claim(db.pool, ["poison"], "doomed", 0.1) is not None
        await asyncio.sleep(0.2)
    ran: list[int] = []

    async def poison(job: Job) -> dict[str, Any]:
        ran.append(job.id)
        return {}

    runner = JobRunner(db.pool, {"poison": poison}, worker="w", concurrency=1, lease=30)
    assert await runner.run_once() is True
    row = await db.pool.fetchrow("SELECT status, attempts, last_error FROM jobs")
    assert row is not None and row["status"] == "failed" and row["attempts"] == 3
    assert "stopped without finishing 2 times" in row["last_error"] and ran == []


async def test_failures_retry_with_backoff_then_fail_for_good(db: Database) -> None:
    async with db.pool.acquire() as conn:
        await enqueue(conn, "k", {}, max_attempts=2)
    job = await claim(db.pool, ["k"], "w", 30)
    assert job is not None
    assert await fail(db.pool, job, "first") == "queued"
    assert await claim(db.pool, ["k"], "w", 30) is None  # backing off
    await db.pool.execute("UPDATE jobs SET run_after = now()")
    job = await claim(db.pool, ["k"], "w", 30)
    assert job is not None and job.attempt == 2
    assert await fail(db.pool, job, "second: disk on fire") == "failed"
    row = await db.pool.fetchrow("SELECT status, last_error FROM jobs")
    assert row is not None and row["status"] == "failed" and "disk on fire" in row["last_error"]


async def test_runner_survives_a_crashing_handler_and_keeps_working(db: Database) -> None:
    async with db.pool.acquire() as conn:
        await enqueue(conn, "bad", {}, max_attempts=1)
        await enqueue(conn, "perm", {}, max_attempts=5)
        for i in range(5):
            await enqueue(conn, "good", {"i": i})
    done: list[int] = []

    async def bad(job: Job) -> dict[str, Any]:
        raise ZeroDivisionError("bug")

    async def perm(job: Job) -> dict[str, Any]:
        raise JobFailed("unprocessable: not a media file")

    async def good(job: Job) -> dict[str, Any]:
        done.append(job.payload["i"])
        return {"ok": True}

    runner = JobRunner(
        db.pool,
        {"bad": bad, "good": good, "perm": perm},
        worker="t",
        concurrency=2,
        lease=10,
        idle_poll=0.05,
    )
    runner.start()
    for _ in range(100):
        if len(done) == 5:
            break
        await asyncio.sleep(0.05)
    assert runner.alive()
    await runner.stop()
    assert sorted(done) == list(range(5))
    rows = {
        r["kind"]: r
        for r in await db.pool.fetch("SELECT kind, status, last_error, attempts FROM jobs")
    }
    assert rows["bad"]["status"] == "failed" and "ZeroDivisionError" in rows["bad"]["last_error"]
    assert rows["perm"]["status"] == "failed" and rows["perm"]["attempts"] == 1
    assert "not a media file" in rows["perm"]["last_error"]
