"""``targets.authorize_then``'s ``commit``: what an allowed action writes (a job queued) is
committed in the transaction of its ``accessed`` entry, both or neither; a denial never runs it."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from tests.access.access_fixtures import ADMIN, add_evidence, open_vault, person
from vault.access import decisions, targets, trails
from vault.cases import links as cases
from vault.db import Conn
from vault.errors import Conflict, NotFound
from vault.jobs import enqueue
from vault.policy.decide import Action, Role, Target
from vault.policy.labels import Label, Level

CASESYS = person("cs-1", {Role.CASE_SYSTEM}, Level.CONFIDENTIAL, ())
OUTSIDER = person("rev-9", {Role.REVIEWER}, Level.CONFIDENTIAL, ())  # assigned to no case


async def _counts(pool: asyncpg.Pool[asyncpg.Record]) -> tuple[int, int, int]:
    """(accessed entries, denied entries, jobs of kind ``test``)."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM ledger_entries WHERE kind = 'accessed') AS a,"
        " (SELECT count(*) FROM ledger_entries WHERE kind = 'denied') AS d,"
        " (SELECT count(*) FROM jobs WHERE kind = 'test') AS j"
    )
    assert row is not None
    return int(row["a"]), int(row["d"]), int(row["j"])


async def _serve(_target: Target) -> str:
    return "read"


async def test_commit_is_atomic_with_the_entry(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        eid = await add_evidence(ledger, officer_id="o1")
        queued: list[int] = []

        async def queue(conn: Conn, value: str) -> None:
            job = await enqueue(conn, "test", {"evidence_id": eid, "value": value})
            assert job is not None
            queued.append(job)

        a0, d0, j0 = await _counts(pool)
        got = await targets.authorize_then(
            pool, ledger, CASESYS, Action.STREAM, "evidence", eid, _serve, commit=queue
        )
        assert got == "read"
        assert await _counts(pool) == (a0 + 1, d0, j0 + 1)
        payload = await pool.fetchval("SELECT payload FROM jobs WHERE id = $1", queued[-1])
        assert json.loads(payload)["value"] == "read"

        async def queue_then_fail(conn: Conn, value: str) -> None:
            await enqueue(conn, "test", {"evidence_id": eid, "value": value})
            raise Conflict("the job was not queued; retry")

        # an attack on the order: the job written, then the action failing in the same
        # transaction must leave neither the job nor the entry (and the error is itself)
        with pytest.raises(Conflict):
            await targets.authorize_then(
                pool, ledger, CASESYS, Action.STREAM, "evidence", eid, _serve,
                commit=queue_then_fail,
            )  # fmt: skip
        assert await _counts(pool) == (a0 + 1, d0, j0 + 1)


async def test_a_denial_never_runs_the_commit(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        eid = await add_evidence(ledger, officer_id="o1")
        ran: list[str] = []

        async def queue(conn: Conn, value: str) -> None:
            ran.append(value)

        a0, d0, j0 = await _counts(pool)
        for eid_asked in (eid, "00000000-0000-4000-8000-000000000000"):  # invisible, missing
            with pytest.raises(NotFound):
                await targets.authorize_then(
                    pool, ledger, OUTSIDER, Action.STREAM, "evidence", eid_asked, _serve,
                    commit=queue,
                )  # fmt: skip
        assert not ran
        assert await _counts(pool) == (a0, d0 + 2, j0)  # both denials recorded, nothing else


async def test_an_effect_needs_a_recorded_action(pg_dsn: str, tmp_path: Path) -> None:
    async def effect(conn: Conn, indexes: list[int]) -> None:
        raise AssertionError("never run")

    async with open_vault(pg_dsn, tmp_path) as (ledger, _db):
        target = Target("case", Label(Level.INTERNAL), frozenset({"K1"}))
        with pytest.raises(ValueError, match="recorded action"):
            await decisions.guard(ledger, ADMIN, Action.LIST, "case", "K1", target, effect=effect)


async def test_a_trail_is_read_before_its_entry_and_holds_it(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "K1", "title", Label(Level.INTERNAL))
        size = await ledger.size()
        trail = await trails.trail(pool, ledger, ADMIN, case="K1")
        assert [e.kind for e in trail] == ["case", "accessed"]
        own = trail[-1]
        assert own.idx == size and own.fields["action"] == "read_metadata"
        assert own.opened == {"principal": ADMIN.id, "target": "case:K1"}
        # a principal's trail holds the read only when it is the reader's own
        theirs = await trails.trail(pool, ledger, ADMIN, principal="someone-else")
        assert theirs == []
        mine = await trails.trail(pool, ledger, ADMIN, principal=ADMIN.id)
        assert mine[-1].idx == await ledger.size() - 1
        assert mine[-1].opened["target"] == f"principal:{ADMIN.id}"
