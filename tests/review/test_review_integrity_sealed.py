"""The integrity report over sealed (encrypted) footage: a flipped byte, a missing object or an
unreadable one is reported per item; it never fails the whole report."""

from __future__ import annotations

from pathlib import Path

from tests.crypto.crypto_fixtures import CHUNK, admin, dock, legal_reviewer, open_env, plaintext
from vault.cases import links as cases
from vault.policy.labels import Label, Level
from vault.review.integrity_report import integrity_report
from vault.storage.keystore_db import key_for


async def test_attack_flipped_byte_in_sealed_original_is_one_failed_item_of_the_report(
    pg_dsn: str, tmp_path: Path
) -> None:
    d = dock(tmp_path, label="secret")
    async with open_env(pg_dsn, tmp_path, [d]) as env:
        for i in range(4):
            path = d.path / f"DEV01_OFF123_2026010112{i:02d}00.mp4"
            path.write_bytes(plaintext(3 * CHUNK + 7))
            await env.acq.acquire_path(d, path)
        rows = await env.rows("SELECT id::text AS id, sha256 FROM evidence ORDER BY id")
        boss = await admin(env)
        await cases.create(env.db.pool, env.ledger, boss, "C1", "case", Label(Level.SECRET))
        for r in rows:
            await cases.link(env.db.pool, env.ledger, boss, "C1", r["id"])
        reviewer = await legal_reviewer(env, boss, "C1")
        paths = {}
        for r in rows:
            key = await key_for(env.db.pool, r["sha256"])
            assert key is not None
            paths[r["id"]] = env.storage.blobs.sealed_path(r["sha256"], key.object_id)

        flipped, gone, blocked, fine = (r["id"] for r in rows)
        last = paths[flipped]  # a byte of the last chunk: refused when the object is opened
        last.chmod(0o600)
        data = bytearray(last.read_bytes())
        data[-3] ^= 1
        last.write_bytes(bytes(data))
        paths[gone].unlink()
        paths[blocked].chmod(0o600)
        paths[blocked].unlink()
        paths[blocked].mkdir()  # a directory in the object's place: an I/O error, even for root

        report = (await integrity_report(env.ledger, env.storage.content, reviewer, "C1")).report
        status = {i["evidence_id"]: i["content"]["status"] for i in report["evidence"]}
        assert status == {
            flipped: "mismatch",
            gone: "missing",
            blocked: "unreadable",
            fine: "ok",
        }
        assert report["verdict"] == "failed" and len(report["reasons"]) == 3
