"""A plain version superseded by its sealed copy (label raised) on a real single-node Ceph: it is
recorded bound to the ledger, never served, its lock is not extended, S3 refuses its deletion
while the lock holds, and the retention pass deletes exactly it once the lock expired (after
reading the sealed copy back), with a ledger entry; a forged record deletes nothing; a plain
copy written later by an acquisition of the sealed content goes the same way."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from msgspec.structs import replace

from tests.crypto.crypto_fixtures import TEST_MAC, admin, dock, drain, open_env, plaintext
from tests.storage.test_blob_contract import new_bucket
from tests.storage.test_s3_service import acquire, raw, read, s3_env  # noqa: F401 - fixtures
from vault.cases import links as cases
from vault.config import StoreConfig
from vault.ops import objectlock
from vault.policy.labels import Label, Level
from vault.storage.keystore_db import key_for
from vault.storage.reseal import Resealer
from vault.storage.s3blobs import S3Blobs, S3PlainObject
from vault.storage.s3store import key_of, sealed_key_of
from vault.storage.superseded import remove_expired

LOCK = timedelta(seconds=8)  # the lock of every write here: as if retain_days had passed


async def _versions(client: Any, bucket: str, key: str) -> list[str]:
    got = await client.list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in got.get("Versions", []) if v["Key"] == key]


async def test_superseded_plain_version_is_deleted_once_its_lock_expired(
    pg_dsn: str,
    tmp_path: Path,
    s3_env: StoreConfig,  # noqa: F811
    raw: Any,  # noqa: F811
) -> None:
    bucket = new_bucket()  # Object Lock without a default retention: the write's date rules
    await raw.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = replace(s3_env, s3=replace(s3_env.s3, bucket=bucket, create_bucket=False))
    d = dock(tmp_path, label="internal")
    async with open_env(pg_dsn, tmp_path, [d], store=store) as env:
        blobs = env.storage.blobs
        assert isinstance(blobs, S3Blobs)
        blobs.retain_for = LOCK
        data = plaintext(300_000)
        r = await acquire(env, data)
        plain = key_of(r.sha256)
        (version,) = await _versions(raw, bucket, plain)
        boss = await admin(env)
        await cases.create(env.db.pool, env.ledger, boss, "CS", "case", Label(Level.SECRET))
        await cases.link(env.db.pool, env.ledger, boss, "CS", r.evidence_id)  # queues sealing
        resealer = Resealer(env.storage, env.db.pool, mac=TEST_MAC, ledger=env.ledger)
        assert await drain(env, resealer.handlers()) == 1
        key = await key_for(env.db.pool, r.sha256)
        assert key is not None, "sealed"
        kept = [e for e in await env.entries("retention") if e.get("op") == "plain-superseded"]
        assert [(e["sha256"], e["version"]) for e in kept] == [(r.sha256, version)]
        assert kept[0]["sealed_object"] == key.object_id.hex()

        # Before its lock expires: kept, S3 refuses to delete it, and it is never served.
        early = await remove_expired(env.storage, env.db.pool, env.ledger)
        assert early.removed == [] and [sha for sha, _ in early.waiting] == [r.sha256]
        remembered = await env.db.pool.fetchval("SELECT locked_until FROM superseded_plain")
        assert remembered == early.waiting[0][1], "the lock's date, read from the store"
        with pytest.raises(ClientError):
            await raw.delete_object(Bucket=bucket, Key=plain, VersionId=version)
        obj = await env.storage.content.open(r.sha256)
        try:
            assert not isinstance(obj, S3PlainObject), "content is read from its sealed copy"
        finally:
            obj.close()
        assert await read(env.storage.content, r.sha256) == data
        # A link's lock extension covers the sealed copy only: the plain lock runs out.
        before = await raw.get_object_retention(Bucket=bucket, Key=plain, VersionId=version)
        assert await objectlock.extend_item(blobs, env.db.pool, TEST_MAC, r.evidence_id) == 1
        after = await raw.get_object_retention(Bucket=bucket, Key=plain, VersionId=version)
        assert after["Retention"] == before["Retention"]

        # A forged record for content stored plain (its lock expired too) deletes nothing.
        other = await acquire(env, os.urandom(50_000), 1)
        await env.db.pool.execute(
            "INSERT INTO superseded_plain (sha256, version_id, object_id, ledger_idx, tag)"
            " VALUES ($1, $2, $3, 1, $4)",
            other.sha256,
            (await _versions(raw, bucket, key_of(other.sha256)))[0],
            os.urandom(16),
            os.urandom(32),
        )

        until = before["Retention"]["RetainUntilDate"]
        await asyncio.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 2)
        done = await remove_expired(env.storage, env.db.pool, env.ledger)
        assert done.removed == [(r.sha256, version)]
        assert [sha for sha, _ in done.refused] == [other.sha256], "the forged record"
        assert await _versions(raw, bucket, plain) == []
        assert await _versions(raw, bucket, key_of(other.sha256)) != []
        assert await _versions(raw, bucket, sealed_key_of(r.sha256, key.object_id)) != []
        assert await read(env.storage.content, r.sha256) == data
        gone = [e for e in await env.entries("retention") if e.get("op") == "plain-removed"]
        assert [(e["sha256"], e["version"], e["found"]) for e in gone] == [
            (r.sha256, version, True)
        ]
        again = await remove_expired(env.storage, env.db.pool, env.ledger)
        assert again.removed == [] and again.waiting == []

        # The same content offered again to the plain dock: the plain copy written is kept by
        # its lock, recorded, and deleted in its turn.
        await acquire(env, data, 2)
        (copy,) = await _versions(raw, bucket, plain)
        kept = [e for e in await env.entries("retention") if e.get("op") == "plain-superseded"]
        assert [e["version"] for e in kept] == [version, copy]
        await asyncio.sleep(LOCK.total_seconds() + 2)
        last = await remove_expired(env.storage, env.db.pool, env.ledger)
        assert last.removed == [(r.sha256, copy)]
        assert await _versions(raw, bucket, plain) == []
