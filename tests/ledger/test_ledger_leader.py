"""Several processes on one log: one leader signs what anyone appends, hands over when it dies,
and a leader that lost its lock stores nothing.

Each "process" here is a ledger on its own pool and its own sessions (as separate processes
would have); the subprocess version is tests/api/test_multinode.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from tests.ledger.ledger_fixtures import ORIGIN, TEST_MAC
from vault.config import DatabaseConfig, LedgerConfig
from vault.db import open_database
from vault.errors import LedgerCorrupt
from vault.ledger import Ledger, make_entry
from vault.ledger.checkpointer import LEADER_LOCK, latest_checkpoint
from vault.ledger.fsck import fsck
from verify.note import Signer

SIGNER = Signer.generate(ORIGIN)  # one log key, shared by every node


@asynccontextmanager
async def node(
    dsn: str, tmp: Path, *, start: bool = True, follow: bool = False
) -> AsyncIterator[Ledger]:
    """A ledger as ``evault serve`` opens it (``start``; ``follow``: in an API worker of
    ``--workers``) or as a CLI command does."""
    tmp.mkdir(parents=True, exist_ok=True)
    async with open_database(DatabaseConfig(dsn=dsn), tmp) as db:
        ledger = Ledger(
            db.pool,
            SIGNER,
            LedgerConfig(origin=ORIGIN, checkpoint_interval=0.05),
            tmp / "checkpoints.log",
            mac=TEST_MAC,
            connect=lambda: asyncpg.connect(db.dsn, server_settings={"role": db.app_role}),
            follow=follow,
        )
        if start:
            ledger.start()
        try:
            yield ledger
        finally:
            await ledger.close()


async def covered_within(ledger: Ledger, size: int, limit: float) -> float:
    """Seconds until a stored checkpoint covers ``size`` (fails after ``limit``)."""
    t0 = time.monotonic()
    while True:
        cp = await latest_checkpoint(ledger.pool)
        if cp is not None and cp.size >= size:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < limit, f"size {size} not covered within {limit} s"
        await asyncio.sleep(0.01)


async def leaders(*ledgers: Ledger) -> list[Ledger]:
    await asyncio.sleep(0.3)
    return [x for x in ledgers if x.checkpointer.leading]


async def test_one_leader_signs_what_another_process_appended(pg_dsn: str, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(node(pg_dsn, tmp_path / "a"))
        b = await stack.enter_async_context(node(pg_dsn, tmp_path / "b"))
        cli = await stack.enter_async_context(node(pg_dsn, tmp_path / "cli", start=False))
        assert len(await leaders(a, b)) == 1
        for _ in range(5):
            idx = await cli.append([make_entry("note", {"text": "from a CLI"})])
            # Without notifications this would wait for the leader's poll (1 s).
            assert await covered_within(cli, idx[-1] + 1, 0.8) < 0.8
        for x in (a, b):  # appended on the follower too
            idx = await x.append([make_entry("note", {"text": "from a node"})])
            await covered_within(x, idx[-1] + 1, 0.8)
        # A caller waiting on the follower is woken by the leader's checkpoint.
        follower = next(x for x in (a, b) if not x.checkpointer.leading)
        t0 = time.monotonic()
        await follower.append([make_entry("note", {"text": "wait"})], wait_checkpoint=True)
        assert time.monotonic() - t0 < 0.8
        # Each node's checkpoints.log witnesses every stored checkpoint: its own, and those the
        # other signed (copied once verified), so fsck is clean on either.
        await asyncio.sleep(0.3)
        for x in (a, b):
            async with x.pool.acquire() as conn:
                report = await fsck(conn, x.verifier, x.log_path, TEST_MAC)
            assert report.ok, report.problems
        lines = [json.loads(line) for line in follower.log_path.read_text().splitlines()]
        assert lines and all(line.get("copied") for line in lines)


async def test_a_follower_never_signs_but_learns_every_checkpoint(
    pg_dsn: str, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        worker = await stack.enter_async_context(node(pg_dsn, tmp_path / "w", follow=True))
        # No leader anywhere: the follower appends, nothing is signed, nothing is written.
        idx = await worker.append([make_entry("note", {"text": "from a worker"})])
        await asyncio.sleep(0.5)
        assert not worker.checkpointer.leading
        assert await latest_checkpoint(worker.pool) is None
        waiting = asyncio.create_task(
            worker.append([make_entry("note", {"text": "awaits"})], wait_checkpoint=True)
        )
        covering = asyncio.create_task(worker.checkpoint())  # waits too: it signs nothing
        await asyncio.sleep(0.3)
        assert not waiting.done() and not covering.done()
        # The main process starts: it leads, signs, and the follower's waiters wake.
        main = await stack.enter_async_context(node(pg_dsn, tmp_path / "m"))
        last = (await asyncio.wait_for(waiting, 30))[-1]
        cp = await asyncio.wait_for(covering, 30)
        assert cp.size > idx[-1] and (await worker.latest()).size > last  # type: ignore[union-attr]
        assert main.checkpointer.leading and not worker.checkpointer.leading
    assert not (tmp_path / "w" / "checkpoints.log").exists()  # only the main's log is written
    assert (tmp_path / "m" / "checkpoints.log").read_text().count("\n") >= 1


async def test_a_dead_leader_hands_over_at_once(pg_dsn: str, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(node(pg_dsn, tmp_path / "a"))
        b = await stack.enter_async_context(node(pg_dsn, tmp_path / "b"))
        cli = await stack.enter_async_context(node(pg_dsn, tmp_path / "cli", start=False))
        (leader,) = await leaders(a, b)
        other = b if leader is a else a
        # The leader's sessions die as with kill -9 of its process: PostgreSQL sees them close.
        admin = await asyncpg.connect(pg_dsn)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
                " WHERE locktype = 'advisory' AND objid = $1::bigint::oid AND granted",
                LEADER_LOCK,
            )
        finally:
            await admin.close()
        assert killed == 1
        idx = await cli.append([make_entry("note", {"text": "during the handover"})])
        await covered_within(cli, idx[-1] + 1, 1.0)
        assert (await leaders(a, b))[0] in (leader, other)


async def test_stale_leader_cannot_store_a_checkpoint(pg_dsn: str, tmp_path: Path) -> None:
    """A node that lost the leader lock (here: never held it) signs on its old session: the
    fence refuses inside the transaction and nothing is stored."""
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(node(pg_dsn, tmp_path / "a", start=False))
        await a.append([make_entry("note", {"text": "x"})])
        before = await a.checkpoint()
        stale = await stack.enter_async_context(node(pg_dsn, tmp_path / "stale", start=False))
        await stale.append([make_entry("note", {"text": "y"})])
        conn = await asyncpg.connect(pg_dsn)
        try:
            with pytest.raises(Exception, match="leader lock is not held"):
                await stale.checkpointer.checkpoint(conn)
        finally:
            await conn.close()
        assert await latest_checkpoint(a.pool) == before
        assert await a.checkpoint() != before  # the tree itself was fine to sign


async def test_forged_larger_checkpoint_row_stops_signing_loudly(
    pg_dsn: str, tmp_path: Path
) -> None:
    """An insider stores a checkpoint row larger than the tree, signed by no key of ours: the
    signer refuses to store an older tree after it (the latest never goes back) and says so."""
    async with node(pg_dsn, tmp_path / "a", start=False) as a:
        await a.append([make_entry("note", {"text": "x"})])
        await a.checkpoint()
        owner = await asyncpg.connect(pg_dsn)
        try:
            await owner.execute(
                "INSERT INTO ledger_checkpoints (size, root, note) VALUES (1000, $1, 'forged')",
                bytes(32),
            )
        finally:
            await owner.close()
        await a.append([make_entry("note", {"text": "y"})])
        with pytest.raises(LedgerCorrupt, match="not a checkpoint this key signed"):
            await a.checkpoint()
        assert a.checkpointer.health().startswith("checkpoints stopped")
