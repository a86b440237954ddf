"""Key rotation under load: data keys re-wrapped, content untouched, readers never fail, and the
retired key-encryption key is not needed afterwards (deleted here)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from tests.crypto.crypto_fixtures import CHUNK, NAME_FMT, admin, open_env, plaintext, read_all
from vault.storage.kek import FileKekStore
from vault.storage.keystore_db import insert_key, kek_usage, rotate_keys


async def test_rotation_under_load_then_old_key_destroyed(pg_dsn: str, tmp_path: Path) -> None:
    async with open_env(pg_dsn, tmp_path, []) as env:
        boss = await admin(env)
        objects = {}
        for _ in range(12):
            data = plaintext(random.randint(0, 6 * CHUNK))
            objects[await env.seal(data)] = data
        keks = env.storage.content.keks
        assert isinstance(keks, FileKekStore)
        old = keks.current().kek_id
        sealed_before = {
            p: p.read_bytes() for p in (env.storage.blobs.root / "sealed").rglob("*.*")
        }
        stop = asyncio.Event()
        reads = [0]

        async def reader(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                digest = rng.choice(list(objects))
                data = objects[digest]
                start = rng.randint(0, len(data))
                end = rng.randint(start, len(data))
                got = await read_all(await env.storage.content.open(digest), start, end)
                assert got == data[start:end]
                reads[0] += 1

        async def writer() -> None:  # new sealed content arrives during the rotation
            while not stop.is_set():
                data = plaintext(CHUNK + 1)
                blob = await asyncio.to_thread(env.storage.sealer.seal_chunks, [data])
                assert await insert_key(env.db.pool, blob.key, blob.chunk_size)
                objects[blob.sha256] = data
                await asyncio.sleep(0.02)

        tasks = [asyncio.create_task(reader(s)) for s in range(4)] + [asyncio.create_task(writer())]
        await asyncio.sleep(0.2)
        during = reads[0]
        report, idx = await rotate_keys(env.db.pool, env.ledger, keks, boss, grace_seconds=0.3)
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks)  # a failed read fails the test here
        assert reads[0] > during > 0
        assert report.old_kek_ids == [old] and report.retired == [old] and not report.kept
        assert report.rewrapped >= 12
        kek_ids = {r["kek_id"] for r in await env.rows("SELECT kek_id FROM object_keys")}
        assert kek_ids == {report.new_kek_id}
        entry = json.loads(await env.ledger.entry(idx))
        assert entry["kind"] == "key-rotated" and entry["retired"] == [old]
        assert entry["new_kek"] == report.new_kek_id and entry["rewrapped"] == report.rewrapped
        for path, raw in sealed_before.items():
            assert path.read_bytes() == raw, "rotation never rewrites content"
        usage = {u.kek_id: u for u in await kek_usage(env.db.pool, keks)}
        assert usage[old].state == "retired" and usage[old].objects == 0
        assert usage[report.new_kek_id].state == "current"
        # The retired key is not needed to read anything: destroy it, read with no cache.
        keks.destroy_retired(old)
        assert not list(keks.directory.rglob(f"{old}.key"))
        fresh = env.reopen()
        for digest, data in objects.items():
            assert await read_all(await fresh.content.open(digest)) == data


def test_cli_keys_list_and_rotate(tmp_path: Path, pg_dsn: str) -> None:
    env = dict(os.environ, EVAULT_DATABASE_DSN=pg_dsn)
    data = tmp_path / "data"

    def evault(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "api.cli", "--data", str(data), *args],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, f"evault {args}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout

    evault("init")
    toml = data / "evault.toml"
    toml.write_text(toml.read_text().replace('label = "internal"', 'label = "secret"'))
    assert "no key-encryption key yet" in evault("keys", "list")
    source = tmp_path / NAME_FMT.format(0)
    source.write_bytes(plaintext(3 * CHUNK))
    line = evault("ingest", str(source), "--dock", "dock-01").splitlines()[0]
    receipt = json.loads(line)["receipt"]
    assert receipt["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    [line] = evault("keys", "list").splitlines()
    old = line.split("\t")[0]
    assert line.endswith("current\t1 data keys")
    out = evault("keys", "rotate", "--grace", "0")
    assert f"retired {old}" in out and "1 data keys re-wrapped" in out
    listed = dict(line.split("\t", 1) for line in evault("keys", "list").splitlines())
    assert listed[old] == "retired\t0 data keys"
    assert [v for v in listed.values() if v.startswith("current")] == ["current\t1 data keys"]
    digest = receipt["sha256"]
    assert not list((data / "vault" / "objects").rglob(digest)), "stored sealed, not plain"
    assert len(list((data / "vault" / "sealed").rglob(digest + ".*"))) == 1
