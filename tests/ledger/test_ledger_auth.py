"""Authenticated appends: an insider without the host's keys never gets a forged entry signed,
and fsck names the exact entry — as the app role and as the superuser, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import REGISTRY

from tests.ledger.ledger_fixtures import ORIGIN, TEST_MAC, open_ledger
from tests.ledger_forgery import connect_as, delete_batch_rows, forge_appended_entry, rewrite_entry
from vault.errors import LedgerCorrupt, LedgerUnauthenticated
from vault.keys.hostmac import HostMac
from vault.ledger import Ledger, batches, make_entry
from vault.ledger.batches import authenticate
from vault.ledger.fsck import FsckReport, fsck
from vault.ledger.tiles import read_state
from verify.note import Signer

ROLES = ["evault_app", "superuser"]


def _accessed(i: int) -> object:
    return make_entry(
        "accessed",
        {"action": "view", "evidence": f"ev-{i}", "outcome": "allowed"},
        {"principal": f"officer-{i}"},
    )


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def _fsck(ledger: Ledger, tmp: Path) -> FsckReport:
    async with ledger.pool.acquire() as conn:
        return await fsck(conn, ledger.verifier, tmp / "checkpoints.log", TEST_MAC)


async def _checkpoint_sizes(ledger: Ledger) -> list[int]:
    return [r["size"] for r in await ledger.pool.fetch("SELECT size FROM ledger_checkpoints")]


@pytest.mark.parametrize("role", ROLES)
async def test_attack_forged_entries_get_signed(
    pg_dsn: str, tmp_path: Path, role: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An `accessed` entry copied from a real one with only its action changed, appended with
    the tiles and tree state rewritten self-consistently (the superuser also adds a batch row
    with a real batch's tag): after a restart nothing over it is ever signed, the alarm is
    raised naming it, and fsck names exactly it."""
    signer = Signer.generate(ORIGIN)
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        for i in range(0, 12, 4):
            await ledger.append([_accessed(j) for j in range(i, i + 4)])  # type: ignore[misc]
        first = await ledger.checkpoint()
    assert first.size == 12
    conn = await connect_as(pg_dsn, role)
    try:
        tag = None
        if role == "superuser":  # a real batch's tag on the forged batch row
            tag = bytes(await conn.fetchval("SELECT tag FROM ledger_batches WHERE first = 4"))
        forged = await forge_appended_entry(conn, 3, {"action": "export"}, batch_tag=tag)
    finally:
        await conn.close()
    assert forged == 12
    log_lines = (tmp_path / "checkpoints.log").read_text()
    failures = _sample("evault_integrity_failures_total", {"source": "checkpointer"})

    caplog.set_level(logging.ERROR, logger="evault.ledger")
    async with open_ledger(pg_dsn, tmp_path, signer=signer, checkpoint_interval=0.01) as (
        ledger,
        db,
    ):
        with pytest.raises(LedgerUnauthenticated) as refused:
            await ledger.checkpoint()
        assert refused.value.index == forged
        # Appends go on, on top of the forged tree; the checkpointer still signs nothing.
        await ledger.append([_accessed(99)])  # type: ignore[list-item]
        ledger.start()
        await asyncio.sleep(0.3)
        with pytest.raises(LedgerUnauthenticated) as again:
            await ledger.checkpoint()
        assert again.value.index == forged
        assert await _checkpoint_sizes(ledger) == [12]
        assert (tmp_path / "checkpoints.log").read_text() == log_lines
        # The alarm: readiness, metrics, an event, an error log line naming the entry.
        assert (
            ledger.checkpointer.health() == f"checkpoints stopped: entry {forged} not authenticated"
        )
        assert _sample("evault_ledger_checkpoints_stopped") == 1
        assert (
            _sample("evault_integrity_failures_total", {"source": "checkpointer"}) == failures + 1
        )
        events = await db.pool.fetch(
            "SELECT payload FROM event_outbox WHERE type = 'integrity.failure'"
        )
        assert [json.loads(e["payload"])["first_bad_index"] for e in events] == [forged]
        assert any(
            r.levelno == logging.ERROR and f"entry {forged} not authenticated" in r.getMessage()
            for r in caplog.records
        )
        report = await _fsck(ledger, tmp_path)
    assert report.first_bad_index == forged, report.problems
    assert any(f"entry {forged}" in p for p in report.problems), report.problems


@pytest.mark.parametrize("role", ROLES)
async def test_attack_fsck_names_the_wrong_index(pg_dsn: str, tmp_path: Path, role: str) -> None:
    """Entry 21 forged between checkpoints at 20 and 23, every tile recomputed to match: fsck
    names 21 itself, not the next checkpoint boundary. The superuser rewrites entry 21's sha256
    in place; the app role (which cannot update entries) appends a forged entry 21 with a batch
    row carrying a real batch's tag, then the service appends on top of it."""
    signer = Signer.generate(ORIGIN)

    def acquired(i: int) -> object:
        return make_entry("acquired", {"sha256": f"{i:064x}", "evidence": f"ev-{i}"})

    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        await ledger.append([acquired(i) for i in range(20)])  # type: ignore[misc]
        await ledger.checkpoint()
        if role == "superuser":
            await ledger.append([acquired(i) for i in range(20, 23)])  # type: ignore[misc]
            await ledger.checkpoint()
            await ledger.append([acquired(i) for i in range(23, 30)])  # type: ignore[misc]
            await ledger.checkpoint()
        else:
            await ledger.append([acquired(20)])  # type: ignore[list-item]
    conn = await connect_as(pg_dsn, role)
    try:
        if role == "superuser":
            await rewrite_entry(conn, 21, {"sha256": "f" * 64})
        else:
            tag = bytes(await conn.fetchval("SELECT tag FROM ledger_batches WHERE first = 20"))
            assert await forge_appended_entry(conn, 20, {"sha256": "f" * 64}, batch_tag=tag) == 21
    finally:
        await conn.close()
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        if role == "evault_app":
            await ledger.append([acquired(i) for i in range(22, 30)])  # type: ignore[misc]
            with pytest.raises(LedgerUnauthenticated) as refused:
                await ledger.checkpoint()
            assert refused.value.index == 21
        else:
            with pytest.raises(LedgerCorrupt):  # the tree at 30 is not the one signed at 30
                await ledger.checkpoint()
        report = await _fsck(ledger, tmp_path)
    assert report.first_bad_index == 21, report.problems
    assert any(p.startswith("entry 21") or "entry 21 is not" in p for p in report.problems)


async def test_attack_batch_row_deleted_hides_nothing(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The superuser deletes the batch row of entries 20..22 (not yet signed): the checkpointer
    refuses from entry 20 and fsck names 20 (reading the batch rows a few entries' worth at a
    time, across the gap)."""
    monkeypatch.setattr(batches, "SPAN", 8)
    signer = Signer.generate(ORIGIN)
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        await ledger.append([make_entry("note", {"text": f"a{i}"}) for i in range(20)])
        await ledger.checkpoint()
        await ledger.append([make_entry("note", {"text": f"b{i}"}) for i in range(3)])
        await ledger.append([make_entry("note", {"text": f"c{i}"}) for i in range(5)])
    conn = await connect_as(pg_dsn, "superuser")
    try:
        assert await delete_batch_rows(conn, "first = $1", 20) == 1
    finally:
        await conn.close()
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        with pytest.raises(LedgerUnauthenticated) as refused:
            await ledger.checkpoint()
        assert refused.value.index == 20
        report = await _fsck(ledger, tmp_path)
    assert report.first_bad_index == 20, report.problems
    assert len(report.problems) == 1, report.problems  # entries 23.. are in their batch
    assert report.batches_checked == 2  # at 0 and at 23, read across the gap


@pytest.mark.parametrize("role", ROLES)
async def test_attack_batch_row_tagged_without_the_host_key_is_refused(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    """An insider who appends an entry *and* the batch row the sequencer would write for it —
    tiles and state consistent, the tag made with a guessed key — gets nothing signed, and fsck
    names the entry: without the host key no tag verifies."""
    signer = Signer.generate(ORIGIN)
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        await ledger.append([make_entry("note", {"text": f"a{i}"}) for i in range(5)])
        await ledger.checkpoint()
    guessed = HostMac(bytes([8]) * 32)
    conn = await connect_as(pg_dsn, role)
    try:
        forged = await forge_appended_entry(conn, 0, {"text": "forged"}, batch_mac=guessed)
    finally:
        await conn.close()
    assert forged == 5
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        with pytest.raises(LedgerUnauthenticated) as refused:
            await ledger.checkpoint()
        assert refused.value.index == forged
        report = await _fsck(ledger, tmp_path)
    assert report.first_bad_index == forged, report.problems
    assert any("does not verify" in p for p in report.problems), report.problems


async def test_ledger_signed_before_batch_rows_keeps_checkpointing(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A ledger from before batch rows (simulated: its rows removed) is authentic up to its last
    signed checkpoint: appends after it are checkpointed, and fsck passes with the key."""
    signer = Signer.generate(ORIGIN)
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        await ledger.append([make_entry("note", {"text": f"old{i}"}) for i in range(50)])
        await ledger.checkpoint()
    conn = await connect_as(pg_dsn, "superuser")
    try:
        assert await delete_batch_rows(conn, "true") == 1
    finally:
        await conn.close()
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        await ledger.append([make_entry("note", {"text": f"new{i}"}) for i in range(10)])
        assert (await ledger.checkpoint()).size == 60
        assert ledger.checkpointer.health() == "ok"
        report = await _fsck(ledger, tmp_path)
    assert report.ok, report.problems
    assert report.batches_checked == 1


async def test_unsigned_entries_without_batch_rows_are_not_adopted(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Entries without batch rows that no signed checkpoint covers are not authentic: nothing
    is signed over them, and fsck names the first."""
    signer = Signer.generate(ORIGIN)
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        await ledger.append([make_entry("note", {"text": f"a{i}"}) for i in range(8)])
        await ledger.checkpoint()
        await ledger.append([make_entry("note", {"text": f"b{i}"}) for i in range(4)])
    conn = await connect_as(pg_dsn, "superuser")
    try:
        assert await delete_batch_rows(conn, "true") == 2
    finally:
        await conn.close()
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        with pytest.raises(LedgerUnauthenticated) as refused:
            await ledger.checkpoint()
        assert refused.value.index == 8
        report = await _fsck(ledger, tmp_path)
    assert report.first_bad_index == 8, report.problems


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_batches SET count = count",
        "DELETE FROM ledger_batches",
        "TRUNCATE ledger_batches",
    ],
)
@pytest.mark.parametrize("role", ROLES)
async def test_attack_batch_rows_cannot_be_rewritten(
    pg_dsn: str, tmp_path: Path, sql: str, role: str
) -> None:
    """Batch rows are append-only: refused for the app role (no privilege) and for the
    superuser (ENABLE ALWAYS triggers)."""
    async with open_ledger(pg_dsn, tmp_path) as (ledger, _db):
        await ledger.append([make_entry("note", {"text": "t"})])
    conn = await connect_as(pg_dsn, role)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(sql)
        assert await conn.fetchval("SELECT count(*) FROM ledger_batches") == 1
    finally:
        await conn.close()


async def test_every_append_path_leaves_authenticated_batches(pg_dsn: str, tmp_path: Path) -> None:
    """Small and COPY-sized batches, pipelined on speculative edges with commits overlapping,
    all carry tags for the tree they were applied on: the whole tree authenticates from 0."""
    async with open_ledger(pg_dsn, tmp_path, batch_max=700) as (ledger, db):

        async def call(k: int) -> list[int]:
            n = 1 if k % 3 else 300
            return await ledger.append([make_entry("note", {"text": f"{k}-{i}"}) for i in range(n)])

        await asyncio.gather(*(call(k) for k in range(30)))
        async with db.pool.acquire() as conn:
            size, root = await read_state(conn)
            await authenticate(conn, TEST_MAC, 0, size, root)
            with pytest.raises(LedgerUnauthenticated):
                await authenticate(conn, HostMac(bytes([9]) * 32), 0, size, root)
        assert (await ledger.checkpoint()).size == size
        report = await _fsck(ledger, tmp_path)
    assert report.ok, report.problems
    assert report.batches_checked and report.batches_checked > 1


@pytest.mark.parametrize("role", ROLES)
async def test_attack_forged_batch_row_over_real_entries_is_named(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    """A batch row inserted over entries the service wrote (claiming other leaves for 15..16)
    is named by fsck at its first index, and does not keep the real batches from being checked:
    an entry changed under it is still named exactly."""
    signer = Signer.generate(ORIGIN)
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        await ledger.append([make_entry("note", {"text": f"a{i}"}) for i in range(10)])
        await ledger.checkpoint()
        await ledger.append([make_entry("note", {"text": f"b{i}"}) for i in range(10)])
    conn = await connect_as(pg_dsn, role)
    try:
        size, root = await read_state(conn)
        await conn.execute(
            "INSERT INTO ledger_batches (first, count, size, root, leaves, tag)"
            " VALUES (15, 2, 17, $1, $2, $3)",
            root,
            bytes(64),
            bytes(32),
        )
    finally:
        await conn.close()
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        assert (await ledger.checkpoint()).size == size  # the real batches still authenticate
        report = await _fsck(ledger, tmp_path)
    assert report.first_bad_index == 15, report.problems
    assert [p for p in report.problems if "does not verify" in p], report.problems
    conn = await connect_as(pg_dsn, "superuser")
    try:
        await rewrite_entry(conn, 18, {"text": "changed"})
    finally:
        await conn.close()
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        report = await _fsck(ledger, tmp_path)
    assert any(p.startswith("entry 18:") for p in report.problems), report.problems
