"""Hostile dock contents: links, races, FIFOs, empty files, unreadable files, hostile names.

Each is handled without a crash and without reading anything outside the dock.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ingest.acquire import Deferred
from ingest.quarantine import Quarantined
from ingest.receipts import Receipt
from tests.ingest.acquire_fixtures import NAME, ORIGIN, Env, dock, objects, open_acquirer, sha
from verify.note import Signer

CHILD = Path(__file__).with_name("acquire_child.py")


def assert_nothing_from_outside(env: Env) -> None:
    held = objects(env.store).values()
    assert Path("/etc/passwd").read_bytes() not in held


async def test_symlinks_are_quarantined_never_followed(pg_dsn: str, tmp_path: Path) -> None:
    d = dock(tmp_path)
    (d.path / "etc").symlink_to("/etc")
    (d.path / "passwd.mp4").symlink_to("/etc/passwd")
    passwd = Path("/etc/passwd").stat()
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        through = await env.acq.acquire_path(d, d.path / "etc" / "passwd")
        assert isinstance(through, Deferred) and through.reason == "link-race"
        for name in ("etc", "passwd.mp4"):
            out = await env.acq.acquire_path(d, d.path / name)
            assert isinstance(out, Quarantined) and out.reason == "symlink"
            assert out.stored_as is not None and out.stored_as.is_symlink()  # the link itself
            assert not (d.path / name).is_symlink()
            reason = json.loads(Path(str(out.stored_as) + ".reason.json").read_bytes())
            assert reason["reason"] == "symlink" and reason["ledger_index"] == out.ledger_index
        # The link targets were never moved or touched (quarantine moved the links only).
        assert Path("/etc/passwd").stat().st_ino == passwd.st_ino
        assert len(await env.rows("SELECT 1 FROM quarantine")) == 2
        assert len(await env.entries("quarantined")) == 2
        assert_nothing_from_outside(env)


async def test_file_replaced_by_a_symlink_while_offered(pg_dsn: str, tmp_path: Path) -> None:
    """A thread keeps swapping the name between a regular file and a link to /etc/passwd while
    it is acquired: every outcome is the regular file's bytes, a quarantined link, or a
    deferral; /etc/passwd never enters the vault."""
    d = dock(tmp_path)
    target = d.path / NAME
    stop = threading.Event()

    def flip() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            tmp = d.path / f".swap{i}"
            if i % 2:
                tmp.write_bytes(b"genuine footage")
            else:
                tmp.symlink_to("/etc/passwd")
            os.replace(tmp, target)

    flipper = threading.Thread(target=flip)
    flipper.start()
    kinds = set()
    try:
        async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
            for _ in range(40):
                out = await env.acq.acquire_path(d, target)
                if isinstance(out, Receipt):
                    assert out.sha256 == sha(b"genuine footage")
                    kinds.add("receipt")
                elif isinstance(out, Quarantined):
                    # What was moved is what the record says (the name may be swapped between
                    # the decision and the rename: then a regular file is "replaced").
                    assert out.stored_as is not None
                    assert out.stored_as.is_symlink() == (out.reason == "symlink"), out
                    assert out.reason in ("symlink", "replaced"), out
                    kinds.add("quarantined")
                else:
                    kinds.add(out.reason)
            stop.set()
            flipper.join()
            assert_nothing_from_outside(env)
    finally:
        stop.set()
        flipper.join()
    assert "quarantined" in kinds, kinds


async def test_fifo_hardlink_empty_and_hostile_names(pg_dsn: str, tmp_path: Path) -> None:
    d = dock(tmp_path)
    os.mkfifo(d.path / "pipe.mp4")
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"not for the vault")
    os.link(outside, d.path / "linked.mp4")
    (d.path / "empty.mp4").write_bytes(b"")
    hostile = os.fsencode(d.path) + b"/bad\nname\xff\xfe.mp4"
    refused = os.fsencode(d.path) + b"/evil\n\xff name.exe"
    for path in (hostile, refused):
        with open(path, "wb") as f:
            f.write(b"payload " + path[-6:])
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        fifo = await env.acq.acquire_path(d, d.path / "pipe.mp4")
        assert isinstance(fifo, Quarantined) and fifo.reason == "not-regular"
        link = await env.acq.acquire_path(d, d.path / "linked.mp4")
        assert isinstance(link, Quarantined) and link.reason == "hardlink"
        assert outside.read_bytes() == b"not for the vault"
        # Decision: an empty recording is still evidence.
        empty = await env.acq.acquire_path(d, d.path / "empty.mp4")
        assert isinstance(empty, Receipt) and empty.sha256 == sha(b"") and empty.size == 0
        named = await env.acq.acquire_path(d, hostile)
        assert isinstance(named, Receipt) and named.kind == "acquired"
        assert os.path.exists(hostile + b".evault-receipt.json")
        row = (
            await env.rows(
                "SELECT file_name, metadata FROM evidence WHERE sha256 = $1", named.sha256
            )
        )[0]
        assert row["file_name"] == "bad\nname\\xff\\xfe.mp4"
        assert json.loads(row["metadata"])["source_path_b64"] is not None
        bad = await env.acq.acquire_path(d, refused)
        assert isinstance(bad, Quarantined) and bad.reason == "extension"
        assert bad.stored_as is not None and bad.stored_as.name.endswith("-evil___name.exe")
        assert not os.path.exists(refused)
        assert b"not for the vault" not in objects(env.store).values()
        assert_nothing_from_outside(env)


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root to chown the file to another user (as non-root, run as that user)",
)
async def test_unreadable_file_is_quarantined(pg_dsn: str, tmp_path: Path) -> None:
    """A 0600 file owned by ``nobody``: the acquisition runs in a child process without the
    capabilities that let root read any file (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so the
    kernel really refuses the open."""
    d = dock(tmp_path)
    secret = d.path / NAME
    secret.write_bytes(b"owned by somebody else")
    nobody = pwd.getpwnam("nobody")
    os.chown(secret, nobody.pw_uid, nobody.pw_gid)
    secret.chmod(0o600)
    signer = Signer.generate(ORIGIN)
    (tmp_path / "log.skey").write_text(signer.to_skey())
    spec = {
        "dsn": pg_dsn,
        "tmp": str(tmp_path),
        "skey": str(tmp_path / "log.skey"),
        "docks": [{"id": d.id, "path": str(d.path), "release": "keep"}],
        "paths": [str(secret)],
        "drop_dac": True,
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, str(CHILD), str(tmp_path / "spec.json")],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    outcome = json.loads(proc.stdout.splitlines()[-1])
    assert outcome["quarantined"] == "unreadable", outcome
    stored = Path(outcome["stored_as"])
    assert stored.read_bytes() == b"owned by somebody else"  # moved, not read (we are root)
    assert not secret.exists()
    objects_dir = tmp_path / "vault" / "objects"
    assert not [p for p in objects_dir.rglob("*") if p.is_file()]
