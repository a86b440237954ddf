"""The database-backed ledger against the naive RFC 6962 reference, on a real PostgreSQL."""

from __future__ import annotations

import json
import random
from pathlib import Path

import asyncpg
import pytest

from tests.ledger.ledger_fixtures import open_ledger
from tests.merkle_reference import leaf, mth, path, proof
from vault.errors import EntryTooLarge
from vault.ledger import make_entry
from vault.ledger.tiles import consistency_proof, inclusion_proof, root_at
from verify.checkpoint import open_checkpoint
from verify.merkle import verify_consistency, verify_inclusion
from verify.tlogproof import parse_tlog_proof, verify_tlog_proof

BOUNDARY_SIZES = [1, 2, 3, 7, 255, 256, 257, 511, 512, 513, 1000, 65535, 65536, 65537]


async def test_tiled_tree_agrees_with_naive_reference(pg_dsn: str, tmp_path: Path) -> None:
    """Roots and proofs read from stored tiles equal the naive recursive ones at every size,
    including the 256 and 65,536 tile boundaries."""
    rng = random.Random(6962)
    async with open_ledger(pg_dsn, tmp_path, batch_max=4096) as (ledger, db):
        leaves: list[bytes] = []
        for size in BOUNDARY_SIZES:
            batch = [make_entry("note", {"text": f"e{i}"}) for i in range(len(leaves), size)]
            for start in range(0, len(batch), 4096):
                chunk = batch[start : start + 4096]
                got = await ledger.append(chunk)
                assert got == list(range(len(leaves), len(leaves) + len(chunk)))
                leaves.extend(leaf(e.data) for e in chunk)
            async with db.pool.acquire() as conn:
                root = await root_at(conn, size)
                assert root == mth(leaves), size
                for index in {0, size - 1, rng.randrange(size)}:
                    p = await inclusion_proof(conn, index, size)
                    if size <= 1024:  # the naive PATH is quadratic; spot-check large sizes
                        assert p == path(index, leaves), (index, size)
                    verify_inclusion(leaves[index], index, size, p, root)
                for old in {1, size // 2, size - 1, rng.randrange(1, size + 1)}:
                    if not 0 < old <= size:
                        continue
                    c = await consistency_proof(conn, old, size)
                    if size <= 1024:
                        assert c == proof(old, leaves), (old, size)
                    verify_consistency(old, size, c, mth(leaves[:old]), root)


async def test_random_sizes_property(pg_dsn: str, tmp_path: Path) -> None:
    """Random append sizes: every intermediate root and a random proof agree with the reference."""
    rng = random.Random(1)
    async with open_ledger(pg_dsn, tmp_path) as (ledger, db):
        leaves: list[bytes] = []
        for _ in range(25):
            batch = [
                make_entry("note", {"text": str(rng.random())[:8]})
                for _ in range(rng.randrange(1, 300))
            ]
            await ledger.append(batch)
            leaves.extend(leaf(e.data) for e in batch)
            size = len(leaves)
            async with db.pool.acquire() as conn:
                assert await root_at(conn, size) == mth(leaves)
                i = rng.randrange(size)
                assert await inclusion_proof(conn, i, size) == path(i, leaves)


async def test_checkpoint_signed_and_tlog_proof_verifies(pg_dsn: str, tmp_path: Path) -> None:
    async with open_ledger(pg_dsn, tmp_path) as (ledger, _db):
        entries = [make_entry("note", {"text": f"n{i}"}) for i in range(300)]
        indexes = await ledger.append(entries, wait_checkpoint=True)
        cp = await ledger.latest()
        assert cp is not None and cp.size == 300
        parsed = open_checkpoint(cp.note, ledger.verifier)
        assert parsed.size == 300
        text = await ledger.tlog_proof(indexes[123])
        verified = verify_tlog_proof(parse_tlog_proof(text), entries[123].data, ledger.verifier)
        assert verified.size == 300
        # The external log got the same note.
        lines = (tmp_path / "checkpoints.log").read_text().splitlines()
        assert cp.note in [json.loads(line)["note"] for line in lines]


async def test_commitments_keep_secrets_out_of_the_entry(pg_dsn: str, tmp_path: Path) -> None:
    async with open_ledger(pg_dsn, tmp_path) as (ledger, _db):
        e = make_entry(
            "acquired", {"sha256": "ab" * 32}, {"officer": "警号 0451", "file_name": "x.mp4"}
        )
        (idx,) = await ledger.append([e])
        data = await ledger.entry(idx)
        assert b"0451" not in data and b"x.mp4" not in data
        openings = await ledger.openings(idx)
        assert sorted(o.field for o in openings) == ["file_name", "officer"]


def test_oversized_entry_is_refused() -> None:
    with pytest.raises(EntryTooLarge, match="65535"):
        make_entry("note", {"text": "x" * 70000})


async def test_effect_failure_commits_nothing_of_that_call(pg_dsn: str, tmp_path: Path) -> None:
    async with open_ledger(pg_dsn, tmp_path) as (ledger, db):

        async def bad(conn: asyncpg.Connection, idx: list[int]) -> None:
            await conn.execute("SELECT 1/0")

        with pytest.raises(asyncpg.DivisionByZeroError):
            await ledger.append([make_entry("note", {"text": "doomed"})], effect=bad)
        (idx,) = await ledger.append([make_entry("note", {"text": "fine"})])
        assert idx == 0
        assert await db.pool.fetchval("SELECT count(*) FROM ledger_entries") == 1


@pytest.mark.parametrize("table", ["ledger_entries", "ledger_checkpoints", "ledger_openings"])
@pytest.mark.parametrize(
    "statement", ["UPDATE {t} SET idx = idx", "DELETE FROM {t}", "TRUNCATE {t}"]
)
async def test_app_role_cannot_rewrite_history(
    pg_dsn: str, tmp_path: Path, table: str, statement: str
) -> None:
    async with open_ledger(pg_dsn, tmp_path) as (ledger, db):
        await ledger.append([make_entry("note", {"text": "t"}, {"s": 1})], wait_checkpoint=True)
        sql = statement.format(t=table).replace(
            "SET idx = idx", "SET size = size" if table == "ledger_checkpoints" else "SET idx = idx"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await db.pool.execute(sql)


async def test_triggers_block_even_the_owner(pg_dsn: str, tmp_path: Path) -> None:
    async with open_ledger(pg_dsn, tmp_path) as (ledger, _db):
        await ledger.append([make_entry("note", {"text": "t"})])
    owner = await asyncpg.connect(pg_dsn)
    try:
        for sql in (
            "UPDATE ledger_entries SET kind='x'",
            "DELETE FROM ledger_entries",
            "TRUNCATE ledger_entries CASCADE",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner.execute(sql)
    finally:
        await owner.close()


async def test_append_on_a_closed_pool_fails_instead_of_hanging(
    pg_dsn: str, tmp_path: Path
) -> None:
    import asyncio

    async with open_ledger(pg_dsn, tmp_path) as (ledger, db):
        await ledger.append([make_entry("note", {"text": "before"})])
        await db.pool.close()
        with pytest.raises(asyncpg.InterfaceError):
            await asyncio.wait_for(ledger.append([make_entry("note", {"text": "after"})]), 10)
        # The sequencer survives: a later failure is reported too, not a hang.
        with pytest.raises(asyncpg.InterfaceError):
            await asyncio.wait_for(ledger.append([make_entry("note", {"text": "again"})]), 10)
