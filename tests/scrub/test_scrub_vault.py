"""Scrub finds altered and missing objects, an edited ledger row, paces its reads, records runs."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from ingest.acquire import Receipt
from tests.ingest.acquire_fixtures import Env, dock, open_acquirer
from tests.vault_fixtures import ADMIN
from vault import evidence as evrows
from vault.access import principals, tokens
from vault.db import Conn
from vault.ledger import make_entry
from vault.ops.scrub import SCRUB_LOCK, ScrubBusy, due, run_scrub
from vault.ops.scrubmodel import ScrubConfig
from vault.ops.scrubsched import ScrubScheduler
from vault.policy.decide import Role
from vault.policy.labels import INTERNAL_LABEL, Level
from vault.storage.content import PlainContentStore

FAST = ScrubConfig(rate_mb_s=0.0)


def failures(source: str) -> float:
    return REGISTRY.get_sample_value("evault_integrity_failures_total", {"source": source}) or 0.0


async def acquire(env: Env, tmp: Path, n: int, size: int = 64 << 10) -> list[Receipt]:
    d = dock(tmp)
    out = []
    for i in range(n):
        path = d.path / f"DEV01_OFF123_2026010112{i:02d}00.mp4"
        path.write_bytes(os.urandom(size))
        receipt = await env.acq.acquire_path(d, path)
        assert isinstance(receipt, Receipt)
        out.append(receipt)
    return out


async def add_rendition(env: Env, evidence_id: str, data: bytes, kind: str = "poster") -> str:
    """A rendition recorded the way media jobs record one (blob, derived entry, row)."""
    src = env.tmp / f"rendition-{uuid.uuid4()}"
    src.write_bytes(data)
    fd = os.open(src, os.O_RDONLY)
    try:
        blob = env.store.ingest_file(fd)
    finally:
        os.close(fd)
    rid = uuid.uuid4()
    fields = {
        "evidence_id": evidence_id,
        "rendition": kind,
        "rendition_id": str(rid),
        "output_sha256": blob.sha256,
        "output_size": blob.size,
        "media_type": "image/jpeg",
        "label": "internal",
    }

    new = evrows.NewRendition(
        rid, uuid.UUID(evidence_id), kind, blob.sha256, blob.size, "image/jpeg", INTERNAL_LABEL
    )

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await evrows.insert_rendition(conn, env.ledger.mac, new, indexes[0])

    await env.ledger.append([make_entry("derived", fields)], effect=effect)
    return blob.sha256


def flip_byte(path: Path) -> None:
    path.chmod(0o600)  # objects are 0400; the test plays an intruder with write access
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    path.chmod(0o400)


async def integrity(env: Env) -> dict[str, tuple[str, Any]]:
    rows = await env.rows("SELECT id, integrity, last_scrub_at FROM evidence")
    return {str(r["id"]): (r["integrity"], r["last_scrub_at"]) for r in rows}


async def events(env: Env) -> list[dict[str, Any]]:
    rows = await env.rows(
        "SELECT payload FROM event_outbox WHERE type = 'integrity.failure' ORDER BY id"
    )
    return [json.loads(r["payload"]) for r in rows]


async def test_flipped_byte_and_missing_object_are_found_marked_announced_recorded(
    pg_dsn: str, tmp_path: Path
) -> None:
    async with open_acquirer(pg_dsn, tmp_path, [dock(tmp_path)]) as env:
        a, b, c = await acquire(env, tmp_path, 3)
        poster = await add_rendition(env, b.evidence_id, os.urandom(5000))
        content = PlainContentStore(env.store)

        clean = await run_scrub(env.ledger, content, FAST, mode="full")
        assert clean.ok and clean.evidence == 3 and clean.objects == 4
        assert clean.bytes == 3 * (64 << 10) + 5000 and clean.fsck_ok is True
        assert all(
            state == "ok" and at is not None for state, at in (await integrity(env)).values()
        )

        before = failures("scrub")
        flip_byte(env.store.path_of(a.sha256))
        env.store.path_of(poster).unlink()
        report = await run_scrub(env.ledger, content, FAST, mode="full")
        assert not report.ok
        assert report.mismatch == [a.evidence_id] and report.missing == [b.evidence_id]
        assert report.objects_ok == 2 and report.failed_objects == 2
        assert failures("scrub") - before == 2
        marks = await integrity(env)
        assert marks[a.evidence_id][0] == "mismatch" and marks[b.evidence_id][0] == "missing"
        assert marks[c.evidence_id][0] == "ok"
        got = {e["evidence_id"]: e for e in await events(env)}  # scrub order is not fixed
        assert {k: e["integrity"] for k, e in got.items()} == {
            a.evidence_id: "mismatch",
            b.evidence_id: "missing",
        }
        assert got[b.evidence_id]["objects"][0]["object"] == "poster"
        assert got[b.evidence_id]["objects"][0]["sha256"] == poster

        entry = json.loads(await env.ledger.entry(report.ledger_index or 0))
        assert entry["kind"] == "scrub" and entry["mode"] == "full"
        assert entry["mismatch"] == {"count": 1, "evidence": [a.evidence_id]}
        assert entry["missing"] == {"count": 1, "evidence": [b.evidence_id]}
        assert entry["objects"] == 4 and entry["objects_failed"] == 2
        assert entry["fsck"]["ok"] is True
        refs = await env.rows(
            "SELECT ref_id FROM ledger_refs WHERE ledger_idx = $1 ORDER BY ref_id",
            report.ledger_index,
        )
        assert [r["ref_id"] for r in refs] == sorted([a.evidence_id, b.evidence_id])

        # A persisting failure is found again but announced once.
        again = await run_scrub(env.ledger, content, FAST, mode="sample", sample=3)
        assert again.mismatch == [a.evidence_id] and len(await events(env)) == 2

        # Restoring the bytes (e.g. from a backup) clears the mark; the history stays.
        flip_byte(env.store.path_of(a.sha256))
        restored = await run_scrub(env.ledger, content, FAST, mode="full")
        assert restored.restored == [a.evidence_id] and restored.missing == [b.evidence_id]
        assert (await integrity(env))[a.evidence_id][0] == "ok"
        kinds = await env.rows("SELECT count(*) AS n FROM ledger_entries WHERE kind = 'scrub'")
        assert kinds[0]["n"] == 4


@pytest.mark.parametrize("role", ["evault_app", "superuser"])
async def test_attack_swapped_hashes_are_found_by_scrub(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    """Two rows' hashes swapped: every object still hashes to some row's hash, yet both items
    are marked, because their rows no longer verify."""
    async with open_acquirer(pg_dsn, tmp_path, [dock(tmp_path)]) as env:
        a, b, c = await acquire(env, tmp_path, 3)
        conn = await asyncpg.connect(pg_dsn)
        try:
            if role == "evault_app":
                await conn.execute("SET ROLE evault_app")
            else:
                await conn.execute("ALTER TABLE evidence DISABLE TRIGGER ALL")
            move = "UPDATE evidence SET sha256 = $2 WHERE id = $1::uuid"
            async with conn.transaction():
                await conn.execute(move, a.evidence_id, "0" * 64)
                await conn.execute(move, b.evidence_id, a.sha256)
                await conn.execute(move, a.evidence_id, b.sha256)
            if role != "evault_app":
                await conn.execute("ALTER TABLE evidence ENABLE TRIGGER ALL")
        finally:
            await conn.close()
        before = failures("scrub")
        report = await run_scrub(env.ledger, PlainContentStore(env.store), FAST, mode="full")
        assert not report.ok
        assert sorted(report.mismatch) == sorted([a.evidence_id, b.evidence_id])
        assert failures("scrub") - before == 2
        marks = await integrity(env)
        assert marks[a.evidence_id][0] == marks[b.evidence_id][0] == "mismatch"
        assert marks[c.evidence_id][0] == "ok"


async def test_disposed_evidence_is_not_reported_missing(pg_dsn: str, tmp_path: Path) -> None:
    async with open_acquirer(pg_dsn, tmp_path, [dock(tmp_path)]) as env:
        (a,) = await acquire(env, tmp_path, 1)
        env.store.remove(a.sha256)
        await env.db.pool.execute("UPDATE evidence SET disposed_at = now()")
        report = await run_scrub(env.ledger, PlainContentStore(env.store), FAST, mode="full")
        assert report.objects == 0 and not report.missing and report.fsck_ok is True
        # Disposed of by hand, without a `disposed` entry: the state check names it.
        assert [f.split(":", 1)[1].strip() for f in report.state_findings] == [
            f'evidence [id={a.evidence_id}] disposed_at: table "set", ledger null'
            f" (entry {a.ledger_index})"
        ]


async def test_edited_ledger_row_is_found_by_the_scrub_fsck(pg_dsn: str, tmp_path: Path) -> None:
    async with open_acquirer(pg_dsn, tmp_path, [dock(tmp_path)]) as env:
        (a,) = await acquire(env, tmp_path, 1)
        idx = (await env.rows("SELECT ledger_idx FROM evidence"))[0]["ledger_idx"]
        before = failures("fsck")
        conn = await asyncpg.connect(pg_dsn)  # a superuser, as a database insider
        try:
            await conn.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ALL")
            await conn.execute(
                "UPDATE ledger_entries SET data = convert_to("
                """'{"kind":"acquired","sha256":"00","time":"2026-01-01T00:00:00.000Z","v":1}',"""
                " 'UTF8') WHERE idx = $1",
                idx,
            )
            await conn.execute(
                "ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_append_only"
            )
        finally:
            await conn.close()
        content = PlainContentStore(env.store)
        report = await run_scrub(env.ledger, content, FAST, mode="sample", sample=1)
        assert report.fsck_ok is False and report.fsck_first_bad_index == idx
        assert not report.ok and report.objects_ok == 1
        assert failures("fsck") - before == 1
        entry = json.loads(await env.ledger.entry(report.ledger_index or 0))
        assert entry["fsck"]["ok"] is False and entry["fsck"]["first_bad_index"] == idx
        # The altered entry no longer names the evidence row: fsck --state says so too (the
        # entry, and the row no entry accounts for).
        assert entry["fsck"]["state_findings"] == 2
        assert [f.split(":")[0] for f in report.state_findings] == ["entry", "extra"]
        assert [e["source"] for e in await events(env)] == ["fsck", "fsck-state"]
        # Announced once: the next run still fails but adds no event.
        await run_scrub(env.ledger, content, FAST, mode="sample", sample=0)
        assert len(await events(env)) == 2
        assert (await integrity(env))[a.evidence_id][0] == "ok"


async def test_attack_rolled_back_revocation_is_found_by_the_scrub(
    pg_dsn: str, tmp_path: Path
) -> None:
    async with open_acquirer(pg_dsn, tmp_path, [dock(tmp_path)]) as env:
        await acquire(env, tmp_path, 1)
        spec = principals.PrincipalSpec("p1", frozenset({Role.REVIEWER}), Level.INTERNAL)
        await principals.add(env.db.pool, env.ledger, ADMIN, spec)
        issued = await tokens.create(env.db.pool, env.ledger, ADMIN, "p1", timedelta(days=1))
        await tokens.revoke(env.db.pool, env.ledger, ADMIN, issued.id)
        content = PlainContentStore(env.store)
        clean = await run_scrub(env.ledger, content, FAST, mode="full")
        assert clean.ok and clean.state_findings == []
        before = failures("fsck-state")
        await env.db.pool.execute("UPDATE tokens SET revoked_at = NULL")  # as evault_app
        report = await run_scrub(env.ledger, content, FAST, mode="sample", sample=0)
        assert not report.ok and report.fsck_ok is True
        assert len(report.state_findings) == 1
        assert f"tokens [id={issued.id}] revoked_at" in report.state_findings[0]
        assert failures("fsck-state") - before == 1
        entry = json.loads(await env.ledger.entry(report.ledger_index or 0))
        assert entry["fsck"]["state_findings"] == 1
        assert [(e["source"], e["findings"], e["tables"]) for e in await events(env)] == [
            ("fsck-state", 1, ["tokens"])
        ]
        await run_scrub(env.ledger, content, FAST, mode="sample", sample=0)
        assert len(await events(env)) == 1  # a persisting finding is announced once


async def test_reads_are_rate_limited(pg_dsn: str, tmp_path: Path) -> None:
    async with open_acquirer(pg_dsn, tmp_path, [dock(tmp_path)]) as env:
        await acquire(env, tmp_path, 1, size=2 << 20)
        cfg = ScrubConfig(rate_mb_s=4.0, fsck=False)
        started = time.monotonic()
        report = await run_scrub(env.ledger, PlainContentStore(env.store), cfg, mode="full")
        elapsed = time.monotonic() - started
        assert report.ok and report.bytes == 2 << 20 and report.fsck_ok is None
        assert elapsed >= 0.4, f"2 MiB at 4 MiB/s took only {elapsed:.3f} s"
        entry = json.loads(await env.ledger.entry(report.ledger_index or 0))
        assert entry["rate_limit_bytes_per_s"] == 4 << 20 and "fsck" not in entry


async def test_one_run_at_a_time_and_the_schedule(pg_dsn: str, tmp_path: Path) -> None:
    async with open_acquirer(pg_dsn, tmp_path, [dock(tmp_path)]) as env:
        await acquire(env, tmp_path, 2)
        content = PlainContentStore(env.store)
        holder = await asyncpg.connect(pg_dsn)
        try:
            await holder.execute("SELECT pg_advisory_lock($1)", SCRUB_LOCK)
            with pytest.raises(ScrubBusy):
                await run_scrub(env.ledger, content, FAST, mode="full")
            assert await ScrubScheduler(env.ledger, content, FAST).tick() is None
        finally:
            await holder.close()

        assert await due(env.db.pool, FAST) == "full"  # never scrubbed
        scheduler = ScrubScheduler(env.ledger, content, FAST)
        first = await scheduler.tick()
        assert first is not None and first.mode == "full" and first.trigger == "schedule"
        assert await due(env.db.pool, FAST) is None
        assert await scheduler.tick() is None
        eager = ScrubConfig(rate_mb_s=0.0, sample_interval_hours=1e-9, sample_size=1)
        assert await due(env.db.pool, eager) == "sample"
        sample = await ScrubScheduler(env.ledger, content, eager).tick()
        assert sample is not None and sample.mode == "sample" and sample.evidence == 1
        never = ScrubConfig(full_interval_hours=0.0, sample_interval_hours=0.0)
        assert await due(env.db.pool, never) is None

        # In the background: started, it runs what is due, and stops cleanly.
        background = ScrubScheduler(env.ledger, content, eager)
        background.start()
        try:
            for _ in range(100):
                if background.last is not None:
                    break
                await asyncio.sleep(0.05)
            assert background.alive() and background.last is not None
        finally:
            await background.stop()
        assert not background.alive()
