"""Legitimate flows keep evidence and rendition rows verifying; edits in the database do not.

Acquisition, media jobs, links, relabelling, category and disposal each leave every row tagged
with the entry that last set its bound values (``vault.evidence``); a rendition whose row is
edited by an insider (as ``evault_app`` and as the superuser) serves no bytes and is refused
with a recorded denial.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ingest.acquire import Receipt
from ingest.config import MediaConfig
from ingest.mediajobs import MediaJobs
from tests.ingest.acquire_fixtures import dock, open_acquirer
from tests.ingest.test_media_jobs_e2e import drain, make_clip
from tests.vault_fixtures import ADMIN, TEST_MAC
from vault import evidence as evrows
from vault.access import serving
from vault.access.decisions import TAMPERED_REASON
from vault.cases import links as cases
from vault.errors import NotFound
from vault.jobs import JobRunner
from vault.keys.hostmac import RowTampered
from vault.ops import disposition
from vault.ops.retention import RetentionPolicy
from vault.policy.decide import Action, Role
from vault.policy.labels import Label, Level

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")

LEGAL = ADMIN.__class__(
    id="legal",
    clearance=Level.TOP_SECRET,
    caveats=ADMIN.caveats,
    roles=frozenset({Role.LEGAL_REVIEWER}),
    cases=frozenset({"K1"}),
)


async def verify_all(pool: Any) -> dict[str, int]:
    """Check every evidence and rendition row; return each row's state_idx by id."""
    out = {}
    for row in await pool.fetch(f"SELECT {evrows.evidence_columns()} FROM evidence e"):
        evrows.check_evidence(TEST_MAC, row)
        out[str(row["id"])] = row["state_idx"]
    for row in await pool.fetch(f"SELECT {evrows.rendition_columns()} FROM renditions r"):
        evrows.check_rendition(TEST_MAC, row)
        out[str(row["id"])] = row["state_idx"]
    return out


async def last_entry(pool: Any, kind: str) -> int:
    idx: int = await pool.fetchval("SELECT max(idx) FROM ledger_entries WHERE kind = $1", kind)
    return idx


async def test_legitimate_flows_keep_rows_verifying(pg_dsn: str, tmp_path: Path) -> None:
    d = dock(tmp_path)
    clip = d.path / "DEV01_OFF123_20260101120000.mp4"
    make_clip(clip)
    other = d.path / "DEV01_OFF123_20260101120500.mp4"
    make_clip(other, seconds=1)
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        pool, ledger = env.db.pool, env.ledger
        got = [await env.acq.acquire_path(d, p) for p in (clip, other)]
        assert all(isinstance(r, Receipt) for r in got)
        eid, gone = (str(r.evidence_id) for r in got if isinstance(r, Receipt))
        tags = await verify_all(pool)
        assert tags[eid] == got[0].ledger_index  # initially: the acquired entry
        media = MediaJobs(ledger, env.store, MediaConfig(), tmp_path / "scratch")
        (tmp_path / "scratch").mkdir()
        runner = JobRunner(pool, media.handlers(), worker="t", concurrency=1, lease=60)
        await drain(runner)
        tags = await verify_all(pool)
        renditions = await evrows.renditions_of(pool, TEST_MAC, uuid.UUID(eid))
        assert sorted(r.kind for r in renditions) == ["fingerprint", "poster", "proxy"]
        assert all(tags[str(r.id)] == r.ledger_idx for r in renditions)  # their derived entry

        await cases.create(pool, ledger, ADMIN, "K1", "t", Label(Level.INTERNAL))
        await cases.link(pool, ledger, ADMIN, "K1", eid)
        secret = Label(Level.SECRET)
        await cases.set_label(pool, ledger, ADMIN, "evidence", eid, secret)
        labelled = await last_entry(pool, "labelled")
        tags = await verify_all(pool)
        assert tags[eid] == labelled  # re-tagged with the labelled entry
        assert all(tags[str(r.id)] == labelled for r in renditions)  # raised with it
        row = await evrows.load_evidence(pool, TEST_MAC, eid)
        assert row is not None and row.label_level == Level.SECRET
        for r in renditions:
            stored = await evrows.load_rendition(pool, TEST_MAC, r.id)
            assert stored is not None and stored.label_level == Level.SECRET
        proxy = next(r for r in renditions if r.kind == "proxy")
        await cases.set_label(
            pool, ledger, ADMIN, "rendition", str(proxy.id), Label(Level.TOP_SECRET)
        )
        assert (await verify_all(pool))[str(proxy.id)] == await last_entry(pool, "labelled")

        await disposition.set_category(pool, ledger, ADMIN, eid, "important")
        assert (await verify_all(pool))[eid] == await last_entry(pool, "retention")

        removed: list[str] = []
        later = datetime.now(UTC) + timedelta(days=400)
        result = await disposition.run(
            pool, ledger, ADMIN, RetentionPolicy(), removed.append, later
        )
        assert result.disposed == [gone]
        tags = await verify_all(pool)
        assert tags[gone] == await last_entry(pool, "disposed")
        assert (await evrows.load_evidence(pool, TEST_MAC, gone)).disposed_at is not None  # type: ignore[union-attr]


@pytest.mark.parametrize("role", ["evault_app", "superuser"])
async def test_attack_edited_rendition_row_serves_nothing(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    d = dock(tmp_path)
    clip = d.path / "DEV01_OFF123_20260101120000.mp4"
    make_clip(clip, seconds=1)
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        pool, ledger = env.db.pool, env.ledger
        receipt = await env.acq.acquire_path(d, clip)
        assert isinstance(receipt, Receipt)
        eid = str(receipt.evidence_id)
        media = MediaJobs(ledger, env.store, MediaConfig(), tmp_path / "scratch")
        (tmp_path / "scratch").mkdir()
        await drain(JobRunner(pool, media.handlers(), worker="t", concurrency=1, lease=60))
        await cases.create(pool, ledger, ADMIN, "K1", "t", Label(Level.INTERNAL))
        await cases.link(pool, ledger, ADMIN, "K1", eid)
        rends = {r.kind: r for r in await evrows.renditions_of(pool, TEST_MAC, uuid.UUID(eid))}
        poster, proxy = rends["poster"], rends["proxy"]
        row, _ = await serving.rendition_bytes(pool, ledger, LEGAL, Action.STREAM, str(proxy.id))
        assert row.sha256 == proxy.sha256

        conn = await asyncpg.connect(pg_dsn)
        try:
            if role == "evault_app":
                await conn.execute("SET ROLE evault_app")
            else:
                await conn.execute("ALTER TABLE renditions DISABLE TRIGGER ALL")
            await conn.execute(  # point the proxy at the poster's bytes
                "UPDATE renditions SET sha256 = $2 WHERE id = $1", proxy.id, poster.sha256
            )
            before = await pool.fetchval(
                "SELECT count(*) FROM ledger_entries WHERE kind = 'denied'"
            )
            with pytest.raises(RowTampered):
                await serving.rendition_bytes(pool, ledger, LEGAL, Action.STREAM, str(proxy.id))
            denied = await pool.fetch(
                "SELECT data FROM ledger_entries WHERE kind = 'denied' ORDER BY idx"
            )
            assert len(denied) == before + 1
            assert json.loads(bytes(denied[-1]["data"]))["reason"] == TAMPERED_REASON
            listed = await evrows.renditions_of(pool, TEST_MAC, uuid.UUID(eid))
            assert proxy.id not in {r.id for r in listed}  # left out of listings too
            await conn.execute(
                "UPDATE renditions SET sha256 = $2 WHERE id = $1", proxy.id, proxy.sha256
            )
            await conn.execute(  # a rendition's label lowered below its source's
                "UPDATE renditions SET label_level = 0 WHERE id = $1", poster.id
            )
            with pytest.raises(RowTampered):
                await serving.rendition_bytes(pool, ledger, LEGAL, Action.STREAM, str(poster.id))
            with pytest.raises(RowTampered):  # a relabel never launders the edit
                await cases.set_label(pool, ledger, ADMIN, "evidence", eid, Label(Level.SECRET))
            await conn.execute(
                "UPDATE renditions SET label_level = $2 WHERE id = $1",
                poster.id,
                poster.label_level,
            )
            if role != "evault_app":
                await conn.execute("ALTER TABLE renditions ENABLE TRIGGER ALL")
        finally:
            await conn.close()
        await verify_all(pool)
        with pytest.raises(NotFound):  # unknown ids are still just unknown
            await serving.rendition_bytes(pool, ledger, LEGAL, Action.STREAM, str(uuid.uuid4()))
