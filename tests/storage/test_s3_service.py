"""The service on the S3 store (``store.backend = "s3"``), on a real single-node Ceph: a dock file
goes into the bucket with COMPLIANCE Object Lock before it is released; content is read back with
ranged GETs; classified footage reaches the bucket as ciphertext only; a version written over an
object through the S3 API is never served and scrub flags it; a link extends the lock; a retention
run disposes of nothing still locked; backup and restore keep the objects in the bucket."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.acquire import Receipt
from tests.crypto.crypto_fixtures import MARK, Env, admin, dock, open_env, plaintext
from tests.storage.ceph_fixture import CephCluster
from tests.storage.test_blob_contract import creds, new_bucket, s3_config
from vault.cases import links as cases
from vault.config import StoreConfig
from vault.errors import ConfigError
from vault.ops import objectlock
from vault.ops.scrub import run_scrub
from vault.ops.scrubmodel import ScrubConfig
from vault.policy.labels import Label, Level
from vault.storage.content import ContentStore
from vault.storage.keystore_db import key_for
from vault.storage.s3blobs import S3Blobs
from vault.storage.s3client import open_client
from vault.storage.s3store import key_of, sealed_key_of
from vault.storage.storage import file_of, open_objects

NAME = "DEV01_OFF123_2026010112{:02d}00.mp4"
FAST = ScrubConfig(rate_mb_s=0.0)
HOLD_DAYS = 400


@pytest.fixture
def s3_env(ceph: CephCluster, monkeypatch: pytest.MonkeyPatch) -> StoreConfig:
    """A ``[store]`` on a new bucket of the Ceph fixture, credentials from the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ceph.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ceph.secret_key)
    s3 = s3_config(ceph, new_bucket(), create_bucket=True, retain_days=2, hold_days=HOLD_DAYS)
    return StoreConfig(backend="s3", s3=s3)


@pytest.fixture
async def raw(ceph: CephCluster) -> AsyncIterator[Any]:
    """A plain S3 client with the service's credentials: what an insider holding them can do."""
    async with open_client(s3_config(ceph, "unused"), creds(ceph)) as client:
        yield client


async def acquire(env: Env, data: bytes, i: int = 0, dock_id: str = "dock-01") -> Receipt:
    d = env.acq.docks[dock_id]
    path = d.path / NAME.format(i)
    path.write_bytes(data)
    got = await env.acq.acquire_path(d, path)
    assert isinstance(got, Receipt), got
    return got


async def read(content: ContentStore, sha: str, start: int = 0, end: int | None = None) -> bytes:
    """Read as the service does: the object opened on the loop, its bytes pulled in a thread."""
    obj = await content.open(sha)
    try:
        stop = obj.size if end is None else end
        return await asyncio.to_thread(lambda: b"".join(obj.read_range(start, stop)))
    finally:
        obj.close()


def local_objects(tmp: Path) -> list[Path]:
    """Object files under the local store root (none may exist on the S3 backend)."""
    root = tmp / "vault"
    return [p for t in ("objects", "sealed") for p in (root / t).rglob("*") if p.is_file()]


async def test_dock_file_goes_into_the_bucket_locked_before_it_is_released(
    pg_dsn: str, tmp_path: Path, s3_env: StoreConfig, raw: Any
) -> None:
    d = dock(tmp_path, label="internal", release="delete")
    async with open_env(pg_dsn, tmp_path, [d], store=s3_env) as env:
        assert isinstance(env.storage.blobs, S3Blobs)
        data = os.urandom(12 * 1024 * 1024 + 5)  # a multipart upload (5 MiB parts)
        before = datetime.now(UTC)
        receipt = await acquire(env, data)
        sha = hashlib.sha256(data).hexdigest()
        assert receipt.sha256 == sha
        assert not (d.path / NAME.format(0)).exists(), "released (deleted) after the PUT"
        head = await raw.head_object(Bucket=s3_env.s3.bucket, Key=key_of(sha))
        assert head["ContentLength"] == len(data)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] >= before + timedelta(days=2, seconds=-5)
        assert local_objects(tmp_path) == [], "nothing is kept on the local disk"
        # the same content offered again is a re-offer: still one object version
        await acquire(env, data, 1)
        versions = await raw.list_object_versions(Bucket=s3_env.s3.bucket, Prefix=key_of(sha))
        assert len(versions["Versions"]) == 1
        rows = await env.rows("SELECT sha256 FROM evidence")
        assert [r["sha256"] for r in rows] == [sha]


async def test_content_range_reads_come_from_the_bucket(
    pg_dsn: str, tmp_path: Path, s3_env: StoreConfig
) -> None:
    d = dock(tmp_path, label="internal")
    async with open_env(pg_dsn, tmp_path, [d], store=s3_env) as env:
        data = os.urandom(3 * 1024 * 1024 + 17)
        sha = (await acquire(env, data)).sha256
        obj = await env.storage.content.open(sha)
        assert obj.size == len(data)
        assert not hasattr(obj, "fileno"), "streamed through read_range, not sendfile"
        for start, end in [(0, 1), (1000, 1_500_000), (len(data) - 9, len(data)), (5, 5)]:
            assert await read(env.storage.content, sha, start, end) == data[start:end]
        async with file_of(obj) as path:  # what a media job hands to ffmpeg
            assert path.read_bytes() == data
        # a reader that stops early (a client gone mid-stream) is closed on the loop
        chunks = obj.read_range(0, obj.size)
        assert await asyncio.to_thread(next, chunks)
        obj.close()


async def test_classified_footage_reaches_the_bucket_as_ciphertext_only(
    pg_dsn: str, tmp_path: Path, s3_env: StoreConfig, raw: Any
) -> None:
    d = dock(tmp_path, label="secret")
    async with open_env(pg_dsn, tmp_path, [d], store=s3_env) as env:
        data = plaintext(2 * 1024 * 1024 + 300)
        sha = (await acquire(env, data)).sha256
        key = await key_for(env.db.pool, sha)
        assert key is not None, "sealed on arrival"
        bucket = s3_env.s3.bucket
        listed = await raw.list_object_versions(Bucket=bucket)
        assert [v["Key"] for v in listed["Versions"]] == [sealed_key_of(sha, key.object_id)]
        got = await raw.get_object(Bucket=bucket, Key=sealed_key_of(sha, key.object_id))
        stored = await got["Body"].read()
        assert MARK not in stored and data[:4096] not in stored
        assert local_objects(tmp_path) == []
        assert list((tmp_path / "vault" / "tmp").iterdir()) == [], "local ciphertext removed"
        assert await read(env.storage.content, sha) == data
        assert await read(env.storage.content, sha, 4000, 70_000) == data[4000:70_000]


async def test_attack_new_version_over_an_object_is_never_served_and_scrub_flags_it(
    pg_dsn: str, tmp_path: Path, s3_env: StoreConfig, raw: Any
) -> None:
    d = dock(tmp_path, label="internal")
    async with open_env(pg_dsn, tmp_path, [d], store=s3_env) as env:
        data, other = os.urandom(70_000), os.urandom(70_000)
        sha = (await acquire(env, data)).sha256
        clean = await run_scrub(env.ledger, env.storage.content, FAST, mode="full")
        assert clean.failed_objects == 0 and clean.objects_ok == 1
        # an insider with the credentials PUTs other bytes over the key: a new version
        await raw.put_object(Bucket=s3_env.s3.bucket, Key=key_of(sha), Body=other)
        assert await read(env.storage.content, sha) == data
        report = await run_scrub(env.ledger, env.storage.content, FAST, mode="full")
        assert report.failed_objects == 1
        row = await env.db.pool.fetchrow("SELECT integrity FROM evidence")
        assert row is not None and row["integrity"] == "mismatch"


async def test_link_extends_the_lock_and_disposal_waits_for_it(
    pg_dsn: str, tmp_path: Path, s3_env: StoreConfig, raw: Any
) -> None:
    d = dock(tmp_path, label="internal")
    async with open_env(pg_dsn, tmp_path, [d], store=s3_env) as env:
        data = os.urandom(10_000)
        receipt = await acquire(env, data)
        bucket, key = s3_env.s3.bucket, key_of(receipt.sha256)
        first = (await raw.head_object(Bucket=bucket, Key=key))["ObjectLockRetainUntilDate"]
        boss = await admin(env)
        await cases.create(env.db.pool, env.ledger, boss, "C1", "case", Label(Level.INTERNAL))
        await cases.link(env.db.pool, env.ledger, boss, "C1", receipt.evidence_id)
        covered = await objectlock.extend_item(
            env.storage.blobs, env.db.pool, env.ledger.mac, receipt.evidence_id
        )
        assert covered == 1
        after = (await raw.head_object(Bucket=bucket, Key=key))["ObjectLockRetainUntilDate"]
        assert after > first
        assert after >= datetime.now(UTC) + timedelta(days=HOLD_DAYS - 1)
        # an unlinked, expired item: its `disposed` entry is written, the removal waits
        await cases.unlink(env.db.pool, env.ledger, boss, "C1", receipt.evidence_id)
        from vault.ops import disposition
        from vault.ops.retention import RetentionPolicy

        later = datetime.now(UTC) + timedelta(days=200)
        result = await disposition.run(
            env.db.pool, env.ledger, boss, RetentionPolicy(ordinary_days=1),
            env.storage.blobs.remove, now=later,
        )  # fmt: skip
        assert result.pending == [receipt.evidence_id] and result.disposed == []
        assert len(await env.entries("disposed")) == 1
        head = await raw.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] == len(data), "still locked: still there"


async def test_bucket_without_object_lock_stops_the_start(
    ceph: CephCluster, tmp_path: Path, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ceph.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ceph.secret_key)
    bucket = new_bucket()
    await raw.create_bucket(Bucket=bucket)
    from tests.crypto.crypto_fixtures import Cfg

    cfg = Cfg(tmp_path, store=StoreConfig(backend="s3", s3=s3_config(ceph, bucket)))
    with pytest.raises(ConfigError, match="has no Object Lock"):
        async with open_objects(cfg):
            pass


async def test_concurrent_acquisitions_do_not_starve_the_worker_threads(
    pg_dsn: str, tmp_path: Path, s3_env: StoreConfig
) -> None:
    """Acquisitions wait for the S3 store in worker threads; the store's own blocking work must
    not queue behind them (with two worker threads and six files, it would wait for ever)."""
    from concurrent.futures import ThreadPoolExecutor

    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2))
    d = dock(tmp_path, label="internal")
    async with open_env(pg_dsn, tmp_path, [d], store=s3_env) as env:
        paths = []
        for i in range(6):
            paths.append(d.path / NAME.format(i))
            paths[-1].write_bytes(os.urandom(100_000 + i))
        got = await asyncio.wait_for(
            asyncio.gather(*(env.acq.acquire_path(d, p) for p in paths)), timeout=120
        )
        assert all(isinstance(r, Receipt) for r in got), got
        assert len(await env.rows("SELECT id FROM evidence")) == 6


async def test_disposal_deletes_the_versions_once_the_lock_expired_after_the_entry(
    pg_dsn: str, tmp_path: Path, s3_env: StoreConfig, raw: Any
) -> None:
    """Order: the `disposed` entry first; the removal is refused while the lock holds (the item
    stays pending, one entry); a later run deletes every version and finishes it."""
    from msgspec.structs import replace

    from vault.ops import disposition
    from vault.ops.retention import RetentionPolicy

    bucket = new_bucket()  # Object Lock without a default retention: the write's date rules
    await raw.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = replace(s3_env, s3=replace(s3_env.s3, bucket=bucket, create_bucket=False))
    d = dock(tmp_path, label="internal")
    async with open_env(pg_dsn, tmp_path, [d], store=store) as env:
        blobs = env.storage.blobs
        assert isinstance(blobs, S3Blobs)
        blobs.retain_for = timedelta(seconds=4)  # as if retain_days had passed
        receipt = await acquire(env, os.urandom(20_000))
        boss = await admin(env)
        policy, later = RetentionPolicy(ordinary_days=1), datetime.now(UTC) + timedelta(days=2)
        first = await disposition.run(env.db.pool, env.ledger, boss, policy, blobs.remove,
                                      now=later)  # fmt: skip
        assert first.pending == [receipt.evidence_id], "locked: the removal waits"
        assert (await raw.head_object(Bucket=bucket, Key=key_of(receipt.sha256)))["ContentLength"]
        await asyncio.sleep(6)
        second = await disposition.run(env.db.pool, env.ledger, boss, policy, blobs.remove,
                                       now=later)  # fmt: skip
        assert second.pending == []
        listed = await raw.list_object_versions(Bucket=bucket)
        assert listed.get("Versions", []) == [] and listed.get("DeleteMarkers", []) == []
        assert len(await env.entries("disposed")) == 1
        row = await env.db.pool.fetchrow("SELECT disposed_at FROM evidence")
        assert row is not None and row["disposed_at"] is not None


async def test_case_export_reads_plain_and_sealed_objects_from_the_bucket(
    pg_dsn: str, tmp_path: Path, s3_env: StoreConfig
) -> None:
    from tests.crypto.crypto_fixtures import legal_reviewer
    from vault.review.export import export_case
    from verify.package_checks import verify_package

    plain_dock, secret_dock = dock(tmp_path, "dock-01", "internal"), dock(tmp_path, "dock-02")
    async with open_env(pg_dsn, tmp_path, [plain_dock, secret_dock], store=s3_env) as env:
        plain, secret = os.urandom(300_000), plaintext(200_000)
        got = [await acquire(env, plain, 0), await acquire(env, secret, 1, "dock-02")]
        assert await key_for(env.db.pool, got[1].sha256) is not None, "sealed"
        boss = await admin(env)
        await cases.create(env.db.pool, env.ledger, boss, "C1", "case", Label(Level.SECRET))
        for r in got:
            await cases.link(env.db.pool, env.ledger, boss, "C1", r.evidence_id)
        reviewer = await legal_reviewer(env, boss, "C1")
        pkg = tmp_path / "pkg"
        result = await export_case(env.ledger, env.storage.content, reviewer, "C1", pkg)
        assert result.files == 2
        report = verify_package(pkg, env.ledger.verifier)
        assert report.verdict == "ok", [f.message for f in report.findings]
        for r, data in zip(got, [plain, secret], strict=True):
            assert next((pkg / "files").glob(f"{r.sha256}.*")).read_bytes() == data


async def test_label_raise_seals_into_the_bucket_and_keeps_the_locked_plain_version(
    pg_dsn: str, tmp_path: Path, s3_env: StoreConfig, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Re-encryption on S3: the sealed copy is written and reads switch to it; the plain
    version cannot be deleted before its lock expires (WORM): it is kept, named in a warning,
    and the job finishes instead of failing for ever."""
    from tests.crypto.crypto_fixtures import TEST_MAC, drain
    from vault.storage.reseal import Resealer

    d = dock(tmp_path, label="internal")
    async with open_env(pg_dsn, tmp_path, [d], store=s3_env) as env:
        data = plaintext(300_000)
        r = await acquire(env, data)
        boss = await admin(env)
        await cases.create(env.db.pool, env.ledger, boss, "CS", "case", Label(Level.SECRET))
        await cases.link(env.db.pool, env.ledger, boss, "CS", r.evidence_id)  # queues sealing
        assert await drain(env, Resealer(env.storage, env.db.pool, mac=TEST_MAC).handlers()) == 1
        key = await key_for(env.db.pool, r.sha256)
        assert key is not None, "sealed"
        bucket = s3_env.s3.bucket
        got = await raw.get_object(Bucket=bucket, Key=sealed_key_of(r.sha256, key.object_id))
        assert MARK not in await got["Body"].read()
        assert await read(env.storage.content, r.sha256) == data
        assert (await raw.head_object(Bucket=bucket, Key=key_of(r.sha256)))["ContentLength"]
        assert "kept until its Object Lock expires" in caplog.text
