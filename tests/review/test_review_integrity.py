"""Integrity reports on a real ledger and blob store: checks, proofs, custody, access, signing."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.review.review_fixtures import ADMIN, add_evidence, open_vault, person, tamper
from vault import evidence as evrows
from vault.cases import links as cases
from vault.errors import NotFound
from vault.policy.decide import Role
from vault.policy.labels import Label, Level
from vault.review.integrity_report import TAMPERED, integrity_report
from vault.storage.blobstore import BlobStore
from vault.storage.content import PlainContentStore
from verify.canonical import canonical_json
from verify.checkpoint import open_checkpoint
from verify.merkle import leaf_hash, verify_inclusion
from verify.note import parse_vkey
from verify.report_note import verify_report


async def test_report_checks_proves_and_signs(pg_dsn: str, tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "vault")
    content = PlainContentStore(store)
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "C1", "盗窃案", Label(Level.INTERNAL))
        e1 = await add_evidence(ledger, store, data=b"first recording")
        e2 = await add_evidence(ledger, store, data=b"second recording")
        secret = await add_evidence(ledger, store, label=Label(Level.SECRET))
        other = await add_evidence(ledger, store)
        for e in (e1, e2, secret):
            await cases.link(pool, ledger, ADMIN, "C1", e)
        reviewer = person("lr", [Role.LEGAL_REVIEWER], Level.INTERNAL, cases=["C1"])

        signed = await integrity_report(ledger, content, reviewer, "C1")
        report = signed.report
        assert signed.data == canonical_json(report)
        assert (
            verify_report(signed.data, signed.signature, parse_vkey(ledger.signer.vkey)) == report
        )
        assert report["verdict"] == "ok" and report["reasons"] == []
        # only what the reviewer may list: not the secret item, not the unlinked one
        assert sorted(i["evidence_id"] for i in report["evidence"]) == sorted([e1, e2])
        assert secret not in signed.data.decode() and other not in signed.data.decode()

        # the proofs in the report verify offline with the vkey alone
        cp = open_checkpoint(report["log"]["checkpoint"], parse_vkey(report["log"]["vkey"]))
        assert cp.size > report["audit_index"]
        for item in report["evidence"]:
            assert item["content"]["status"] == "ok" and item["ledger"]["status"] == "ok"
            entry = item["ledger"]["entry"].encode()
            assert json.loads(entry)["evidence_id"] == item["evidence_id"]
            proof = [bytes.fromhex(h) for h in item["ledger"]["proof"]]
            verify_inclusion(
                leaf_hash(entry), item["ledger"]["index"], cp.size, proof, cp.root_hash
            )

        # custody: acquired, linked, and this very check (audited as verify, before checking)
        first = next(i for i in report["evidence"] if i["evidence_id"] == e1)
        kinds = [t["kind"] for t in first["timeline"]]
        assert kinds[:2] == ["acquired", "linked"] and kinds[-1] == "accessed"
        assert first["timeline"][1]["opened"] == {"by": "admin", "case": "C1"}
        last = first["timeline"][-1]
        assert last["index"] == report["audit_index"]
        assert last["fields"]["action"] == "verify" and last["opened"] == {"principal": "lr"}

        # the audit entry is indexed under the case and the reported items only
        refs = await pool.fetch(
            "SELECT ref_kind, ref_id FROM ledger_refs WHERE ledger_idx = $1", report["audit_index"]
        )
        assert sorted((r["ref_kind"], r["ref_id"]) for r in refs) == sorted(
            [("case", "C1"), ("evidence", e1), ("evidence", e2)]
        )

        # someone changes a stored file, another disappears: the report names both
        tamper(store, first["sha256"], b"edited recording")
        e2_sha = next(i["sha256"] for i in report["evidence"] if i["evidence_id"] == e2)
        tamper(store, e2_sha, None)
        again = (await integrity_report(ledger, content, reviewer, "C1")).report
        assert again["verdict"] == "failed"
        assert sorted(again["reasons"]) == sorted(
            [f"evidence {e1}: content mismatch (now)", f"evidence {e2}: content missing (now)"]
        )
        assert all(i["ledger"]["status"] == "ok" for i in again["evidence"])


async def test_scrub_mode_reports_the_last_scrub(pg_dsn: str, tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "vault")
    content = PlainContentStore(store)
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "C2", "t", Label(Level.INTERNAL))
        e1 = await add_evidence(ledger, store)
        e2 = await add_evidence(ledger, store)
        for e in (e1, e2):
            await cases.link(pool, ledger, ADMIN, "C2", e)
        report = (await integrity_report(ledger, content, ADMIN, "C2", mode="scrub")).report
        assert report["verdict"] == "failed"  # never scrubbed: not known to be intact
        assert {i["content"]["status"] for i in report["evidence"]} == {"unchecked"}
        await evrows.mark_scrubbed_ok(pool, [uuid.UUID(e) for e in (e1, e2)])
        async with pool.acquire() as conn:
            await evrows.mark_integrity(conn, uuid.UUID(e2), "mismatch")
        report = (await integrity_report(ledger, content, ADMIN, "C2", mode="scrub")).report
        assert report["reasons"] == [f"evidence {e2}: content mismatch (scrub)"]
        assert all(i["content"]["checked_at"] for i in report["evidence"])


async def test_a_row_pointing_at_another_entry_fails_the_ledger_check(
    pg_dsn: str, tmp_path: Path
) -> None:
    store = BlobStore(tmp_path / "vault")
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "C3", "t", Label(Level.INTERNAL))
        e1 = await add_evidence(ledger, store)
        link_idx = await cases.link(pool, ledger, ADMIN, "C3", e1)
        await pool.execute("UPDATE evidence SET ledger_idx = $1 WHERE id = $2::uuid", link_idx, e1)
        report = (await integrity_report(ledger, PlainContentStore(store), ADMIN, "C3")).report
        assert report["verdict"] == "failed"
        assert report["reasons"] == [f"evidence {e1}: {TAMPERED}"]  # the row's tag no longer holds


@pytest.mark.parametrize("role", ["evault_app", "superuser"])
async def test_attack_swapped_hashes_fail_the_report(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    store = BlobStore(tmp_path / "vault")
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "C4", "t", Label(Level.INTERNAL))
        e1 = await add_evidence(ledger, store, data=b"first")
        e2 = await add_evidence(ledger, store, data=b"second")
        e3 = await add_evidence(ledger, store, data=b"third")
        for e in (e1, e2, e3):
            await cases.link(pool, ledger, ADMIN, "C4", e)
        conn = await asyncpg.connect(pg_dsn)
        try:
            if role == "evault_app":
                await conn.execute("SET ROLE evault_app")
            sha = {
                r["id"]: r["sha256"] for r in await conn.fetch("SELECT id, sha256 FROM evidence")
            }
            move = "UPDATE evidence SET sha256 = $2 WHERE id = $1::uuid"
            async with conn.transaction():
                await conn.execute(move, e1, "0" * 64)
                await conn.execute(move, e2, sha[uuid.UUID(e1)])
                await conn.execute(move, e1, sha[uuid.UUID(e2)])
        finally:
            await conn.close()
        report = (await integrity_report(ledger, PlainContentStore(store), ADMIN, "C4")).report
        assert report["verdict"] == "failed"
        assert sorted(report["reasons"]) == sorted(f"evidence {e}: {TAMPERED}" for e in (e1, e2))
        shown = {i["evidence_id"]: i for i in report["evidence"]}
        assert set(shown) == {e1, e2, e3} and "sha256" not in shown[e1]
        assert shown[e3]["verdict"] == "ok"


async def test_denied_and_missing_cases_look_alike_and_are_recorded(
    pg_dsn: str, tmp_path: Path
) -> None:
    store = BlobStore(tmp_path / "vault")
    content = PlainContentStore(store)
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "C4", "t", Label(Level.INTERNAL))
        outsider = person("lr2", [Role.LEGAL_REVIEWER], cases=["other"])
        for case in ("C4", "nope"):
            with pytest.raises(NotFound) as err:
                await integrity_report(ledger, content, outsider, case)
            assert err.value.detail == NotFound.title
        denied = await pool.fetch("SELECT data FROM ledger_entries WHERE kind = 'denied'")
        actions = [json.loads(bytes(r["data"]))["action"] for r in denied]
        assert actions == ["verify", "verify"]
        # an empty case the caller may read is ok, with nothing in it
        report = (await integrity_report(ledger, content, ADMIN, "C4")).report
        assert report["verdict"] == "ok" and report["evidence"] == []
        assert base64.b64decode(report["log"]["vkey"].split("+", 2)[2])[0] == 1  # b64 may hold "+"
