"""`evault backup` and `evault restore` with the S3 store on the Ceph fixture: the objects stay
in their Object Lock bucket; the backup records each referenced one's original version; the
restore checks them in the bucket, and names an object written over since; a restore that is not
pointed at the backup's bucket is refused."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import asyncpg

from tests.ops.ops_fixtures import evault
from tests.storage.ceph_fixture import CephCluster
from tests.storage.test_blob_contract import creds, new_bucket, s3_config
from tests.storage.test_s3_http import s3_env
from vault.db import with_database
from vault.storage.s3client import open_client
from vault.storage.s3store import key_of


def files(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = folder / f"DEV01_OFF1_202603010900{i:02d}.mp4"
        path.write_bytes(os.urandom(2000 + i))
        out.append(str(path))
    return out


async def new_db(admin_dsn: str) -> str:
    name = "evault_s3r_" + secrets.token_hex(6)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return name


async def drop_db(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def test_backup_keeps_objects_in_the_bucket_and_restore_checks_them(
    ceph: CephCluster, tmp_path: Path, pg_dsn: str, pg_admin_dsn: str
) -> None:
    bucket = new_bucket()
    s3 = s3_env(ceph, bucket, tmp_path / "cred")
    env = {"EVAULT_DATABASE_DSN": pg_dsn, **s3}
    data, backup = tmp_path / "data", tmp_path / "backup"
    evault(data, "init", env=env)
    out = evault(data, "ingest", *files(tmp_path / "in", 4), "--dock", "dock-01", env=env)
    shas = [json.loads(line)["receipt"]["sha256"] for line in out.stdout.splitlines()]
    assert len(shas) == 4
    out = evault(data, "backup", "--out", str(backup), env=env).stdout
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["objects"]["bucket"] == bucket and manifest["objects"]["count"] == 4
    assert "bucket-objects.jsonl" in manifest["files"]
    listed = [json.loads(x) for x in (backup / "bucket-objects.jsonl").read_text().splitlines()]
    assert sorted(i["key"] for i in listed) == sorted(key_of(h) for h in shas)
    assert not (backup / "objects").exists(), "objects stay in the bucket"

    names: list[str] = []
    try:
        # restored onto the same bucket: every object is found, its version and hash checked
        names.append(await new_db(pg_admin_dsn))
        target = {"EVAULT_DATABASE_DSN": with_database(pg_admin_dsn, names[-1]), **s3}
        out = evault(tmp_path / "restored", "restore", str(backup), env=target)
        assert "fsck clean" in out.stdout and "BAD OBJECT" not in out.stdout, out.stdout

        # a version written over an object through the S3 API since: named, the restore fails
        async with open_client(s3_config(ceph, bucket), creds(ceph)) as raw:
            client: Any = raw
            await client.put_object(Bucket=bucket, Key=key_of(shas[0]), Body=b"other bytes")
        names.append(await new_db(pg_admin_dsn))
        target = {"EVAULT_DATABASE_DSN": with_database(pg_admin_dsn, names[-1]), **s3}
        bad = evault(tmp_path / "r2", "restore", str(backup), env=target, check=False)
        assert bad.returncode == 1 and key_of(shas[0]) in bad.stdout, bad.stdout + bad.stderr

        # a restore not pointed at the bucket is refused before anything is restored
        names.append(await new_db(pg_admin_dsn))
        target = {"EVAULT_DATABASE_DSN": with_database(pg_admin_dsn, names[-1]),
                  "EVAULT_STORE_BACKEND": "file"}  # fmt: skip
        refused = evault(tmp_path / "r3", "restore", str(backup), env=target, check=False)
        assert refused.returncode == 2 and bucket in refused.stderr, refused.stderr
    finally:
        for name in names:
            await drop_db(pg_admin_dsn, name)
