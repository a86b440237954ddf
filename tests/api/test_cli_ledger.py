"""The `evault` command line, run as a user would, against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

EVAULT = [sys.executable, "-m", "api.cli"]


def run(
    data: Path, *args: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*EVAULT, "--data", str(data), *args], capture_output=True, text=True, env=env, timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"evault {' '.join(args)} failed: {proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def cli_env(pg_dsn: str) -> dict[str, str]:
    env = dict(os.environ)
    env["EVAULT_DATABASE_DSN"] = pg_dsn
    return env


def test_init_creates_key_once_and_prints_vkey(tmp_path: Path, cli_env: dict[str, str]) -> None:
    data = tmp_path / "data"
    first = run(data, "init", env=cli_env)
    key = data / "keys" / "ledger.skey"
    assert key.stat().st_mode & 0o777 == 0o600
    before = key.read_bytes()
    second = run(data, "init", env=cli_env)
    assert key.read_bytes() == before, "a second init must never overwrite the key"
    vkey = first.stdout.strip().splitlines()[-1]
    assert vkey == second.stdout.strip().splitlines()[-1]
    assert run(data, "ledger", "vkey", env=cli_env).stdout.strip() == vkey


def test_note_proof_entry_and_fsck(tmp_path: Path, cli_env: dict[str, str], pg_dsn: str) -> None:
    data = tmp_path / "data"
    run(data, "init", env=cli_env)
    out = run(data, "ledger", "note", "first", "second", "third", env=cli_env)
    first, second, third = (int(i) for i in out.stdout.split())
    assert second == first + 1 and third == first + 2  # after the seeded admin's entry
    entry = run(data, "ledger", "entry", str(second), env=cli_env).stdout
    assert json.loads(entry)["text"] == "second"
    proof = run(data, "ledger", "proof", str(second), env=cli_env).stdout
    assert proof.startswith(f"c2sp.org/tlog-proof@v1\nindex {second}\n")
    cp = run(data, "ledger", "checkpoint", env=cli_env).stdout
    assert cp.splitlines()[1] == str(third + 1)
    cons = run(data, "ledger", "consistency", "1", str(third + 1), env=cli_env).stdout.split()
    assert cons
    assert f"ok: {third + 1} entries" in run(data, "ledger", "fsck", env=cli_env).stdout

    # A database insider rewrites entry 1: fsck exits non-zero and names index 1.
    import asyncio

    async def tamper() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ALL")
            await conn.execute(
                "UPDATE ledger_entries SET data = convert_to('{}', 'UTF8') WHERE idx = $1", second
            )
        finally:
            await conn.close()

    asyncio.run(tamper())
    bad = run(data, "ledger", "fsck", env=cli_env, check=False)
    assert bad.returncode == 1
    assert f"first bad index {second}" in bad.stdout


def test_unknown_entry_is_a_clear_error(tmp_path: Path, cli_env: dict[str, str]) -> None:
    data = tmp_path / "data"
    run(data, "init", env=cli_env)
    proc = run(data, "ledger", "entry", "99", env=cli_env, check=False)
    assert proc.returncode == 2 and "no ledger entry 99" in proc.stderr


def test_bad_config_is_reported_with_key(tmp_path: Path, cli_env: dict[str, str]) -> None:
    data = tmp_path / "data"
    run(data, "init", env=cli_env)
    cfg = data / "evault.toml"
    good = cfg.read_text()
    cfg.write_text(good + "\n[extra]\nx = 1\n")
    proc = run(data, "serve", env=cli_env, check=False)  # refused at load, nothing started
    assert proc.returncode == 2 and "unknown key 'extra'" in proc.stderr


def test_vkey_reads_only_the_ledger_section_and_checks_it(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    data = tmp_path / "data"
    run(data, "init", env=cli_env)
    vkey = run(data, "ledger", "vkey", env=cli_env).stdout.strip()
    cfg = data / "evault.toml"
    good = cfg.read_text()
    cfg.write_text(good + "\n[extra]\nx = 1\n")  # another section: not vkey's business
    assert run(data, "ledger", "vkey", env=cli_env).stdout.strip() == vkey
    cfg.write_text(good.replace("[ledger]\n", "[ledger]\nkey_flie = 'x'\n", 1))
    proc = run(data, "ledger", "vkey", env=cli_env, check=False)
    assert proc.returncode == 2 and "unknown key 'ledger.key_flie'" in proc.stderr, proc.stderr
    moved = data / "elsewhere.skey"
    (data / "keys" / "ledger.skey").rename(moved)
    (data / "keys" / "ledger.vkey").rename(data / "elsewhere.vkey")
    env = {**cli_env, "EVAULT_LEDGER_KEY_FILE": str(moved)}
    cfg.write_text(good)
    assert run(data, "ledger", "vkey", env=env).stdout.strip() == vkey  # overrides apply


def test_attack_rolled_back_principal_is_named_by_fsck_state(
    tmp_path: Path, cli_env: dict[str, str], pg_dsn: str
) -> None:
    data = tmp_path / "data"
    run(data, "init", env=cli_env)
    ok = run(data, "ledger", "fsck", "--state", env=cli_env)
    assert "0 finding(s)" in ok.stdout
    admin = run(data, "principal", "list", env=cli_env).stdout.split()[0]

    import asyncio

    async def tamper() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("SET ROLE evault_app")  # the service's own role suffices
            await conn.execute("UPDATE principals SET clearance = 0 WHERE id = $1", admin)
        finally:
            await conn.close()

    asyncio.run(tamper())
    bad = run(data, "ledger", "fsck", "--state", env=cli_env, check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"different: principals [id={admin}] clearance: table 0, ledger 4" in bad.stdout
    lines = run(data, "ledger", "fsck", "--state", "--json", env=cli_env, check=False).stdout
    found = [json.loads(line) for line in lines.splitlines()]
    assert {"table": "principals", "key": {"id": admin}, "column": "clearance"}.items() <= found[
        0
    ].items()
