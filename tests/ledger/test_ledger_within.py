"""An append ``within`` a time that is not written by then is never written afterwards: the
caller's answer (TimeoutError) and the ledger agree, whatever the database does meanwhile."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import asyncpg

from tests.ledger.ledger_fixtures import open_ledger
from tests.ledger.test_ledger_pipeline import _check_tree
from vault.ledger import make_entry


async def _texts(pool: asyncpg.Pool[asyncpg.Record]) -> set[str]:
    rows = await pool.fetch("SELECT data FROM ledger_entries")
    return {json.loads(bytes(r["data"])).get("text", "") for r in rows}


async def test_attack_locked_entries_table_commits_no_timed_out_append_afterwards(
    pg_dsn: str, tmp_path: Path
) -> None:
    """``ledger_entries`` locked by another session for longer than the appends' time: every
    timed-out append (in the transaction that waits for the lock, or queued behind it) raises
    TimeoutError in time and is absent once the lock is gone; appends without a time wait and
    are written; the tree stays whole."""
    async with open_ledger(pg_dsn, tmp_path) as (ledger, db):
        await ledger.append([make_entry("note", {"text": "before"})])
        locker = await asyncpg.connect(db.dsn)
        try:
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE ledger_entries IN ACCESS EXCLUSIVE MODE")

            async def timed(k: int, within: float) -> float | BaseException:
                start = time.monotonic()
                try:
                    await ledger.append([make_entry("note", {"text": f"timed-{k}"})], within=within)
                except TimeoutError as exc:
                    return exc
                return time.monotonic() - start

            async def patient(k: int) -> list[int]:
                return await ledger.append([make_entry("note", {"text": f"patient-{k}"})])

            first = [asyncio.create_task(timed(k, 0.6)) for k in range(4)]
            waiting = [asyncio.create_task(patient(k)) for k in range(2)]
            await asyncio.sleep(0.05)
            later = [asyncio.create_task(timed(k, 0.6)) for k in range(4, 10)]
            start = time.monotonic()
            results = await asyncio.gather(*first, *later)
            assert time.monotonic() - start < 0.6 + 1.5, "a timed append outlasted its time"
            assert all(isinstance(r, TimeoutError) for r in results), results
            await asyncio.sleep(0.5)  # the lock is held well beyond every append's time
            assert not any(t.done() for t in waiting)
        finally:
            await locker.close()  # the lock goes with the session
        assert len({i for t in waiting for i in await t}) == 2
        more = await ledger.append([make_entry("note", {"text": "after"})], within=5)
        texts = await _texts(db.pool)
        assert not {t for t in texts if t.startswith("timed-")}, sorted(texts)
        assert {"before", "patient-0", "patient-1", "after"} <= texts
        await _check_tree(db, more[0] + 1)


async def test_an_append_within_a_time_is_written_when_the_database_answers(
    pg_dsn: str, tmp_path: Path
) -> None:
    async with open_ledger(pg_dsn, tmp_path) as (ledger, db):
        got = await asyncio.gather(
            *(ledger.append([make_entry("note", {"text": f"w{k}"})], within=5) for k in range(50))
        )
        assert sorted(i for r in got for i in r) == list(range(50))
        await _check_tree(db, 50)
