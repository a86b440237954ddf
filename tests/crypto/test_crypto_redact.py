"""A redacted copy of sealed footage: decrypted only on the plaintext scratch, stored sealed,
and exported alone (no original) in a package that verifies offline."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from ingest.acquire import Receipt
from ingest.config import MediaConfig
from ingest.mediajobs import MediaJobs
from ingest.redactjobs import REDACT, RedactJobs
from tests.crypto.crypto_fixtures import (
    TEST_MAC,
    admin,
    dock,
    drain,
    legal_reviewer,
    open_env,
    read_all,
    store_holds,
)
from tests.crypto.test_crypto_media import NAME, make_clip
from vault.cases import links as cases
from vault.jobs import enqueue
from vault.policy.labels import Label
from vault.review.export import export_case
from vault.storage.reseal import Resealer
from verify.package_checks import verify_package

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")

SPEC = {
    "version": 1,
    "effect": "solid",
    "boxes": [{"keyframes": [{"t_ms": 0, "x": 10, "y": 10, "w": 64, "h": 48},
                             {"t_ms": 1500, "x": 200, "y": 150, "w": 64, "h": 48}]}],
    "mute_ranges": [{"start_ms": 500, "end_ms": 1000}],
}  # fmt: skip


async def test_sealed_footage_gets_a_sealed_redacted_copy_exported_alone(
    pg_dsn: str, tmp_path: Path
) -> None:
    d = dock(tmp_path, label="secret")
    make_clip(d.path / NAME)
    original = (d.path / NAME).read_bytes()
    async with open_env(pg_dsn, tmp_path, [d]) as env:
        receipt = await env.acq.acquire_path(d, d.path / NAME)
        assert isinstance(receipt, Receipt)
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        storage = env.storage
        args = (env.ledger, storage.blobs, MediaConfig(), scratch)
        handlers = {
            **MediaJobs(*args, storage=storage).handlers(),
            **RedactJobs(*args, storage=storage).handlers(),
            **Resealer(storage, env.db.pool, mac=TEST_MAC).handlers(),
        }
        await drain(env, handlers)
        payload = {"evidence_id": receipt.evidence_id, "spec": SPEC, "requested_by": "t"}
        await enqueue(env.db.pool, REDACT, payload)
        await drain(env, handlers)
        assert not any(scratch.iterdir()), "nothing of a job is left in the vault's scratch"
        [row] = await env.rows(
            "SELECT sha256 FROM renditions WHERE kind = 'redacted' AND evidence_id = $1::uuid",
            receipt.evidence_id,
        )
        copy = row["sha256"]
        assert await storage.content.is_sealed(copy) and not storage.blobs.exists(copy)
        data = await read_all(await storage.content.open(copy))
        assert hashlib.sha256(data).hexdigest() == copy
        assert store_holds(storage.blobs.root, data[len(data) // 2 : len(data) // 2 + 64]) == []
        boss = await admin(env)
        db, ledger = env.db.pool, env.ledger
        await cases.create(db, ledger, boss, "CASE-R", "redacted case", Label.parse("secret"))
        await cases.link(db, ledger, boss, "CASE-R", receipt.evidence_id)
        reviewer = await legal_reviewer(env, boss, "CASE-R")
        pkg = tmp_path / "pkg"
        await export_case(ledger, storage.content, reviewer, "CASE-R", pkg,
                          renditions=["redacted"], originals=False)  # fmt: skip
        report = verify_package(pkg, ledger.verifier)
        assert report.verdict == "ok", [f.message for f in report.findings]
        assert [f.code for f in report.findings] == ["original-not-included"]
        assert not list((pkg / "files").glob(f"{receipt.sha256}.*"))
        assert (pkg / "files" / f"{copy}.mp4").read_bytes() == data  # plaintext for the court
        assert hashlib.sha256(original).hexdigest() == receipt.sha256
