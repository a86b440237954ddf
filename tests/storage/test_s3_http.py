"""A real ``evault serve`` with ``store.backend = "s3"`` on the Ceph fixture, over HTTP: an upload
goes into the bucket, content and renditions stream with Range from it, a link extends the lock,
``evault scrub`` flags a version written over an object through the S3 API, and the service
refuses to start on a bucket without Object Lock."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.api.http_fixtures import World, make_video, seeded_service
from tests.api.service_fixtures import free_port
from tests.storage.ceph_fixture import CephCluster
from tests.storage.test_blob_contract import creds, new_bucket, s3_config
from vault.storage.s3client import open_client
from vault.storage.s3store import key_of

HOLD_DAYS = 400
VIDEO = "DEV01_OFF1_20260301090000.mp4"


def s3_env(ceph: CephCluster, bucket: str, folder: Path, *, create: bool = True) -> dict[str, str]:
    """Environment selecting the S3 store; credentials from a credentials file."""
    folder.mkdir(parents=True, exist_ok=True)
    cred = folder / "s3-credentials"
    cred.write_text(
        f"[default]\naws_access_key_id = {ceph.access_key}\n"
        f"aws_secret_access_key = {ceph.secret_key}\n"
    )
    cred.chmod(0o600)
    return {
        "EVAULT_STORE_BACKEND": "s3",
        "EVAULT_STORE_S3_ENDPOINT": ceph.endpoint,
        "EVAULT_STORE_S3_BUCKET": bucket,
        "EVAULT_STORE_S3_REGION": ceph.region,
        "EVAULT_STORE_S3_CREDENTIALS_FILE": str(cred),
        "EVAULT_STORE_S3_CREATE_BUCKET": "true" if create else "false",
        "EVAULT_STORE_S3_PART_SIZE": str(5 * 1024 * 1024),
        "EVAULT_STORE_S3_RETAIN_DAYS": "2",
        "EVAULT_STORE_S3_HOLD_DAYS": str(HOLD_DAYS),
    }


@pytest.fixture
async def raw(ceph: CephCluster) -> AsyncIterator[Any]:
    async with open_client(s3_config(ceph, "unused"), creds(ceph)) as client:
        yield client


@pytest.fixture(scope="module")
def world(
    ceph: CephCluster, pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[World, str, bytes]]:
    tmp = tmp_path_factory.mktemp("s3http")
    bucket = new_bucket()
    with seeded_service(pg_admin_dsn, tmp / "data", s3_env(ceph, bucket, tmp / "cred")) as w:
        data = make_video(tmp / "v.mp4", 3)
        r = w.upload("dock1", VIDEO, data)
        assert r.status == 201, r.body
        w.evidence[VIDEO] = r.json()
        # footage is seen by reviewers of a case it is linked to: link it (the lock extends)
        body = json.dumps({"evidence_id": eid(w)}).encode()
        assert w.call("POST", "/v1/cases/C1/evidence", who="admin", body=body).status == 201
        yield w, bucket, data


def eid(w: World) -> str:
    return str(w.evidence[VIDEO]["evidence_id"])


def renditions(w: World, timeout: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        body = w.call("GET", f"/v1/evidence/{eid(w)}", who="admin").json()
        if body["media_status"] not in ("pending", "processing") and body["renditions"]:
            return list(body["renditions"])
        assert time.monotonic() < deadline, body
        time.sleep(0.3)


async def versions(raw: Any, bucket: str) -> list[dict[str, Any]]:
    return list((await raw.list_object_versions(Bucket=bucket)).get("Versions", []))


async def test_upload_is_stored_and_streamed_with_range_from_the_bucket(
    world: tuple[World, str, bytes], raw: Any
) -> None:
    w, bucket, data = world
    sha = hashlib.sha256(data).hexdigest()
    assert w.evidence[VIDEO]["sha256"] == sha
    head = await raw.head_object(Bucket=bucket, Key=key_of(sha))
    assert head["ContentLength"] == len(data) and head["ObjectLockMode"] == "COMPLIANCE"
    r = w.call("GET", f"/v1/evidence/{eid(w)}/content", who="reviewer",
               headers={"Range": "bytes=100-1999"})  # fmt: skip
    assert r.status == 206, r.body[:300]
    assert r.body == data[100:2000]
    assert r.headers["content-range"] == f"bytes 100-1999/{len(data)}"
    r = w.call("GET", f"/v1/evidence/{eid(w)}/content", who="reviewer")
    assert r.status == 200 and r.body == data
    root = w.svc.data / "vault"
    assert not [p for t in ("objects", "sealed") for p in (root / t).rglob("*") if p.is_file()]


async def test_renditions_are_made_from_and_stored_in_the_bucket(
    world: tuple[World, str, bytes], raw: Any
) -> None:
    w, bucket, _ = world
    made = renditions(w)
    keys = {v["Key"]: v for v in await versions(raw, bucket)}
    for rend in made:
        assert key_of(rend["sha256"]) in keys, rend["kind"]
        head = await raw.head_object(Bucket=bucket, Key=key_of(rend["sha256"]))
        assert head["ObjectLockMode"] == "COMPLIANCE"
        r = w.call("GET", rend["content"], who="reviewer", headers={"Range": "bytes=0-99"})
        assert r.status == 206 and len(r.body) == min(100, rend["size"])


async def test_link_extends_the_lock_of_the_original_and_its_renditions(
    world: tuple[World, str, bytes], raw: Any
) -> None:
    """The item was linked right after its upload (the fixture): its original's lock moved from
    ``retain_days`` (2) to ``hold_days`` ahead, and its renditions, made before the link or
    after it, got the same; ``evault retention run`` keeps them there."""
    w, bucket, data = world
    made = renditions(w)
    shas = [hashlib.sha256(data).hexdigest(), *(r["sha256"] for r in made)]

    async def locks() -> list[datetime]:
        heads = [await raw.head_object(Bucket=bucket, Key=key_of(sha)) for sha in shas]
        return [h["ObjectLockRetainUntilDate"] for h in heads]

    want = datetime.now(UTC) + timedelta(days=HOLD_DAYS - 1)
    got = await locks()
    assert all(until >= want for until in got), list(zip(shas, got, strict=True))
    run = w.svc.evault("retention", "run", "--as", "admin")
    assert "Object Lock brought up to the rules" in run.stderr, run.stderr
    assert all(until >= want for until in await locks())


async def test_attack_version_written_over_the_original_is_flagged_by_evault_scrub(
    world: tuple[World, str, bytes], raw: Any
) -> None:
    w, bucket, data = world
    renditions(w)  # media jobs done: nothing else writes meanwhile
    clean = w.svc.evault("scrub", "--all", "--no-fsck", check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    sha = hashlib.sha256(data).hexdigest()
    await raw.put_object(Bucket=bucket, Key=key_of(sha), Body=b"not the footage")
    dirty = w.svc.evault("scrub", "--all", "--no-fsck", check=False)
    assert dirty.returncode != 0
    assert "later version" in dirty.stdout + dirty.stderr + (w.svc.data / "serve.log").read_text()
    # the item is marked damaged: served to no one without an override (the in-process tests
    # show that reads return the original version, never the one written over it)
    assert w.call("GET", f"/v1/evidence/{eid(w)}/content", who="reviewer").status == 422


def test_service_refuses_a_bucket_without_object_lock(
    ceph: CephCluster, tmp_path: Path, pg_dsn: str
) -> None:
    bucket = new_bucket()

    async def plain_bucket() -> None:
        async with open_client(s3_config(ceph, bucket), creds(ceph)) as client:
            await client.create_bucket(Bucket=bucket)

    asyncio.run(plain_bucket())
    env = dict(os.environ, EVAULT_DATABASE_DSN=pg_dsn,
               **s3_env(ceph, bucket, tmp_path / "cred", create=False))  # fmt: skip
    cli = [sys.executable, "-m", "api.cli", "--data", str(tmp_path / "data")]
    subprocess.run([*cli, "init"], check=True, capture_output=True, env=env, timeout=120)
    listen = f"127.0.0.1:{free_port()}"
    proc = subprocess.run([*cli, "serve", "--listen", listen], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("evault:")]
    assert len(errors) == 1 and "has no Object Lock" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
