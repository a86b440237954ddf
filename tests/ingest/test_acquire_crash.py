"""Crash test: acquisitions in a child process killed with SIGKILL at random moments.

Afterwards every source file is either still in its dock or in the vault with a matching hash,
exactly one evidence row and exactly one ``acquired`` entry per content; no released file lacks
its receipt; the ledger passes fsck.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from tests.ingest.acquire_fixtures import ORIGIN
from vault.ledger.fsck import fsck
from verify.note import Signer

CHILD = Path(__file__).with_name("acquire_child.py")
RECEIPT = ".evault-receipt.json"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_child(spec_file: Path, kill_after: float | None) -> tuple[int, bool]:
    """Run the child; SIGKILL it ``kill_after`` s after it is ready. (exit code, killed)."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(spec_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    ready = False
    while not ready and proc.poll() is None and time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.05)[0]:
            ready = proc.stdout.readline().strip() == b"ready"
    if kill_after is not None and ready:
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return proc.returncode, True
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    return proc.returncode, False


async def test_acquire_survives_sigkill(pg_dsn: str, tmp_path: Path) -> None:
    rng = random.Random(20250101)
    signer = Signer.generate(ORIGIN)
    (tmp_path / "log.skey").write_text(signer.to_skey())
    docks = {"a": "move", "b": "delete"}
    files: dict[Path, bytes] = {}
    shared = [os.urandom(rng.randint(1, 20_000)) for _ in range(10)]  # offered twice each
    for dock_id, count in (("a", 200), ("b", 100)):
        root = tmp_path / "docks" / dock_id
        (root / "sub").mkdir(parents=True)
        for i in range(count):
            data = shared[i % 10] if i < 10 else os.urandom(rng.randint(0, 20_000))
            folder = root / "sub" if i % 3 == 0 else root
            files[folder / f"DEV{i:03d}_OFF{dock_id}_20250101120000_{i}.mp4"] = data
    for path, data in files.items():
        path.write_bytes(data)
    spec = {
        "dsn": pg_dsn,
        "tmp": str(tmp_path),
        "skey": str(tmp_path / "log.skey"),
        "docks": [
            {"id": d, "path": str(tmp_path / "docks" / d), "release": r} for d, r in docks.items()
        ],
    }
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))

    kills, started = 0, time.monotonic()
    while time.monotonic() - started < 60:
        _code, killed = run_child(spec_file, rng.uniform(0.1, 0.35))
        if not killed:
            break
        kills += 1
    else:
        run_child(spec_file, None)  # finish the remainder without interruption
    assert kills >= 5, f"only {kills} kills: the child finished too fast to test crashes"

    # Every source: released (move: in .released with a receipt; delete: gone, receipt stays).
    for path, data in files.items():
        dock_root = path.parents[1] if path.parent.name == "sub" else path.parent
        rel = path.relative_to(dock_root)
        if dock_root.name == "a":
            released = dock_root / ".released" / rel
            candidates = [released, *released.parent.glob(released.name + "~*")]
            hits = [p for p in candidates if p.is_file() and not p.name.endswith(RECEIPT)]
            assert any(p.read_bytes() == data for p in hits), path
        assert not path.exists(), f"{path} still in its dock after the final run"
    for released in (tmp_path / "docks" / "a" / ".released").rglob("*"):
        if released.name.startswith(".evault-"):
            continue  # a receipt's temp file left by a kill (never a dock file)
        if released.is_file() and not released.name.endswith(RECEIPT):
            receipt = json.loads(released.with_name(released.name + RECEIPT).read_bytes())
            assert receipt["sha256"] == sha(released.read_bytes())
    for path, data in files.items():
        if path.is_relative_to(tmp_path / "docks" / "b"):
            receipt = json.loads(path.with_name(path.name + RECEIPT).read_bytes())
            assert receipt["sha256"] == sha(data)

    # The vault: one object, one evidence row and one `acquired` entry per distinct content.
    contents = {sha(d): d for d in files.values()}
    for digest, data in contents.items():
        obj = tmp_path / "vault" / "objects" / "sha256" / digest[:2] / digest[2:4] / digest
        assert obj.read_bytes() == data
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT sha256 FROM evidence")
        assert sorted(r["sha256"] for r in rows) == sorted(contents)
        entries = [
            json.loads(bytes(r["data"]))
            for r in await conn.fetch("SELECT data FROM ledger_entries WHERE kind = 'acquired'")
        ]
        per_content = collections.Counter(e["sha256"] for e in entries)
        assert set(per_content) == set(contents) and set(per_content.values()) == {1}
        offers = await conn.fetchval("SELECT count(*) FROM evidence_offers")
        assert offers >= len(files)
        report = await fsck(conn, signer.verifier, tmp_path / "checkpoints.log")
        assert report.ok, report.problems
    finally:
        await conn.close()
    print(f"{kills} SIGKILLs, {len(files)} files, {offers} offers")
