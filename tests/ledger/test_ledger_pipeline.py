"""The pipelined sequencer: failures and concurrent writers leave no gap and a correct tree."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import REGISTRY

from tests.ledger.ledger_fixtures import open_ledger
from tests.merkle_reference import leaf, mth
from vault.config import LedgerConfig
from vault.db import Conn, Database
from vault.keys.hostmac import HostMac
from vault.ledger import Ledger, PreparedEntry, make_entry
from vault.ledger.batches import authenticate
from vault.ledger.batchprep import COPY_MIN
from vault.ledger.tiles import inclusion_proof, root_at
from verify.merkle import verify_inclusion

TEST_MAC = HostMac(bytes([7]) * 32)  # the test suite's host secret (every process)


async def _check_tree(db: Database, size: int) -> list[bytes]:
    """Entries 0..size-1 exist with no gap, the state says ``size``, the stored tiles give the
    naive root of exactly those entries, and contiguous batch rows tagged with the host key
    (prepared speculatively or not) authenticate that tree from 0."""
    rows = await db.pool.fetch("SELECT idx, data FROM ledger_entries ORDER BY idx")
    assert [r["idx"] for r in rows] == list(range(size))
    assert await db.pool.fetchval("SELECT size FROM ledger_state") == size
    leaves = [leaf(bytes(r["data"])) for r in rows]
    async with db.pool.acquire() as conn:
        root = await root_at(conn, size)
        assert root == mth(leaves)
        await authenticate(conn, TEST_MAC, 0, size, root)
        for i in {0, size // 3, size - 1}:
            verify_inclusion(leaves[i], i, size, await inclusion_proof(conn, i, size), root)
    return leaves


def _batch(tag: str, n: int) -> list[PreparedEntry]:
    return [make_entry("note", {"text": f"{tag}-{i}"}) for i in range(n)]


@pytest.mark.parametrize("per_call", [1, 300])
async def test_a_failed_transaction_mid_pipeline_leaves_no_gap(
    pg_dsn: str, tmp_path: Path, per_call: int
) -> None:
    """Many calls in flight (batches prepared ahead on a speculative edge); one call's entry
    violates a database constraint, failing its whole batch: that call alone fails, every
    other call gets consecutive indexes, and the next append continues the tree exactly."""
    async with open_ledger(pg_dsn, tmp_path, batch_max=600) as (ledger, db):
        too_big = PreparedEntry("note", b"{" + b" " * 70000 + b"}")  # bypasses make_entry

        async def call(k: int) -> list[int] | BaseException:
            entries = _batch(f"c{k}", per_call)
            if k == 13:
                entries[len(entries) // 2] = too_big
            try:
                return await ledger.append(entries)
            except asyncpg.PostgresError as exc:
                return exc

        results = await asyncio.gather(*(call(k) for k in range(40)))
        assert isinstance(results[13], asyncpg.CheckViolationError)
        good = [r for k, r in enumerate(results) if k != 13]
        assert all(isinstance(r, list) for r in good)
        indexes = sorted(i for r in good for i in r)  # type: ignore[union-attr]
        assert indexes == list(range(39 * per_call))
        for r in good:
            assert r == list(range(r[0], r[0] + per_call))  # type: ignore[index]
        size = 39 * per_call
        await _check_tree(db, size)
        more = await ledger.append(_batch("after", 5))
        assert more == list(range(size, size + 5))
        await _check_tree(db, size + 5)


async def test_a_failing_effect_mid_pipeline_commits_nothing_of_its_call(
    pg_dsn: str, tmp_path: Path
) -> None:
    """An effect runs in the append transaction: when it fails, neither its entries nor its
    writes are committed, while the calls batched and pipelined around it are."""
    async with open_ledger(pg_dsn, tmp_path) as (ledger, db):
        owner = await asyncpg.connect(pg_dsn)
        try:
            await owner.execute("CREATE TABLE effect_log (idx bigint PRIMARY KEY)")
            await owner.execute("GRANT SELECT, INSERT ON effect_log TO PUBLIC")
        finally:
            await owner.close()

        async def record(conn: asyncpg.Connection, indexes: list[int]) -> None:
            await conn.executemany("INSERT INTO effect_log VALUES ($1)", [(i,) for i in indexes])

        async def fail(conn: asyncpg.Connection, indexes: list[int]) -> None:
            await record(conn, indexes)
            raise RuntimeError("effect failed")

        async def call(k: int) -> list[int] | BaseException:
            try:
                return await ledger.append(_batch(f"e{k}", 50), effect=fail if k == 7 else record)
            except RuntimeError as exc:
                return exc

        results = await asyncio.gather(*(call(k) for k in range(30)))
        assert isinstance(results[7], RuntimeError)
        await _check_tree(db, 29 * 50)
        logged = [r["idx"] for r in await db.pool.fetch("SELECT idx FROM effect_log ORDER BY 1")]
        assert logged == list(range(29 * 50))


async def test_two_sequencers_on_one_database_interleave_without_gaps(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Two ledgers (as two processes would be) append at once: each one's speculative edge is
    repeatedly made stale by the other, is detected under the lock, and prepared again."""
    async with open_ledger(pg_dsn, tmp_path) as (first, db):
        second = Ledger(
            db.pool,
            first.signer,
            LedgerConfig(origin=first.signer.name),
            tmp_path / "cp2.log",
            mac=TEST_MAC,
        )
        try:

            async def run(ledger: Ledger, tag: str) -> list[int]:
                out: list[int] = []
                for n in (1, 700, 3, 300, 256, 1000, 2):
                    out += await ledger.append(_batch(f"{tag}{n}", n))
                return out

            results = await asyncio.gather(
                *(run(first, f"a{k}-") for k in range(3)),
                *(run(second, f"b{k}-") for k in range(3)),
            )
        finally:
            await second.close()
        total = 6 * (1 + 700 + 3 + 300 + 256 + 1000 + 2)
        assert sorted(i for r in results for i in r) == list(range(total))
        await _check_tree(db, total)
        assert await first.append(_batch("end", 1)) == [total]


def _early_writes(outcome: str) -> float:
    return REGISTRY.get_sample_value("evault_ledger_early_writes_total", {"outcome": outcome}) or 0


async def test_bulk_batches_write_their_entries_while_the_batch_before_commits(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Batches of COPY size behind one of ours in flight write their entries before the lock:
    the indexes and the tree are exactly those of one batch after the other."""
    applied = _early_writes("applied")
    async with open_ledger(pg_dsn, tmp_path, batch_max=COPY_MIN) as (ledger, db):
        results = await asyncio.gather(
            *(ledger.append(_batch(f"bulk{k}-", COPY_MIN)) for k in range(12))
        )
        assert sorted(i for r in results for i in r) == list(range(12 * COPY_MIN))
        await _check_tree(db, 12 * COPY_MIN)
    assert _early_writes("applied") > applied


async def test_early_entries_of_a_batch_whose_predecessor_fails_are_rolled_back_and_rewritten(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Batch B wrote its entries before the lock, prepared on the tree batch A was to leave;
    then A fails after taking the lock. B finds another tree under the lock, is rolled back
    (stale) and written again on the committed tree: A's caller alone gets the error, B's
    entries follow the committed ones with no gap."""
    stale = _early_writes("stale")
    async with open_ledger(pg_dsn, tmp_path, batch_max=COPY_MIN) as (ledger, db):
        await ledger.append(_batch("warm", 3))  # the edge is known: later batches speculate

        async def fail_late(conn: Conn, indexes: list[int]) -> None:
            await asyncio.sleep(0.5)  # B writes its entries and waits for the lock meanwhile
            raise RuntimeError("A's effect fails after A took the lock")

        a = asyncio.ensure_future(ledger.append(_batch("A", COPY_MIN), effect=fail_late))
        b = asyncio.ensure_future(ledger.append(_batch("B", COPY_MIN)))
        with pytest.raises(RuntimeError, match="A's effect fails"):
            await a
        assert await b == list(range(3, 3 + COPY_MIN))
        await _check_tree(db, 3 + COPY_MIN)
    assert _early_writes("stale") == stale + 1


async def test_two_sequencers_appending_bulk_batches_lose_nothing(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Two ledgers (as two processes) appending batches of COPY size at once: early entries made
    stale by the other's appends (base changed, duplicate index, or a deadlock on the lock) are
    rolled back and written again; no call fails and the indexes have no gap."""
    async with open_ledger(pg_dsn, tmp_path, batch_max=COPY_MIN) as (first, db):
        second = Ledger(
            db.pool,
            first.signer,
            LedgerConfig(origin=first.signer.name, batch_max=COPY_MIN),
            tmp_path / "cp2.log",
            mac=TEST_MAC,
        )
        try:
            results = await asyncio.gather(
                *(first.append(_batch(f"a{k}-", COPY_MIN)) for k in range(8)),
                *(second.append(_batch(f"b{k}-", COPY_MIN)) for k in range(8)),
            )
        finally:
            await second.close()
        assert sorted(i for r in results for i in r) == list(range(16 * COPY_MIN))
        await _check_tree(db, 16 * COPY_MIN)
