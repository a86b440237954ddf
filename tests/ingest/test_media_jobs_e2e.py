"""Acquisition → media jobs → renditions in the ledger → case export → offline verification."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.acquire import Receipt
from ingest.config import MediaConfig
from ingest.mediajobs import PROCESS, MediaJobs
from tests.ingest.acquire_fixtures import dock, open_acquirer
from vault.access import principals
from vault.cases import links as cases
from vault.errors import Forbidden
from vault.jobs import JobRunner
from vault.policy.decide import Role
from vault.policy.labels import Level
from vault.review.export import export_case
from vault.statecheck import fsck_state
from vault.storage.content import PlainContentStore
from verify.package_checks import verify_package

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
CHILD = Path(__file__).with_name("media_worker_child.py")


def make_clip(path: Path, seconds: int = 2, size: str = "320x240") -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-shortest", str(path)],
        check=True,
    )  # fmt: skip


async def drain(runner: JobRunner, limit: int = 50) -> None:
    for _ in range(limit):
        if not await runner.run_once():
            return


async def test_acquired_media_gets_renditions_recorded_once(pg_dsn: str, tmp_path: Path) -> None:
    d = dock(tmp_path)
    good = d.path / "DEV01_OFF123_20260101120000.mp4"
    make_clip(good)
    bad = d.path / "DEV01_OFF123_20260101120500.mp4"
    bad.write_bytes(os.urandom(4096))
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        for p in (good, bad):
            assert isinstance(await env.acq.acquire_path(d, p), Receipt)
        queued = await env.rows("SELECT payload FROM jobs WHERE kind = $1", PROCESS)
        assert len(queued) == 2, "every acquisition queues its media job in the same transaction"
        media = MediaJobs(env.ledger, env.store, MediaConfig(), tmp_path / "scratch")
        (tmp_path / "scratch").mkdir()
        runner = JobRunner(env.db.pool, media.handlers(), worker="t", concurrency=1, lease=60)
        await drain(runner)
        rows = {
            r["file_name"]: r
            for r in await env.rows(
                "SELECT id, file_name, media_status, media_reason FROM evidence"
            )
        }
        ok, broken = rows[good.name], rows[bad.name]
        assert ok["media_status"] == "ready"
        assert broken["media_status"] == "unprocessable" and broken["media_reason"]
        rend = await env.rows(
            "SELECT kind, sha256, ledger_idx FROM renditions WHERE evidence_id = $1", ok["id"]
        )
        assert sorted(r["kind"] for r in rend) == ["fingerprint", "poster", "proxy"]
        for r in rend:
            entry = json.loads(await env.ledger.entry(r["ledger_idx"]))
            assert entry["kind"] == "derived" and entry["rendition"] == r["kind"]
            assert entry["output_sha256"] == r["sha256"] and env.store.verify(r["sha256"])
            assert entry["ffmpeg"] and "{input}" in entry["args"]
        # The original of the broken file is still held, byte for byte.
        assert env.store.verify(
            (await env.rows("SELECT sha256 FROM evidence WHERE id = $1", broken["id"]))[0]["sha256"]
        )
        events = [
            (r["type"], json.loads(r["payload"]))
            for r in await env.rows("SELECT type, payload FROM event_outbox ORDER BY id")
        ]
        assert [t for t, _ in events].count("evidence.acquired") == 2
        assert [p["evidence_id"] for t, p in events if t == "media.ready"] == [str(ok["id"])]
        # Running the job again records nothing twice.
        await env.db.pool.execute("UPDATE jobs SET status = 'queued', run_after = now()")
        await drain(runner)
        assert len(await env.rows("SELECT 1 FROM renditions")) == 3
        assert len(await env.entries("derived")) == 3
        # The rows media jobs wrote are the ones their entries imply (label included).
        assert all(e["label"] == "internal" for e in await env.entries("derived"))
        async with env.db.pool.acquire() as conn:
            state = await fsck_state(conn)
        assert state.findings == [] and state.rows["renditions"] == 3 and not state.unchecked


async def test_worker_killed_mid_job_is_taken_over_without_duplicates(
    pg_dsn: str, tmp_path: Path
) -> None:
    d = dock(tmp_path)
    src = d.path / "DEV01_OFF123_20260101130000.mp4"
    make_clip(src, seconds=12, size="1280x720")
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        await env.acq.acquire_path(d, src)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            pg_dsn,
            str(tmp_path / "vault"),
            str(tmp_path / "scratch-child"),
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        assert (await asyncio.wait_for(child.stdout.readline(), 60)).strip() == b"claimed"
        await asyncio.sleep(1.0)  # in the middle of a rendition
        child.send_signal(signal.SIGKILL)
        await child.wait()
        job = (await env.rows("SELECT status, attempts FROM jobs"))[0]
        assert job["status"] == "running" and job["attempts"] == 1
        media = MediaJobs(env.ledger, env.store, MediaConfig(), tmp_path / "scratch")
        (tmp_path / "scratch").mkdir()
        runner = JobRunner(env.db.pool, media.handlers(), worker="rescuer", concurrency=1, lease=60)
        for _ in range(40):  # the child's 2 s lease must expire first
            if await runner.run_once():
                break
            await asyncio.sleep(0.25)
        job = (await env.rows("SELECT status, attempts FROM jobs"))[0]
        assert job["status"] == "done" and job["attempts"] == 2
        kinds = [r["kind"] for r in await env.rows("SELECT kind FROM renditions")]
        assert sorted(kinds) == ["fingerprint", "poster", "proxy"]
        assert sorted(e["rendition"] for e in await env.entries("derived")) == sorted(kinds)


async def test_case_export_verifies_offline_and_tampering_is_found(
    pg_dsn: str, tmp_path: Path
) -> None:
    d = dock(tmp_path)
    src = d.path / "DEV02_OFF456_20260102090000.mp4"
    make_clip(src)
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        receipt = await env.acq.acquire_path(d, src)
        assert isinstance(receipt, Receipt)
        (tmp_path / "scratch").mkdir()
        media = MediaJobs(env.ledger, env.store, MediaConfig(), tmp_path / "scratch")
        await drain(JobRunner(env.db.pool, media.handlers(), worker="t", concurrency=1, lease=60))
        await principals.seed(env.db.pool, env.ledger, [_Admin()])
        admin = await principals.load(env.db.pool, "admin")
        await cases.create(
            env.db.pool, env.ledger, admin, "CASE-2026-001", "某某违法案", _label("internal")
        )
        await cases.link(env.db.pool, env.ledger, admin, "CASE-2026-001", receipt.evidence_id)
        content = PlainContentStore(env.store)
        # An administrator may not export content; a legal reviewer assigned to the case may.
        with pytest.raises(Forbidden):
            await export_case(env.ledger, content, admin, "CASE-2026-001", tmp_path / "no")
        spec = principals.PrincipalSpec("lr-wang", frozenset({Role.LEGAL_REVIEWER}), Level.SECRET)
        await principals.add(env.db.pool, env.ledger, admin, spec)
        await principals.assign(env.db.pool, env.ledger, admin, "lr-wang", "CASE-2026-001")
        reviewer = await principals.load(env.db.pool, "lr-wang")
        pkg = tmp_path / "pkg"
        result = await export_case(
            env.ledger, content, reviewer, "CASE-2026-001", pkg, renditions=["proxy"]
        )
        assert result.files == 2
        report = verify_package(pkg, env.ledger.verifier)
        assert report.verdict == "ok", [f.message for f in report.findings]
        html = (pkg / "report.html").read_text()
        assert "DEV02" in html and "OFF456" in html and "evault-verify" in html
        zipped = await export_case(
            env.ledger, content, reviewer, "CASE-2026-001", tmp_path / "pkg.zip", as_zip=True
        )
        assert verify_package(zipped.path, env.ledger.verifier).verdict == "ok"
        exported = await env.entries("exported")
        assert [e["manifest_sha256"] for e in exported] == [
            result.manifest_sha256,
            zipped.manifest_sha256,
        ]
        original = next((pkg / "files").glob(f"{receipt.sha256}.*"))
        data = bytearray(original.read_bytes())
        data[len(data) // 2] ^= 1
        original.write_bytes(bytes(data))
        tampered = verify_package(pkg, env.ledger.verifier)
        assert tampered.verdict == "tampered"
        assert any(
            receipt.sha256 in f.where or receipt.sha256 in f.message for f in tampered.findings
        )


class _Admin:
    id = "admin"
    roles = ("admin", "legal_reviewer", "auditor")
    clearance = "top_secret"
    caveats = ("commercial_secret", "personal_privacy")


def _label(text: str):  # type: ignore[no-untyped-def]
    from vault.policy.labels import Label

    return Label.parse(text)
