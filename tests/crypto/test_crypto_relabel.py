"""Raising a label re-encrypts (new object verified, then the plain one removed); lowering is an
admin decision and decrypts only when asked. The ledger and the content address never change."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from ingest.acquire import Receipt
from tests.crypto.crypto_fixtures import (
    MARK,
    TEST_MAC,
    Env,
    admin,
    dock,
    drain,
    legal_reviewer,
    open_env,
    plaintext,
    read_all,
    sha,
    store_holds,
)
from vault.cases import links as cases
from vault.errors import Forbidden
from vault.keys.hostmac import RowTampered
from vault.policy.labels import Label
from vault.storage.reseal import Resealer, enqueue_seal

NAMES = [f"DEV01_OFF123_2026010112{m:02d}00.mp4" for m in range(6)]


async def acquire(env: Env, dk: object, name: str, data: bytes) -> Receipt:
    path = dk.path / name  # type: ignore[attr-defined]
    path.write_bytes(data)
    receipt = await env.acq.acquire_path(dk, path)  # type: ignore[arg-type]
    assert isinstance(receipt, Receipt)
    return receipt


async def ledger_bytes(env: Env) -> dict[int, bytes]:
    rows = await env.rows("SELECT idx, data FROM ledger_entries ORDER BY idx")
    return {r["idx"]: bytes(r["data"]) for r in rows}


async def test_label_raise_re_encrypts_and_the_plain_object_is_gone(
    pg_dsn: str, tmp_path: Path
) -> None:
    d = dock(tmp_path, label="internal")
    data = plaintext(40_000)
    async with open_env(pg_dsn, tmp_path, [d]) as env:
        boss = await admin(env)
        receipt = await acquire(env, d, NAMES[0], data)
        blobs, content = env.storage.blobs, env.storage.content
        assert blobs.exists(receipt.sha256) and not await content.is_sealed(receipt.sha256)
        before = await ledger_bytes(env)
        reading = await content.open(receipt.sha256)  # a reader that opened the plain object
        await cases.set_label(
            env.db.pool, env.ledger, boss, "evidence", receipt.evidence_id, Label.parse("secret")
        )
        resealer = Resealer(env.storage, env.db.pool, mac=TEST_MAC)
        assert await drain(env, resealer.handlers()) == 1
        assert not blobs.exists(receipt.sha256), "the plain object is removed"
        assert len(blobs.sealed_paths(receipt.sha256)) == 1
        assert store_holds(blobs.root, MARK) == []
        assert await read_all(reading) == data, "an open reader keeps reading"
        assert await read_all(await content.open(receipt.sha256)) == data
        after = await ledger_bytes(env)
        assert {i: after[i] for i in before} == before, "no ledger entry changed"
        new_kinds = [r["kind"] for r in await env.rows(
            "SELECT kind FROM ledger_entries WHERE idx > $1", max(before)
        )]  # fmt: skip
        assert new_kinds == ["labelled"], "re-encryption itself writes no entry"
        [row] = await env.rows("SELECT sha256 FROM evidence")
        assert row["sha256"] == receipt.sha256 == sha(data)
        assert await resealer.seal_evidence(uuid.UUID(receipt.evidence_id)) == []


async def test_case_labels_and_links_seal_their_evidence(pg_dsn: str, tmp_path: Path) -> None:
    d = dock(tmp_path, label="internal")
    async with open_env(pg_dsn, tmp_path, [d]) as env:
        boss = await admin(env)
        a = await acquire(env, d, NAMES[0], plaintext(9000))
        b = await acquire(env, d, NAMES[1], plaintext(9001))
        db, ledger = env.db.pool, env.ledger
        await cases.create(db, ledger, boss, "C-1", "title one", Label.parse("internal"))
        await cases.link(db, ledger, boss, "C-1", a.evidence_id)
        await cases.create(db, ledger, boss, "C-2", "title two", Label.parse("secret"))
        await cases.link(db, ledger, boss, "C-2", b.evidence_id)  # linking queues sealing
        await cases.set_label(db, ledger, boss, "case", "C-1", Label.parse("confidential"))
        await drain(env, Resealer(env.storage, db, mac=TEST_MAC).handlers())
        for r in (a, b):
            assert await env.storage.content.is_sealed(r.sha256)
            assert not env.storage.blobs.exists(r.sha256)


async def test_lowering_is_for_admins_and_decrypts_only_when_asked(
    pg_dsn: str, tmp_path: Path
) -> None:
    d = dock(tmp_path, label="secret")
    data = plaintext(12_345)
    async with open_env(pg_dsn, tmp_path, [d]) as env:
        db, ledger, content = env.db.pool, env.ledger, env.storage.content
        boss = await admin(env)
        r = await acquire(env, d, NAMES[0], data)
        await cases.create(db, ledger, boss, "C-9", "title", Label.parse("internal"))
        await cases.link(db, ledger, boss, "C-9", r.evidence_id)
        reviewer = await legal_reviewer(env, boss, "C-9")
        with pytest.raises(Forbidden):
            await cases.set_label(
                db, ledger, reviewer, "evidence", r.evidence_id, Label.parse("internal")
            )
        await cases.set_label(
            db, ledger, reviewer, "evidence", r.evidence_id, Label.parse("top_secret")
        )
        await cases.set_label(db, ledger, boss, "evidence", r.evidence_id, Label.parse("internal"))
        resealer = Resealer(env.storage, db, mac=TEST_MAC)
        await drain(env, resealer.handlers())
        assert await content.is_sealed(r.sha256), "lowered, but stays encrypted"
        await cases.set_label(db, ledger, boss, "evidence", r.evidence_id, Label.parse("secret"))
        await cases.set_label(
            db, ledger, boss, "evidence", r.evidence_id, Label.parse("internal"), unseal=True
        )
        await drain(env, resealer.handlers())
        assert not await content.is_sealed(r.sha256)
        assert env.storage.blobs.sealed_paths(r.sha256) == []
        assert env.storage.blobs.verify(r.sha256)
        assert await read_all(await content.open(r.sha256)) == data


@pytest.mark.parametrize("role", ["evault_app", "superuser"])
async def test_attack_label_lowered_in_the_database_decrypts_nothing(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    """An insider lowers a sealed item's label and queues a decryption job: the job fails on
    the row that does not verify, and the content stays encrypted."""
    d = dock(tmp_path, label="secret")
    async with open_env(pg_dsn, tmp_path, [d]) as env:
        r = await acquire(env, d, NAMES[0], plaintext(7000))
        content = env.storage.content
        assert await content.is_sealed(r.sha256)
        conn = await asyncpg.connect(pg_dsn)
        try:
            if role == "evault_app":
                await conn.execute("SET ROLE evault_app")
            await conn.execute(
                "UPDATE evidence SET label_level = 0 WHERE id = $1::uuid", r.evidence_id
            )
            await enqueue_seal(conn, "evidence", r.evidence_id, 0, unseal=True)
        finally:
            await conn.close()
        resealer = Resealer(env.storage, env.db.pool, mac=TEST_MAC)
        await drain(env, resealer.handlers())
        assert await content.is_sealed(r.sha256), "still encrypted"
        assert not env.storage.blobs.exists(r.sha256), "no plaintext copy in the store"
        with pytest.raises(RowTampered):
            await resealer.unseal_evidence(uuid.UUID(r.evidence_id))
