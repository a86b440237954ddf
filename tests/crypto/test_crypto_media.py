"""Media jobs on sealed evidence make sealed renditions (ffmpeg works on /dev/shm); a raised label
seals existing renditions too; an export of sealed evidence is plaintext and verifies offline."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ingest.acquire import Receipt
from ingest.config import MediaConfig
from ingest.mediajobs import MediaJobs
from tests.crypto.crypto_fixtures import (
    TEST_MAC,
    Env,
    admin,
    dock,
    drain,
    legal_reviewer,
    open_env,
    read_all,
    store_holds,
)
from vault.cases import links as cases
from vault.policy.labels import Label
from vault.review.export import export_case
from vault.storage.reseal import Resealer
from verify.package_checks import verify_package

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
NAME = "DEV02_OFF456_20260102090000.mp4"
SHM = Path("/dev/shm")


def make_clip(path: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-shortest", str(path)],
        check=True,
    )  # fmt: skip


async def run_jobs(env: Env) -> None:
    scratch = env.tmp / "scratch"
    scratch.mkdir(exist_ok=True)
    storage = env.storage
    media = MediaJobs(env.ledger, storage.blobs, MediaConfig(), scratch, storage=storage)
    await drain(
        env, {**media.handlers(), **Resealer(storage, env.db.pool, mac=TEST_MAC).handlers()}
    )
    assert not any(scratch.iterdir()), "nothing of a job is left in the vault's scratch"


async def assert_all_sealed(env: Env, evidence_id: str, original: bytes) -> list[str]:
    """Every object of the evidence is sealed, none plain; returns the rendition hashes."""
    content, blobs = env.storage.content, env.storage.blobs
    rows = await env.rows(
        "SELECT kind, sha256 FROM renditions WHERE evidence_id = $1::uuid", evidence_id
    )
    assert sorted(r["kind"] for r in rows) == ["fingerprint", "poster", "proxy"]
    digests = [hashlib.sha256(original).hexdigest(), *(r["sha256"] for r in rows)]
    for digest in digests:
        assert await content.is_sealed(digest), digest
        assert not blobs.exists(digest)
        data = await read_all(await content.open(digest))
        assert hashlib.sha256(data).hexdigest() == digest
        run = data[len(data) // 2 : len(data) // 2 + 64]
        assert store_holds(blobs.root, run) == [], "plaintext in the blob store"
    return digests[1:]


async def test_sealed_evidence_gets_sealed_renditions_and_exports_plaintext(
    pg_dsn: str, tmp_path: Path
) -> None:
    d = dock(tmp_path, label="secret")
    make_clip(d.path / NAME)
    original = (d.path / NAME).read_bytes()
    async with open_env(pg_dsn, tmp_path, [d]) as env:
        receipt = await env.acq.acquire_path(d, d.path / NAME)
        assert isinstance(receipt, Receipt)
        scratch = env.storage.content.scratch
        bases: list[Path] = []
        choose = scratch.base_for
        scratch.base_for = lambda size: bases.append(choose(size)) or bases[-1]  # type: ignore[method-assign]
        made: list[Path] = []
        folder = scratch.folder

        @contextmanager
        def recording_folder(size: int) -> Iterator[Path]:
            with folder(size) as path:
                made.append(path)
                yield path

        scratch.folder = recording_folder  # type: ignore[method-assign]
        await run_jobs(env)
        # the decrypted original and the renditions' work folder (one decode makes them all)
        assert len(bases) == 2, "the decrypted original and the renditions' work folder"
        assert all(b == SHM for b in bases) or not SHM.is_dir()
        [status] = await env.rows("SELECT media_status FROM evidence")
        assert status["media_status"] == "ready"
        await assert_all_sealed(env, receipt.evidence_id, original)
        # Decrypted copies are removed: every private folder this test's scratch made is gone
        # (/dev/shm itself is shared with whatever else runs on the machine).
        assert made and not [p for p in made if p.exists()], "decrypted copies are removed"
        boss = await admin(env)
        db, ledger = env.db.pool, env.ledger
        await cases.create(db, ledger, boss, "CASE-S", "sealed case", Label.parse("secret"))
        await cases.link(db, ledger, boss, "CASE-S", receipt.evidence_id)
        reviewer = await legal_reviewer(env, boss, "CASE-S")
        pkg = tmp_path / "pkg"
        result = await export_case(
            ledger, env.storage.content, reviewer, "CASE-S", pkg, renditions=["proxy", "poster"]
        )
        assert result.files == 3
        report = verify_package(pkg, ledger.verifier)
        assert report.verdict == "ok", [f.message for f in report.findings]
        exported = next((pkg / "files").glob(f"{receipt.sha256}.*")).read_bytes()
        assert exported == original, "a package holds plaintext (for a court)"


async def test_label_raise_seals_the_original_and_its_renditions(
    pg_dsn: str, tmp_path: Path
) -> None:
    d = dock(tmp_path, label="internal")
    make_clip(d.path / NAME)
    original = (d.path / NAME).read_bytes()
    async with open_env(pg_dsn, tmp_path, [d]) as env:
        receipt = await env.acq.acquire_path(d, d.path / NAME)
        assert isinstance(receipt, Receipt)
        await run_jobs(env)
        plain = await env.rows("SELECT sha256 FROM renditions")
        assert plain and all(env.storage.blobs.exists(r["sha256"]) for r in plain)
        boss = await admin(env)
        await cases.set_label(
            env.db.pool, env.ledger, boss, "evidence", receipt.evidence_id, Label.parse("secret")
        )
        await run_jobs(env)
        await assert_all_sealed(env, receipt.evidence_id, original)
