"""fsck finds tampering by a database insider or in checkpoints.log; many writers leave no gap."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from pathlib import Path

import asyncpg

from tests.ledger.ledger_fixtures import ORIGIN, TEST_MAC, open_ledger
from vault.keys.signing import create_signing_key
from vault.ledger import make_entry
from vault.ledger.fsck import fsck
from vault.ledger.tiles import consistency_proof
from verify.checkpoint import open_checkpoint
from verify.merkle import verify_consistency

WORKER = Path(__file__).with_name("append_worker.py")


async def _seed(dsn: str, tmp: Path, n: int = 600) -> None:
    async with open_ledger(dsn, tmp) as (ledger, _db):
        for start in range(0, n, 200):
            await ledger.append(
                [
                    make_entry("note", {"text": f"e{i}"}, {"who": i})
                    for i in range(start, start + 200)
                ]
            )
            await ledger.checkpoint()


async def _fsck(dsn: str, tmp: Path):  # type: ignore[no-untyped-def]
    async with open_ledger(dsn, tmp) as (ledger, db):
        async with db.pool.acquire() as conn:
            return await fsck(conn, ledger.verifier, tmp / "checkpoints.log", TEST_MAC)


async def _as_superuser(dsn: str, *sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for s in sql:
            await conn.execute(s)
    finally:
        await conn.close()


async def test_clean_ledger_passes_fsck(pg_dsn: str, tmp_path: Path) -> None:
    from verify.note import Signer

    signer = Signer.generate(ORIGIN)
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, db):
        for start in range(0, 600, 200):
            await ledger.append(
                [
                    make_entry("note", {"text": f"e{i}"}, {"who": i})
                    for i in range(start, start + 200)
                ]
            )
            await ledger.checkpoint()
        async with db.pool.acquire() as conn:
            report = await fsck(conn, ledger.verifier, tmp_path / "checkpoints.log", TEST_MAC)
    assert report.ok, report.problems
    assert report.size == 600 and report.checkpoints_checked == 6  # 3 in the db, 3 in the file
    assert report.batches_checked == 3


async def test_superuser_edit_with_triggers_disabled_is_found(pg_dsn: str, tmp_path: Path) -> None:
    from verify.note import Signer

    signer = Signer.generate(ORIGIN)
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, db):
        await ledger.append([make_entry("note", {"text": f"e{i}"}) for i in range(300)])
        await ledger.checkpoint()
    await _as_superuser(
        pg_dsn,
        "ALTER TABLE ledger_entries DISABLE TRIGGER ALL",
        """UPDATE ledger_entries SET data = convert_to('{"kind":"note","text":"forged","time":"2026-01-01T00:00:00.000Z","v":1}', 'UTF8') WHERE idx = 137""",
        "ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_append_only",
    )
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, db):
        async with db.pool.acquire() as conn:
            report = await fsck(conn, ledger.verifier, tmp_path / "checkpoints.log", TEST_MAC)
    assert not report.ok
    assert report.first_bad_index == 137, report.problems
    assert any("entry 137" in p for p in report.problems)


async def test_deleted_tail_is_found(pg_dsn: str, tmp_path: Path) -> None:
    from verify.note import Signer

    signer = Signer.generate(ORIGIN)
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        await ledger.append([make_entry("note", {"text": f"e{i}"}) for i in range(300)])
        await ledger.checkpoint()
    await _as_superuser(
        pg_dsn,
        "ALTER TABLE ledger_entries DISABLE TRIGGER ALL",
        "DELETE FROM ledger_entries WHERE idx >= 250",
        "ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_append_only",
    )
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, db):
        async with db.pool.acquire() as conn:
            report = await fsck(conn, ledger.verifier, tmp_path / "checkpoints.log", TEST_MAC)
    assert report.first_bad_index == 250, report.problems


async def test_altered_checkpoint_log_line_is_found(pg_dsn: str, tmp_path: Path) -> None:
    from verify.note import Signer

    signer = Signer.generate(ORIGIN)
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        await ledger.append([make_entry("note", {"text": f"e{i}"}) for i in range(10)])
        await ledger.checkpoint()
        await ledger.append([make_entry("note", {"text": "more"})])
        await ledger.checkpoint()
    log = tmp_path / "checkpoints.log"
    lines = log.read_text().splitlines()
    first = json.loads(lines[0])
    first["note"] = first["note"].replace("\n10\n", "\n9\n")
    lines[0] = json.dumps(first)
    log.write_text("\n".join(lines) + "\n")
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, db):
        async with db.pool.acquire() as conn:
            report = await fsck(conn, ledger.verifier, log, TEST_MAC)
    assert not report.ok
    assert any("line 1" in p for p in report.problems), report.problems


async def test_forged_database_checkpoint_missing_from_log_is_found(
    pg_dsn: str, tmp_path: Path
) -> None:
    from verify.note import Signer

    signer = Signer.generate(ORIGIN)
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, _db):
        await ledger.append([make_entry("note", {"text": "a"})])
        await ledger.checkpoint()
    (tmp_path / "checkpoints.log").write_text("")  # an insider's checkpoint never reaches the file
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, db):
        async with db.pool.acquire() as conn:
            report = await fsck(conn, ledger.verifier, tmp_path / "checkpoints.log", TEST_MAC)
    assert any("not in checkpoints.log" in p for p in report.problems)


async def test_several_processes_append_without_gaps(pg_dsn: str, tmp_path: Path) -> None:
    key = tmp_path / "ledger.skey"
    signer, _ = create_signing_key(key, ORIGIN)
    log = tmp_path / "checkpoints.log"
    per_worker = 400
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), pg_dsn, str(key), str(log), str(per_worker)
        )
        for _ in range(3)
    ]
    codes = [await p.wait() for p in procs]
    assert codes == [0, 0, 0]
    async with open_ledger(pg_dsn, tmp_path, signer=signer) as (ledger, db):
        rows = await db.pool.fetch("SELECT idx FROM ledger_entries ORDER BY idx")
        assert [r["idx"] for r in rows] == list(range(3 * per_worker))
        cps = await db.pool.fetch("SELECT size, root, note FROM ledger_checkpoints ORDER BY id")
        assert len(cps) >= 2
        async with db.pool.acquire() as conn:
            for prev, cur in itertools.pairwise(cps):
                open_checkpoint(cur["note"], ledger.verifier)
                assert cur["size"] >= prev["size"]
                p = await consistency_proof(conn, prev["size"], cur["size"])
                verify_consistency(
                    prev["size"], cur["size"], p, bytes(prev["root"]), bytes(cur["root"])
                )
            report = await fsck(conn, ledger.verifier, log, TEST_MAC)
    assert report.ok, report.problems
    assert report.batches_checked  # several processes' batches, contiguous and authenticated
