"""`evault backup` and `evault restore` with a few hundred evidence items, on the embedded server
(while a service runs and appends) and on a PostgreSQL reached by DSN (restored into a new
database on the same server)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.ops.ops_fixtures import evault, running_service
from vault.db import with_database
from vault.errors import IntegrityError
from vault.ops import backupfmt as fmt
from verify.checkpoint import open_checkpoint
from verify.merkle import verify_consistency
from verify.note import parse_vkey


def make_files(folder: Path, n: int, tag: str) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        path = (
            folder
            / f"DEV{i % 3}_OFF{i % 5}_20260101{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}.mp4"
        )
        path.write_bytes(os.urandom(48) + tag.encode())
        names.append(str(path))
    return names


def object_files(root: Path) -> list[Path]:
    return [p for p in (root / "objects" / "sha256").rglob("*") if p.is_file()]


def check_next_checkpoint(restored: Path, backup: Path, env: dict[str, str]) -> None:
    """The restored ledger's next checkpoint is consistent with the backup's last one."""
    manifest = json.loads((backup / "manifest.json").read_text())
    verifier = parse_vkey(manifest["vkey"])
    old = open_checkpoint(manifest["ledger"]["checkpoint"], verifier)
    evault(restored, "ledger", "note", "after the restore", env=env)
    new = open_checkpoint(evault(restored, "ledger", "checkpoint", env=env).stdout, verifier)
    assert new.size > old.size
    lines = evault(restored, "ledger", "consistency", str(old.size), str(new.size), env=env)
    proof = [base64.b64decode(x) for x in lines.stdout.split()]
    verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)


def check_restored_store(restored: Path, want: int) -> None:
    objects = object_files(restored / "vault")
    assert len(objects) >= want
    for p in objects:
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name
        assert p.stat().st_mode & 0o777 == 0o400


def test_backup_while_serving_then_restore_embedded(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVAULT_")}
    data, backup, restored = tmp_path / "data", tmp_path / "backup", tmp_path / "restored"
    passfile = tmp_path / "pass"
    passfile.write_text("correct horse battery staple\n")
    with running_service(data, None):
        evault(
            data, "ingest", *make_files(tmp_path / "in1", 250, "a"), "--dock", "dock-01", env=env
        )
        # More acquisitions (and checkpoints by the service) while the backup runs.
        more = make_files(tmp_path / "in2", 80, "b")
        writer = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "--data", str(data), "ingest", *more,
             "--dock", "dock-01"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            out = evault(data, "backup", "--out", str(backup), "--with-key",
                         "--passphrase-file", str(passfile), env=env).stdout  # fmt: skip
        finally:
            writer.wait(120)
        assert "signing key and host MAC key included, encrypted" in out
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["ledger"]["size"] >= 250 and manifest["objects"]["count"] >= 250
    assert b"PRIVATE" not in (backup / "signing-key.enc").read_bytes()
    mac_hex = (data / "keys" / "ledger.mac").read_bytes().strip()
    sealed_mac = (backup / "mac-key.enc").read_bytes()
    assert mac_hex not in sealed_mac and bytes.fromhex(mac_hex.decode()) not in sealed_mac
    assert set(manifest["files"]) >= {"signing-key.enc", "mac-key.enc"}

    # Restore refuses a non-empty target and a wrong passphrase, and writes nothing then.
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    refused = evault(busy, "restore", str(backup), "--passphrase-file", str(passfile),
                     env=env, check=False)  # fmt: skip
    assert refused.returncode == 2 and "not empty" in refused.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    refused = evault(tmp_path / "never", "restore", str(backup), "--passphrase-file",
                     str(wrong), env=env, check=False)  # fmt: skip
    assert refused.returncode == 2 and "wrong passphrase" in refused.stderr
    assert not (tmp_path / "never").exists()

    out = evault(restored, "restore", str(backup), "--passphrase-file", str(passfile), env=env)
    assert "fsck clean" in out.stdout, out.stdout
    assert evault(restored, "ledger", "fsck", env=env).stdout.startswith("ok:")
    key = restored / "keys" / "ledger.skey"
    assert key.read_bytes() == (data / "keys" / "ledger.skey").read_bytes()
    assert key.stat().st_mode & 0o777 == 0o600
    mac = restored / "keys" / "ledger.mac"  # beside the signing key, the very same secret
    assert mac.read_bytes() == (data / "keys" / "ledger.mac").read_bytes()
    assert mac.stat().st_mode & 0o777 == 0o600
    assert "no host MAC key restored" not in out.stdout
    check_restored_store(restored, manifest["objects"]["count"])
    check_next_checkpoint(restored, backup, env)

    # A damaged object in a backup is named, and the restore does not pass.
    damaged = tmp_path / "damaged"
    shutil.copytree(backup, damaged)
    victim = object_files(damaged)[0]
    victim.chmod(0o600)
    victim.write_bytes(b"tampered" + victim.read_bytes()[8:])
    out = evault(tmp_path / "r2", "restore", str(damaged), "--passphrase-file", str(passfile),
                 env=env, check=False)  # fmt: skip
    assert out.returncode == 1 and f"BAD OBJECT: objects/sha256/{victim.name[:2]}" in out.stdout


async def test_backup_and_restore_through_a_dsn(
    tmp_path: Path, pg_dsn: str, pg_admin_dsn: str
) -> None:
    env = {"EVAULT_DATABASE_DSN": pg_dsn}
    data, backup, restored = tmp_path / "data", tmp_path / "backup", tmp_path / "restored"
    init = evault(data, "init", env=env).stdout
    assert f"host MAC key {data / 'keys' / 'ledger.mac'}" in init
    assert "keep it with the signing key" in init and "--with-key" in init
    evault(data, "ingest", *make_files(tmp_path / "in", 200, "d"), "--dock", "dock-01", env=env)
    evault(data, "ledger", "note", "before the backup", env=env)
    out = evault(data, "backup", "--out", str(backup), "--copy", env=env).stdout
    assert "signing key and host MAC key NOT included" in out and "(0 hard-linked)" in out
    assert "ledger.mac" in out  # says to keep it backed up elsewhere
    assert not (backup / "signing-key.enc").exists() and not (backup / "mac-key.enc").exists()

    name = "evault_r_" + secrets.token_hex(6)
    target = {"EVAULT_DATABASE_DSN": with_database(pg_admin_dsn, name)}
    try:
        # Without the key the restore still checks everything with the backup's verifier key.
        out = evault(restored, "restore", str(backup), env=target).stdout
        assert "fsck clean" in out and "no signing key restored" in out
        assert "no host MAC key restored: copy keys/ledger.mac by hand from the old host" in out
        assert "cannot verify its state" in out
        assert not (restored / "keys" / "ledger.mac").exists()
        (restored / "keys").mkdir(mode=0o700, exist_ok=True)
        shutil.copy2(data / "keys" / "ledger.skey", restored / "keys" / "ledger.skey")
        # Without the MAC key the restored service does not start (it cannot verify its state).
        refused = evault(restored, "ledger", "note", "no mac key", env=target, check=False)
        assert refused.returncode == 2 and "ledger.mac" in refused.stderr
        shutil.copy2(data / "keys" / "ledger.mac", restored / "keys" / "ledger.mac")
        check_restored_store(restored, 200)
        check_next_checkpoint(restored, backup, target)
        conn = await asyncpg.connect(target["EVAULT_DATABASE_DSN"])
        try:
            assert await conn.fetchval("SELECT count(*) FROM evidence") == 200
        finally:
            await conn.close()
        # A second restore into the now non-empty database is refused.
        again = evault(tmp_path / "again", "restore", str(backup), env=target, check=False)
        assert again.returncode == 2 and "not empty" in again.stderr
    finally:
        admin = await asyncpg.connect(pg_admin_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


def test_attack_mac_key_file_passed_off_as_the_signing_key_does_not_open() -> None:
    """Each key file is bound to its log and to which key it is: swapping them, another log's
    file, a wrong passphrase or a flipped byte all fail before anything is written."""
    vkey = "test.evidence-vault.local/ledger+01234567+AAAA"
    mac = b"07" * 32 + b"\n"
    sealed = fmt.seal_key(mac, b"a long passphrase", vkey, fmt.MAC_KEY)
    assert fmt.open_key(sealed, b"a long passphrase", vkey, fmt.MAC_KEY) == mac
    with pytest.raises(IntegrityError):
        fmt.open_key(sealed, b"a long passphrase", vkey, fmt.KEY)  # swapped
    with pytest.raises(IntegrityError):
        fmt.open_key(sealed, b"another passphrase", vkey, fmt.MAC_KEY)
    with pytest.raises(IntegrityError):
        fmt.open_key(sealed, b"a long passphrase", vkey.replace("01", "02"), fmt.MAC_KEY)
    doc = json.loads(sealed)
    raw = bytearray(base64.b64decode(doc["ciphertext"]))
    raw[0] ^= 1
    doc["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(IntegrityError):
        fmt.open_key(json.dumps(doc).encode(), b"a long passphrase", vkey, fmt.MAC_KEY)
