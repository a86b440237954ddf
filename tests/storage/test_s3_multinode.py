"""Two `evault serve` nodes on one PostgreSQL and one bucket of the Ceph fixture, each node talking
to its own ``radosgw`` of the cluster (as nodes in two rooms would use their nearest gateway):
the scenario of ``tests/api/test_multinode.py`` (files dropped on and PUT to both docks, CLI
appends, the leader SIGKILLed mid-acquisition and mid-media-job, then restarted; one evidence
row per file, every job done once, fsck clean, every entry covered within 1 s p99), and then,
through the S3 API: every offered file is exactly one object version, every version in the
bucket (originals and renditions) is under a COMPLIANCE lock, and deleting any of them with the
service's own credentials is refused."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.test_multinode import run_two_nodes, two_nodes
from tests.storage.ceph_fixture import CephCluster
from tests.storage.test_blob_contract import creds, new_bucket, s3_config
from tests.storage.test_s3_http import s3_env
from vault.storage.s3client import error_code, open_client
from vault.storage.s3store import key_of

pytestmark = [
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg"),
    pytest.mark.alone,  # a p99 bound on checkpoint coverage
]


async def _bucket_with_lock(ceph: CephCluster, bucket: str) -> None:
    """The bucket the operator provides: Object Lock, a COMPLIANCE default retention."""
    async with open_client(s3_config(ceph, bucket), creds(ceph)) as s3:
        await s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        await s3.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
            },
        )


async def _attack_delete_every_version(
    ceph: CephCluster, bucket: str, offered: set[str]
) -> tuple[dict[str, int], list[dict[str, Any]], list[str]]:
    """(versions per offered key, every version in the bucket, the deletions S3 accepted)."""
    async with open_client(s3_config(ceph, bucket), creds(ceph)) as s3:
        per_key = {}
        for sha in offered:
            got = await s3.list_object_versions(Bucket=bucket, Prefix=key_of(sha))
            assert not got.get("DeleteMarkers"), got
            per_key[sha] = len(got.get("Versions", []))
        versions: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Bucket": bucket}
        while True:
            page = await s3.list_object_versions(**kwargs)
            versions += [dict(v) for v in page.get("Versions", [])]
            if not page.get("IsTruncated"):
                break
            kwargs["KeyMarker"] = page["NextKeyMarker"]
            kwargs["VersionIdMarker"] = page["NextVersionIdMarker"]
        accepted = []
        for v in versions:
            head = await s3.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
            assert head.get("ObjectLockMode") == "COMPLIANCE", (v["Key"], head)
            try:
                await s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
                accepted.append(v["Key"])
            except ClientError as exc:
                assert error_code(exc) == "AccessDenied", exc
        return per_key, versions, accepted


def test_two_nodes_two_gateways_one_bucket(
    ceph: CephCluster, pg_admin_dsn: str, tmp_path: Path
) -> None:
    bucket = new_bucket()
    asyncio.run(_bucket_with_lock(ceph, bucket))
    second = ceph.add_gateway()
    stores = []
    for n, endpoint in (("a", ceph.endpoint), ("b", second)):
        env = s3_env(ceph, bucket, tmp_path / f"cred-{n}", create=False)
        env["EVAULT_STORE_S3_ENDPOINT"] = endpoint
        stores.append(env)
    with two_nodes(pg_admin_dsn, tmp_path, (stores[0], stores[1])) as (a, b, dsn):
        offered = run_two_nodes(a, b, dsn, tmp_path)
    assert not [p for p in (tmp_path / "a" / "vault" / "objects").rglob("*") if p.is_file()]
    per_key, versions, accepted = asyncio.run(_attack_delete_every_version(ceph, bucket, offered))
    assert per_key == dict.fromkeys(offered, 1), per_key
    assert len(versions) > len(offered), "renditions are in the bucket too"
    assert accepted == [], f"S3 deleted locked versions: {accepted}"
