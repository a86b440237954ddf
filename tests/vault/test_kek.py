"""Key-encryption keys: file store, external command store, wrapping bound to KEK id and object."""

from __future__ import annotations

import base64
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from vault.errors import ConfigError, Conflict, IntegrityError, Unavailable
from vault.storage import kek as kek_mod
from vault.storage.kek import WRAPPED_SIZE, CommandKekStore, FileKekStore, Kek, new_kek_id

DEK = os.urandom(32)
OID = os.urandom(16)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


# --- wrapping ---


def test_wrap_round_trip_and_binding() -> None:
    k = Kek("kek-20261126-00000001", os.urandom(32))
    blob = k.wrap(DEK, OID)
    assert len(blob) == WRAPPED_SIZE and DEK not in blob
    assert k.unwrap(blob, OID) == DEK
    assert k.wrap(DEK, OID) != blob  # random nonce
    with pytest.raises(IntegrityError):
        k.unwrap(blob, os.urandom(16))  # another object
    with pytest.raises(IntegrityError):
        Kek("kek-20261126-00000002", k.key).unwrap(blob, OID)  # same bytes, another id
    with pytest.raises(IntegrityError):
        Kek(k.kek_id, os.urandom(32)).unwrap(blob, OID)  # another key
    for i in range(WRAPPED_SIZE):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(IntegrityError):
            k.unwrap(bytes(bad), OID)
    for bad_len in (blob[:-1], blob + b"\0", b""):
        with pytest.raises(IntegrityError):
            k.unwrap(bad_len, OID)
    assert k.key.hex() not in repr(k)


def test_kek_ids() -> None:
    kid = new_kek_id()
    assert kid.startswith("kek-") and len(kid) == len("kek-20261126-") + 8
    for bad in ("../x", "", ".hidden", "a/b", "kek 1", "x" * 200):
        with pytest.raises(IntegrityError):
            Kek(bad, bytes(32))
    with pytest.raises(ConfigError):
        Kek("kek-1", bytes(31))


# --- file store ---


def test_file_store_create_modes_and_reload(tmp_path: Path) -> None:
    d = tmp_path / "data" / "keys" / "kek"
    store = FileKekStore(d)
    with pytest.raises(ConfigError):
        store.current()  # missing directory is reported, not created by reads
    first = store.ensure()
    assert mode(d) == 0o700 and mode(d.parent) == 0o700
    path = d / f"{first.kek_id}.key"
    assert mode(path) == 0o600 and mode(d / "CURRENT") == 0o600
    assert base64.b64decode(path.read_text()) == first.key
    assert store.ensure() == first
    second = store.create()
    assert second.kek_id != first.kek_id
    fresh = FileKekStore(d)  # another process
    assert fresh.current() == second
    assert fresh.get(first.kek_id) == first
    assert fresh.ids() == sorted([first.kek_id, second.kek_id])
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_file_store_never_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileKekStore(tmp_path / "kek")
    first = store.create()
    before = (tmp_path / "kek" / f"{first.kek_id}.key").read_bytes()
    ids = iter([first.kek_id, first.kek_id, first.kek_id])
    monkeypatch.setattr(kek_mod, "new_kek_id", lambda: next(ids))
    with pytest.raises(Conflict):
        store.create()  # every candidate id exists: refused, nothing replaced
    assert (tmp_path / "kek" / f"{first.kek_id}.key").read_bytes() == before
    assert FileKekStore(tmp_path / "kek").current() == first


def test_file_store_refuses_open_permissions(tmp_path: Path) -> None:
    d = tmp_path / "kek"
    k = FileKekStore(d).create()
    (d / f"{k.kek_id}.key").chmod(0o644)
    with pytest.raises(ConfigError, match="0600"):
        FileKekStore(d).get(k.kek_id)
    (d / f"{k.kek_id}.key").chmod(0o600)
    d.chmod(0o755)
    with pytest.raises(ConfigError, match="0700"):
        FileKekStore(d).get(k.kek_id)


def test_file_store_rejects_symlinked_key(tmp_path: Path) -> None:
    d = tmp_path / "kek"
    k = FileKekStore(d).create()
    p = d / f"{k.kek_id}.key"
    target = tmp_path / "elsewhere"
    p.rename(target)
    p.symlink_to(target)
    with pytest.raises(ConfigError):
        FileKekStore(d).get(k.kek_id)


def test_file_store_errors(tmp_path: Path) -> None:
    store = FileKekStore(tmp_path / "kek")
    store.create()
    with pytest.raises(ConfigError, match="missing"):
        store.get("kek-20000101-deadbeef")
    with pytest.raises(IntegrityError):
        store.get("../../etc/passwd")
    (tmp_path / "kek" / "kek-20000101-00000000.key").write_text("not base64!\n")
    (tmp_path / "kek" / "kek-20000101-00000000.key").chmod(0o600)
    with pytest.raises(ConfigError, match="base64"):
        store.get("kek-20000101-00000000")


def test_file_store_retire(tmp_path: Path) -> None:
    d = tmp_path / "kek"
    store = FileKekStore(d)
    old = store.create()
    with pytest.raises(Conflict):
        store.retire(old.kek_id)  # the current one
    new = store.create()
    store.retire(old.kek_id)
    assert not (d / f"{old.kek_id}.key").exists()
    assert mode(d / "retired" / f"{old.kek_id}.key") == 0o600 and mode(d / "retired") == 0o700
    with pytest.raises(ConfigError, match="retired"):
        store.get(old.kek_id)
    assert store.ids() == [new.kek_id]
    store.destroy_retired(old.kek_id)
    assert not (d / "retired" / f"{old.kek_id}.key").exists()


def test_ensure_refuses_keys_without_pointer(tmp_path: Path) -> None:
    d = tmp_path / "kek"
    FileKekStore(d).create()
    (d / "CURRENT").unlink()
    with pytest.raises(ConfigError, match="CURRENT"):
        FileKekStore(d).ensure()


# --- external command ---

SCRIPT = """
import base64, os, sys, time
state = os.environ["KEK_STATE"]
cmd = sys.argv[1]
if cmd == "current":
    print(open(os.path.join(state, "CURRENT")).read().strip())
elif cmd == "get":
    p = os.path.join(state, sys.argv[2])
    if not os.path.exists(p):
        print("unknown key", file=sys.stderr); sys.exit(3)
    print(base64.b64encode(open(p, "rb").read()).decode())
elif cmd == "create":
    kid = "kms-%d" % len(os.listdir(state))
    open(os.path.join(state, kid), "wb").write(os.urandom(32))
    open(os.path.join(state, "CURRENT"), "w").write(kid)
    print(kid)
elif cmd == "retire":
    os.rename(os.path.join(state, sys.argv[2]), os.path.join(state, "retired-" + sys.argv[2]))
elif cmd == "sleep":
    time.sleep(10)
elif cmd == "fail":
    print("kms down", file=sys.stderr); sys.exit(1)
elif cmd == "garbage":
    print("%%% not a key %%%")
"""


@pytest.fixture
def command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    script = tmp_path / "kms.py"
    script.write_text(textwrap.dedent(SCRIPT))
    state = tmp_path / "kms"
    state.mkdir()
    monkeypatch.setenv("KEK_STATE", str(state))
    return [sys.executable, str(script)]


def test_command_store_round_trip(command: list[str]) -> None:
    store = CommandKekStore(command, timeout=10)
    first = store.create()
    assert store.current() == first
    blob = first.wrap(DEK, OID)
    again = CommandKekStore(command)
    assert again.get(first.kek_id).unwrap(blob, OID) == DEK
    second = store.create()
    assert store.current() == second
    with pytest.raises(Conflict):
        store.retire(second.kek_id)
    store.retire(first.kek_id)
    with pytest.raises(ConfigError, match="no such key"):
        CommandKekStore(command).get(first.kek_id)


def test_command_failures(command: list[str], tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="kms down"):
        CommandKekStore([*command, "fail"]).get("kek-1")
    with pytest.raises(Unavailable, match="no answer"):
        CommandKekStore([*command, "sleep"], timeout=0.5).current()
    with pytest.raises(ConfigError, match="key id"):
        CommandKekStore([*command, "garbage"]).current()
    with pytest.raises(ConfigError, match="cannot run"):
        CommandKekStore([str(tmp_path / "no-such-command")]).current()
    with pytest.raises(ConfigError):
        CommandKekStore([])
