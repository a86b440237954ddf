"""`evault scrub` by hand: prints the summary, exits 1 on any failure."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

EVAULT = [sys.executable, "-m", "api.cli"]


def evault(data: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EVAULT, "--data", str(data), *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_scrub_command_reports_and_exits_by_outcome(pg_dsn: str, tmp_path: Path) -> None:
    env = dict(os.environ, EVAULT_DATABASE_DSN=pg_dsn, EVAULT_SCRUB_RATE_MB_S="0")
    data = tmp_path / "data"
    assert evault(data, env, "init").returncode == 0
    src = tmp_path / "DEV01_OFF123_20260101120000.mp4"
    src.write_bytes(os.urandom(100_000))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    ingested = evault(data, env, "ingest", str(src), "--dock", "dock-01")
    assert ingested.returncode == 0, ingested.stderr
    assert sha in ingested.stdout

    ok = evault(data, env, "scrub", "--all")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "full pass" in ok.stdout and "ledger fsck: ok" in ok.stdout
    assert "result: ok" in ok.stdout

    obj = data / "vault" / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
    obj.chmod(0o600)
    obj.write_bytes(b"\x00" + obj.read_bytes()[1:])
    obj.chmod(0o400)
    bad = evault(data, env, "scrub", "--sample", "1")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "MISMATCH: evidence" in bad.stdout and "INTEGRITY FAILURE" in bad.stdout
    assert f"original sha256 {sha}" in bad.stdout  # the finding names the object
    assert "sample pass" in bad.stdout
