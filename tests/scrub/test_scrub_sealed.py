"""Scrub over sealed (encrypted) objects: a damaged, missing or unreadable object is a finding
that names the item and the object, marks the item, is announced and recorded, and the pass
goes on to the end (it used to stop the pass with an error at the first damaged object)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.crypto.crypto_fixtures import CHUNK, Env, dock, open_env, plaintext
from vault.ledger import make_entry
from vault.ops.scrub import run_scrub
from vault.ops.scrubmodel import MAX_OBJECTS_LISTED, Finding, ScrubConfig, ScrubReport
from vault.storage.keystore_db import key_for
from vault.storage.sealing import HEADER_SIZE
from verify.canonical import MAX_ENTRY_BYTES

FAST = ScrubConfig(rate_mb_s=0.0)
SIZE = 5 * CHUNK + 100  # six chunks: the first fails while reading, the last when opening


async def acquire_sealed(env: Env, n: int) -> list[tuple[str, str]]:
    """``n`` secret items (sealed on arrival): (evidence id, sha256), in scrub order (by id)."""
    d = env.acq.docks["dock-01"]
    for i in range(n):
        path = d.path / f"DEV01_OFF123_2026010112{i:02d}00.mp4"
        path.write_bytes(plaintext(SIZE))
        await env.acq.acquire_path(d, path)
    rows = await env.rows("SELECT id::text AS id, sha256 FROM evidence ORDER BY id")
    assert len(rows) == n
    return [(r["id"], r["sha256"]) for r in rows]


async def sealed_path(env: Env, sha256: str) -> Path:
    key = await key_for(env.db.pool, sha256)
    assert key is not None, "the object is sealed"
    path: Path = env.storage.blobs.sealed_path(sha256, key.object_id)
    assert path.is_file()
    return path


def flip(path: Path, offset: int) -> None:
    path.chmod(0o600)  # objects are 0400; the intruder has write access to the store
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    path.chmod(0o400)


async def marks(env: Env) -> dict[str, tuple[str, Any]]:
    rows = await env.rows("SELECT id::text AS id, integrity, last_scrub_at FROM evidence")
    return {r["id"]: (r["integrity"], r["last_scrub_at"]) for r in rows}


async def failure_events(env: Env) -> list[dict[str, Any]]:
    rows = await env.rows(
        "SELECT payload FROM event_outbox WHERE type = 'integrity.failure' ORDER BY id"
    )
    return [json.loads(r["payload"]) for r in rows]


async def test_attack_flipped_byte_in_sealed_original_is_found_marked_and_the_pass_goes_on(
    pg_dsn: str, tmp_path: Path
) -> None:
    async with open_env(pg_dsn, tmp_path, [dock(tmp_path, label="secret")]) as env:
        items = await acquire_sealed(env, 5)
        content = env.storage.content
        clean = await run_scrub(env.ledger, content, FAST, mode="full")
        assert clean.ok and clean.objects == 5, clean
        first = await marks(env)

        # One byte flipped in chunk 0 of the middle item (fails while reading), one in the
        # last chunk of the fourth (fails when the object is opened): healthy items before,
        # between and after them.
        (early, early_sha), (late, late_sha) = items[1], items[3]
        flip(await sealed_path(env, early_sha), HEADER_SIZE + 10)
        flip(
            await sealed_path(env, late_sha), (await sealed_path(env, late_sha)).stat().st_size - 3
        )

        report = await run_scrub(env.ledger, content, FAST, mode="full")
        assert not report.ok
        assert report.evidence == 5 and report.objects == 5 and report.objects_ok == 3
        assert sorted(report.mismatch) == sorted([early, late]) and not report.missing
        named = {f.evidence_id: f for f in report.findings}
        assert set(named) == {early, late}
        for eid, sha in ((early, early_sha), (late, late_sha)):
            f = named[eid]
            assert (f.object, f.sha256, f.status) == ("original", sha, "mismatch")
            assert "authentication" in f.reason, f.reason

        after = await marks(env)
        assert after[early][0] == "mismatch" and after[late][0] == "mismatch"
        for eid, _sha in items:  # every item was checked, the ones after the damage too
            assert after[eid][1] > first[eid][1], f"{eid} was not checked"
            if eid not in (early, late):
                assert after[eid][0] == "ok"

        events = {e["evidence_id"]: e for e in await failure_events(env)}
        assert set(events) == {early, late}
        assert events[early]["integrity"] == "mismatch"
        assert events[early]["objects"][0]["sha256"] == early_sha
        assert events[early]["objects"][0]["object"] == "original"

        entry = json.loads(await env.ledger.entry(report.ledger_index or 0))
        assert entry["kind"] == "scrub" and entry["objects_failed"] == 2
        assert entry["mismatch"] == {"count": 2, "evidence": sorted([early, late])}
        assert entry["failed"]["count"] == 2
        assert {
            (o["evidence_id"], o["sha256"], o["status"]) for o in entry["failed"]["objects"]
        } == {
            (early, early_sha, "mismatch"),
            (late, late_sha, "mismatch"),
        }
        assert all("reason" not in o for o in entry["failed"]["objects"])  # no free text
        refs = await env.rows(
            "SELECT ref_id FROM ledger_refs WHERE ledger_idx = $1 ORDER BY ref_id",
            report.ledger_index,
        )
        assert [r["ref_id"] for r in refs] == sorted([early, late])


async def test_attack_missing_and_unreadable_sealed_objects_are_findings(
    pg_dsn: str, tmp_path: Path
) -> None:
    async with open_env(pg_dsn, tmp_path, [dock(tmp_path, label="secret")]) as env:
        items = await acquire_sealed(env, 4)
        content = env.storage.content
        (gone, gone_sha), (blocked, blocked_sha) = items[1], items[2]
        gone_path = await sealed_path(env, gone_sha)
        path = await sealed_path(env, blocked_sha)
        saved = {gone_path: gone_path.read_bytes(), path: path.read_bytes()}
        gone_path.unlink()
        path.chmod(0o600)
        path.unlink()
        path.mkdir()  # a directory in the object's place: an I/O error even for root

        report = await run_scrub(env.ledger, content, FAST, mode="full")
        assert report.objects == 4 and report.objects_ok == 2 and report.failed_objects == 2
        assert report.missing == [gone] and report.unreadable == [blocked]
        status = {f.evidence_id: (f.sha256, f.status) for f in report.findings}
        assert status == {gone: (gone_sha, "missing"), blocked: (blocked_sha, "unreadable")}

        got = await marks(env)
        # The vault cannot produce the bytes of either: both are marked missing.
        assert got[gone][0] == "missing" and got[blocked][0] == "missing"
        assert got[items[0][0]][0] == "ok" and got[items[3][0]][0] == "ok"
        assert got[items[3][0]][1] is not None  # checked after both failures
        events = {e["evidence_id"]: e for e in await failure_events(env)}
        assert set(events) == {gone, blocked}
        assert events[blocked]["objects"][0]["status"] == "unreadable"

        entry = json.loads(await env.ledger.entry(report.ledger_index or 0))
        assert entry["missing"]["evidence"] == [gone]
        assert entry["unreadable"]["evidence"] == [blocked]
        assert entry["failed"]["count"] == 2

        # Put back (e.g. from a backup): the next pass clears both marks.
        path.rmdir()
        for p, data in saved.items():
            p.write_bytes(data)
        healed = await run_scrub(env.ledger, content, FAST, mode="full")
        assert healed.ok and sorted(healed.restored) == sorted([gone, blocked])
        assert {m for m, _at in (await marks(env)).values()} == {"ok"}


def test_largest_scrub_entry_fits_the_ledger() -> None:
    """However many findings, the entry stays within the ledger's size limit."""
    r = ScrubReport("full", "schedule", started="2026-01-01T00:00:00.000Z")
    ids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(5000)]
    r.missing, r.mismatch, r.unreadable, r.restored = ids, ids, ids, ids
    r.findings = [Finding(i, "thumbnail", "f" * 64, "unreadable", "x" * 100, ids[0]) for i in ids]
    r.fsck_ok, r.fsck_first_bad_index = False, 10**12
    fields = r.entry_fields(50 << 20)
    assert len(fields["failed"]["objects"]) == MAX_OBJECTS_LISTED
    assert fields["failed"]["count"] == 5000 and fields["unreadable"]["count"] == 5000
    assert len(make_entry("scrub", fields).data) <= MAX_ENTRY_BYTES
