"""The blob store contract (``vault.storage.blobcontract``) on both backends: the file store, and the S3
store on a real single-node Ceph (``ceph_fixture``); then what only Object Lock gives: a locked
version cannot be deleted nor its retention shortened through the S3 API, by anyone holding the
credentials, and a changed object (a new version, a delete marker) is caught by ``verify``."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.storage.ceph_fixture import CephCluster
from vault.config import S3StoreConfig
from vault.errors import BadRequest, ConfigError, Conflict, IntegrityError, NotFound, TooLarge
from vault.storage.blobcontract import Blobs, FileBlobs
from vault.storage.blobstore import BlobStore
from vault.storage.s3client import S3Credentials, error_code, load_credentials, open_client
from vault.storage.s3store import S3BlobStore, key_of
from vault.storage.s3upload import send_object

PART = 5 * 1024 * 1024  # the smallest part S3 allows: multipart tests stay small


def s3_config(ceph: CephCluster, bucket: str, **kw: Any) -> S3StoreConfig:
    return S3StoreConfig(
        endpoint=ceph.endpoint,
        bucket=bucket,
        region=ceph.region,
        path_style=True,
        part_size=PART,
        **kw,
    )


def creds(ceph: CephCluster) -> S3Credentials:
    return S3Credentials(ceph.access_key, ceph.secret_key, "test")


def new_bucket() -> str:
    return "evault-t-" + secrets.token_hex(6)


@pytest.fixture
async def s3(ceph: CephCluster, tmp_path: Path) -> AsyncIterator[S3BlobStore]:
    """An S3 store on a bucket of its own (created with Object Lock by the store)."""
    cfg = s3_config(ceph, new_bucket(), create_bucket=True)
    async with S3BlobStore.open(cfg, credentials=creds(ceph), spool_dir=tmp_path) as store:
        yield store


@pytest.fixture
async def raw(ceph: CephCluster) -> AsyncIterator[Any]:
    """A plain S3 client with the same credentials: what an insider holding them can do."""
    async with open_client(s3_config(ceph, "unused"), creds(ceph)) as client:
        yield client


@pytest.fixture(params=["file", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Blobs:
    """Each backend in turn (the S3 one skips where Ceph is not installed)."""
    if request.param == "file":
        return FileBlobs(BlobStore(tmp_path / "vault"))
    store: S3BlobStore = request.getfixturevalue("s3")
    return store


def until(days: float = 1) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def source(tmp_path: Path, data: bytes) -> Iterator[int]:
    path = tmp_path / ("src-" + secrets.token_hex(4))
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


async def put(blobs: Blobs, tmp_path: Path, data: bytes, days: float = 1) -> Any:
    for fd in source(tmp_path, data):
        return await blobs.put_file(fd, retain_until=until(days))
    raise AssertionError("unreachable")


async def read_all(blobs: Blobs, sha256: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([c async for c in blobs.read(sha256, start, end)])


async def chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


# -- the contract, on both backends -----------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1000, 2 * PART + 12345])
async def test_written_object_reads_back_by_its_hash(
    blobs: Blobs, tmp_path: Path, size: int
) -> None:
    data = secrets.token_bytes(size)
    h = hashlib.sha256(data).hexdigest()
    assert not await blobs.exists(h)
    stored = await put(blobs, tmp_path, data)
    assert (stored.sha256, stored.size, stored.existed) == (h, size, False)
    assert await blobs.exists(h)
    assert await read_all(blobs, h) == data
    assert await blobs.verify(h)


async def test_range_reads_return_exactly_the_range(blobs: Blobs, tmp_path: Path) -> None:
    data = secrets.token_bytes(PART + 4096)
    h = (await put(blobs, tmp_path, data)).sha256
    size = len(data)
    for start, end in [(0, 1), (10, 20), (PART - 5, PART + 5), (PART, None), (7, size)]:
        assert await read_all(blobs, h, start, end) == data[start:end]
    assert await read_all(blobs, h, size - 3, size + 100) == data[-3:]  # clamped, as in HTTP


async def test_writing_stored_content_again_is_a_noop(blobs: Blobs, tmp_path: Path) -> None:
    data = secrets.token_bytes(3000)
    first = await put(blobs, tmp_path, data)
    again = await put(blobs, tmp_path, data)
    assert again.existed and again.sha256 == first.sha256 and again.size == 3000
    streamed = await blobs.put_stream(
        chunks(data, 700), retain_until=until(), expected_sha256=first.sha256, max_bytes=None
    )
    assert streamed.existed
    if isinstance(blobs, S3BlobStore):  # one version under the key, not three
        assert (await blobs.stat(first.sha256)).version_id == first.version_id
        versions, markers = await blobs._versions(key_of(first.sha256))
        assert len(versions) == 1 and not markers


async def test_streamed_upload_is_stored_under_its_hash(blobs: Blobs) -> None:
    data = secrets.token_bytes(2 * PART + 1)
    h = hashlib.sha256(data).hexdigest()
    for expected in (h, None):
        got = await blobs.put_stream(
            chunks(data), retain_until=until(), expected_sha256=expected, max_bytes=None
        )
        assert got.sha256 == h and got.size == len(data)
    assert await read_all(blobs, h) == data and await blobs.verify(h)


async def test_attack_upload_not_matching_its_hash_leaves_nothing(blobs: Blobs) -> None:
    data = secrets.token_bytes(2 * PART + 3)
    claimed = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(IntegrityError):
        await blobs.put_stream(
            chunks(data), retain_until=until(), expected_sha256=claimed, max_bytes=None
        )
    assert not await blobs.exists(claimed)
    assert not await blobs.exists(hashlib.sha256(data).hexdigest())


async def test_upload_over_the_limit_is_refused(blobs: Blobs) -> None:
    data = secrets.token_bytes(10_000)
    with pytest.raises(TooLarge):
        await blobs.put_stream(
            chunks(data, 1000), retain_until=until(), expected_sha256=None, max_bytes=5000
        )
    assert not await blobs.exists(hashlib.sha256(data).hexdigest())


async def test_missing_object_is_not_found(blobs: Blobs) -> None:
    h = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(NotFound):
        await blobs.verify(h)
    with pytest.raises(NotFound):
        await read_all(blobs, h)


# -- Object Lock, on Ceph -----------------------------------------------------------------------


async def test_every_written_version_is_locked_in_compliance_mode(
    s3: S3BlobStore, tmp_path: Path
) -> None:
    """Single PUT and multipart alike (Ceph 16 drops CreateMultipartUpload's lock headers: the
    store must lock the completed version itself: the bucket's default of 1 day is not it)."""
    for size in (100, 2 * PART + 1):
        stored = await put(s3, tmp_path, secrets.token_bytes(size), days=10)
        got = await s3.retention(stored.sha256)
        assert got is not None and got >= until(9.99)
        assert stored.retain_until == got


@pytest.mark.parametrize("days", [0.5, 1 + 30 / 86400])
async def test_multipart_version_covered_by_the_bucket_default_is_locked_as_asked(
    s3: S3BlobStore, tmp_path: Path, days: float
) -> None:
    """The bucket's COMPLIANCE default (1 day) locks a completed multipart version: a date it
    covers is confirmed by the HEAD without a lock request; a date just beyond it (within the
    margin where the store tries the HEAD first) is then locked after all."""
    assert s3.default_lock == timedelta(days=1)
    stored = await put(s3, tmp_path, secrets.token_bytes(2 * PART + 1), days=days)
    got = await s3.retention(stored.sha256)
    assert got is not None and got >= until(days) - timedelta(seconds=5)
    assert stored.retain_until == got


async def test_attack_delete_of_locked_version_is_refused(
    s3: S3BlobStore, raw: Any, tmp_path: Path
) -> None:
    for size in (100, 2 * PART + 1):
        data = secrets.token_bytes(size)
        stored = await put(s3, tmp_path, data)
        with pytest.raises(ClientError) as refused:
            await raw.delete_object(
                Bucket=s3.bucket, Key=key_of(stored.sha256), VersionId=stored.version_id
            )
        assert error_code(refused.value) == "AccessDenied"
        assert await read_all(s3, stored.sha256) == data


async def test_attack_shortening_retention_is_refused(
    s3: S3BlobStore, raw: Any, tmp_path: Path
) -> None:
    stored = await put(s3, tmp_path, b"keep me")
    before = await s3.retention(stored.sha256)
    assert before is not None
    with pytest.raises(ClientError) as refused:
        await raw.put_object_retention(
            Bucket=s3.bucket,
            Key=key_of(stored.sha256),
            VersionId=stored.version_id,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": before - timedelta(hours=1)},
        )
    assert error_code(refused.value) == "AccessDenied"
    # The store never asks for less, either: an earlier date changes nothing.
    assert await s3.extend_retention(stored.sha256, before - timedelta(hours=1)) == before
    assert await s3.retention(stored.sha256) == before


async def test_retention_is_extended_never_shortened(s3: S3BlobStore, tmp_path: Path) -> None:
    stored = await put(s3, tmp_path, b"linked to a case")
    later = until(30)
    got = await s3.extend_retention(stored.sha256, later)
    assert got >= later.replace(microsecond=0)
    # Writing the same content again with a later date extends it too.
    for fd in source(tmp_path, b"linked to a case"):
        again = await s3.put_file(fd, retain_until=until(60))
    assert again.existed and again.retain_until >= until(59)


async def test_attack_overwrite_is_detected_and_never_served(
    s3: S3BlobStore, raw: Any, tmp_path: Path
) -> None:
    data = b"original footage" * 100
    stored = await put(s3, tmp_path, data)
    key = key_of(stored.sha256)
    await raw.put_object(Bucket=s3.bucket, Key=key, Body=b"doctored footage")
    assert not await s3.verify(stored.sha256)
    assert await read_all(s3, stored.sha256) == data  # reads pin the original version
    fresh = S3BlobStore(raw, s3.bucket, part_size=PART, spool_dir=tmp_path)  # no cache
    assert await read_all(fresh, stored.sha256) == data
    again = await put(fresh, tmp_path, data)  # the original is intact: writing is a no-op
    assert again.existed and again.version_id == stored.version_id


async def test_attack_delete_marker_is_detected(s3: S3BlobStore, raw: Any, tmp_path: Path) -> None:
    data = b"evidence" * 10
    stored = await put(s3, tmp_path, data)
    await raw.delete_object(Bucket=s3.bucket, Key=key_of(stored.sha256))  # marker, no deletion
    assert not await s3.verify(stored.sha256)
    assert await read_all(s3, stored.sha256) == data


async def test_read_stopped_early_leaves_the_next_reads_right(
    s3: S3BlobStore, tmp_path: Path
) -> None:
    """A ranged read given up after its first chunk (a player gone) does not hand a connection
    with the rest of that answer to the next read."""
    data = secrets.token_bytes(2 * PART)
    h = (await put(s3, tmp_path, data)).sha256
    for start in (0, 1000, PART):
        reads = s3.read(h, start, start + PART)
        first = await anext(aiter(reads))
        assert first == data[start : start + len(first)] and len(first) < PART
        await reads.aclose()  # type: ignore[attr-defined]
        assert await read_all(s3, h, 17, 4096) == data[17:4096]
    assert await read_all(s3, h) == data


async def test_read_not_answered_as_asked_falls_back_to_the_client_call(
    s3: S3BlobStore, tmp_path: Path
) -> None:
    """A ranged read whose signed GET is refused (here: its kept URL spoiled) is made again by
    the S3 client, which returns the right bytes; a range outside the object stays refused."""
    data = secrets.token_bytes(100_000)
    h = (await put(s3, tmp_path, data)).sha256
    assert await read_all(s3, h, 10, 20) == data[10:20]
    urls = s3._signed._urls
    assert urls, "the signed GET was not used"
    for at, (url, when) in list(urls.items()):
        urls[at] = (url[:-8] + ("0" * 8 if not url.endswith("0" * 8) else "1" * 8), when)
    assert await read_all(s3, h, 5, 50_000) == data[5:50_000]
    with pytest.raises(BadRequest):
        await read_all(s3, h, len(data) + 10, len(data) + 20)


async def test_failed_multipart_upload_is_aborted(s3: S3BlobStore, raw: Any) -> None:
    data = secrets.token_bytes(3 * PART)
    with pytest.raises(IntegrityError):
        await s3.put_stream(
            chunks(data, PART // 2),
            retain_until=until(),
            expected_sha256=hashlib.sha256(b"other").hexdigest(),
            max_bytes=None,
        )
    uploads = await raw.list_multipart_uploads(Bucket=s3.bucket)
    assert uploads.get("Uploads", []) == []


async def test_bucket_without_object_lock_is_refused(ceph: CephCluster, raw: Any) -> None:
    bucket = new_bucket()
    await raw.create_bucket(Bucket=bucket)
    with pytest.raises(ConfigError, match="no Object Lock"):
        async with S3BlobStore.open(s3_config(ceph, bucket), credentials=creds(ceph)):
            pass


async def test_missing_bucket_is_refused_unless_creating_is_allowed(
    ceph: CephCluster, raw: Any
) -> None:
    bucket = new_bucket()
    with pytest.raises(ConfigError, match="does not exist"):
        async with S3BlobStore.open(s3_config(ceph, bucket), credentials=creds(ceph)):
            pass
    cfg = s3_config(ceph, bucket, create_bucket=True, default_retention_days=2)
    async with S3BlobStore.open(cfg, credentials=creds(ceph)):
        pass
    lock = await raw.get_object_lock_configuration(Bucket=bucket)
    rule = lock["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]
    assert (rule["Mode"], rule["Days"]) == ("COMPLIANCE", 2)


# -- credentials ------------------------------------------------------------------------------


def test_credentials_come_from_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text("[vault]\naws_access_key_id = AKFILE\naws_secret_access_key = s3cr3t\n")
    cfg = S3StoreConfig(credentials_file=str(path), profile="vault")
    got = load_credentials(cfg, {"AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "x"})
    assert (got.access_key, got.secret_key) == ("AKFILE", "s3cr3t")
    assert "s3cr3t" not in repr(got)
    env = {"AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "x", "HOME": str(tmp_path)}
    assert load_credentials(S3StoreConfig(), env).access_key == "AKENV"
    with pytest.raises(ConfigError, match="no credentials"):
        load_credentials(S3StoreConfig(), {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "absent")})


def test_s3_backend_without_its_bucket_opened_is_refused(tmp_path: Path) -> None:
    """Never a silent fallback: a configuration asking for S3 must not store on local disk."""
    from api.config import Config
    from vault.config import StoreConfig
    from vault.storage.storage import open_storage

    cfg = Config(data=tmp_path, store=StoreConfig(backend="s3"))
    with pytest.raises(ConfigError, match="bucket was not opened"):
        open_storage(cfg, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("parts", [1, 3])
async def test_attack_source_changed_after_hashing_is_refused_and_aborted(
    s3: S3BlobStore, raw: Any, parts: int
) -> None:
    """``put_file`` hashes the file, then sends a second read hashed again as it goes: bytes
    that differ from what was hashed never complete an object, and the upload is aborted."""
    hashed = secrets.token_bytes(parts * PART - 1)
    changed = bytearray(hashed)
    changed[-1] ^= 1
    digest = hashlib.sha256(hashed).hexdigest()
    with pytest.raises(IntegrityError, match="changed"):
        await send_object(
            raw,
            s3.bucket,
            key_of(digest),
            chunks(bytes(changed), PART),
            digest=digest,
            until=until(),
            mismatch="changed",
        )
    assert not await s3.exists(digest)
    assert (await raw.list_multipart_uploads(Bucket=s3.bucket)).get("Uploads", []) == []


@pytest.mark.parametrize(("size", "at"), [(3 * PART - 7, PART + 3), (1000, 3)])
async def test_attack_file_rewritten_between_hash_and_upload_is_refused(
    s3: S3BlobStore,
    raw: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    at: int,
) -> None:
    """The file changes after ``put_file``'s hash pass (the hash pass is made to rewrite it
    as it returns): the store refuses the part that no longer matches its hash from the first
    read, nothing is stored under either hash, the upload is aborted."""
    from vault.storage import s3write as mod

    path = tmp_path / "f"
    data = secrets.token_bytes(size)
    path.write_bytes(data)
    real = mod.hash_file

    def then_rewrite(fd: int, max_bytes: int | None, part: int) -> tuple[str, int, list[str]]:
        got = real(fd, max_bytes, part)
        os.pwrite(fd, bytes([data[at] ^ 1]), at)
        return got

    monkeypatch.setattr(mod, "hash_file", then_rewrite)
    fd = os.open(path, os.O_RDWR)
    try:
        with pytest.raises(IntegrityError, match="changed"):
            await s3.put_file(fd, retain_until=until())
    finally:
        os.close(fd)
    assert not await s3.exists(hashlib.sha256(data).hexdigest())
    assert not await s3.exists(hashlib.sha256(path.read_bytes()).hexdigest())
    assert (await raw.list_multipart_uploads(Bucket=s3.bucket)).get("Uploads", []) == []


async def test_disposal_deletes_only_once_the_lock_has_expired(
    ceph: CephCluster, raw: Any, tmp_path: Path
) -> None:
    bucket = new_bucket()  # Object Lock without a default retention: the write's date rules
    await raw.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    async with S3BlobStore.open(s3_config(ceph, bucket), credentials=creds(ceph)) as store:
        stored = await put(store, tmp_path, b"short retention", days=3 / 86400)
        with pytest.raises(Conflict, match="still locked"):
            await store.remove(stored.sha256)
        assert await store.verify(stored.sha256)
        await asyncio.sleep(max(0.0, (stored.retain_until - datetime.now(UTC)).total_seconds()))
        await asyncio.sleep(1.1)
        assert await store.remove(stored.sha256)
        assert not await store.exists(stored.sha256)
        assert not await store.remove(stored.sha256)
