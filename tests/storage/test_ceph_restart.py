"""Object Lock survives a crash of the whole storage cluster: every Ceph daemon is killed with
SIGKILL (no clean shutdown) and started again on the same disk; the locked versions are all
there, byte for byte, and still cannot be deleted or have their retention shortened."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.storage.ceph_fixture import CephCluster
from tests.storage.test_blob_contract import PART, chunks, creds, new_bucket, read_all, s3_config
from vault.storage.s3client import error_code, open_client
from vault.storage.s3store import S3BlobStore, key_of


async def test_attack_locks_hold_after_every_daemon_is_killed(
    ceph: CephCluster, tmp_path: Path
) -> None:
    cfg = s3_config(ceph, new_bucket(), create_bucket=True)
    until = datetime.now(UTC) + timedelta(days=3)
    payloads = [secrets.token_bytes(n) for n in (10, 2 * PART + 7)]
    async with S3BlobStore.open(cfg, credentials=creds(ceph), spool_dir=tmp_path) as store:
        stored = [
            await store.put_stream(
                chunks(p), retain_until=until, expected_sha256=None, max_bytes=None
            )
            for p in payloads
        ]
    took = ceph.restart()
    assert took < 60
    async with (
        S3BlobStore.open(cfg, credentials=creds(ceph), spool_dir=tmp_path) as store,
        open_client(cfg, creds(ceph)) as raw,
    ):
        for data, obj in zip(payloads, stored, strict=True):
            assert obj.sha256 == hashlib.sha256(data).hexdigest()
            assert await read_all(store, obj.sha256) == data
            assert await store.verify(obj.sha256)
            retained = await store.retention(obj.sha256)
            assert retained is not None and retained >= until.replace(microsecond=0)
            with pytest.raises(ClientError) as refused:
                await raw.delete_object(
                    Bucket=cfg.bucket, Key=key_of(obj.sha256), VersionId=obj.version_id
                )
            assert error_code(refused.value) == "AccessDenied"
            with pytest.raises(ClientError) as refused:
                await raw.put_object_retention(
                    Bucket=cfg.bucket,
                    Key=key_of(obj.sha256),
                    VersionId=obj.version_id,
                    Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until - timedelta(days=1)},
                )
            assert error_code(refused.value) == "AccessDenied"
