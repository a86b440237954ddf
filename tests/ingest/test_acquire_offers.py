"""Acquire, re-offer, release policies and receipts, on a real database and real files."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ingest.receipts import Receipt, read_receipt
from tests.ingest.acquire_fixtures import NAME, dock, objects, open_acquirer, sha
from vault.errors import BadRequest, IntegrityError, NotFound
from vault.ledger.fsck import fsck
from verify.checkpoint import open_checkpoint


def receipt_at(path: Path) -> dict[str, object]:
    data = json.loads((path.parent / (path.name + ".evault-receipt.json")).read_bytes())
    assert isinstance(data, dict)
    return data


async def test_acquire_then_reoffer_under_another_name(pg_dsn: str, tmp_path: Path) -> None:
    d = dock(tmp_path)
    data = os.urandom(100_000)
    first, second = d.path / NAME, d.path / "other-name.mp4"
    first.write_bytes(data)
    second.write_bytes(data)
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        r1 = await env.acq.acquire_path(d, first)
        r2 = await env.acq.acquire_path(d, second)
        assert isinstance(r1, Receipt) and isinstance(r2, Receipt)
        assert (r1.kind, r2.kind) == ("acquired", "reoffered")
        assert r1.sha256 == r2.sha256 == sha(data) and r1.evidence_id == r2.evidence_id
        assert objects(env.store) == {sha(data): data}  # stored once
        ev = await env.rows("SELECT * FROM evidence")
        assert len(ev) == 1 and ev[0]["device_id"] == "DEV01" and ev[0]["officer_id"] == "OFF123"
        offers = await env.rows("SELECT reoffer, ledger_idx FROM evidence_offers ORDER BY id")
        assert [(o["reoffer"], o["ledger_idx"]) for o in offers] == [
            (False, r1.ledger_index),
            (True, r2.ledger_index),
        ]
        acquired, reoffered = await env.entries("acquired"), await env.entries("reoffered")
        assert len(acquired) == 1 and len(reoffered) == 1
        raw = json.dumps(acquired + reoffered)
        assert "OFF123" not in raw and "DEV01" not in raw and "other-name" not in raw
        assert set(acquired[0]["commitments"]) >= {"file_name", "officer_id", "device_id"}
        # Receipts: beside the source, naming a checkpoint that covers the entry.
        for path, r in ((first, r1), (second, r2)):
            on_disk = receipt_at(path)
            assert on_disk["sha256"] == sha(data) and on_disk["ledger_index"] == r.ledger_index
            cp = open_checkpoint(str(on_disk["checkpoint"]), env.ledger.verifier)
            assert cp.size > r.ledger_index
        # Kept sources with a matching receipt are not taken again.
        again = await env.acq.acquire_path(d, first)
        assert again == r1
        assert len(await env.rows("SELECT 1 FROM evidence_offers")) == 2
        async with env.db.pool.acquire() as conn:
            assert (await fsck(conn, env.ledger.verifier, env.ledger.log_path)).ok


async def test_rewritten_kept_file_is_taken_again(pg_dsn: str, tmp_path: Path) -> None:
    d = dock(tmp_path)
    src = d.path / NAME
    src.write_bytes(b"one")
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        r1 = await env.acq.acquire_path(d, src)
        src.write_bytes(b"two, longer")
        r2 = await env.acq.acquire_path(d, src)
        assert isinstance(r1, Receipt) and isinstance(r2, Receipt)
        assert r2.kind == "acquired" and r2.sha256 == sha(b"two, longer")
        assert receipt_at(src)["sha256"] == r2.sha256


@pytest.mark.parametrize("policy", ["keep", "move", "delete"])
async def test_release_policies(pg_dsn: str, tmp_path: Path, policy: str) -> None:
    d = dock(tmp_path, release=policy)
    (d.path / "sub").mkdir()
    files = {d.path / NAME: b"a" * 5000, d.path / "sub" / "b.mov": b"b" * 7000}
    for path, data in files.items():
        path.write_bytes(data)
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        for path in files:
            assert isinstance(await env.acq.acquire_path(d, path), Receipt)
        # The same name offered again after the first was released: never overwritten.
        (d.path / NAME).write_bytes(b"c" * 10)
        assert isinstance(await env.acq.acquire_path(d, d.path / NAME), Receipt)
        for path, data in files.items():
            rel = path.relative_to(d.path)
            if policy == "keep":
                assert path.read_bytes() in (data, b"c" * 10)
                assert receipt_at(path)["sha256"] in (sha(data), sha(b"c" * 10))
            elif policy == "delete":
                assert not path.exists()
                assert receipt_at(path)["sha256"] in (sha(data), sha(b"c" * 10))
            else:
                moved = d.path / ".released" / rel
                assert moved.read_bytes() == data and receipt_at(moved)["sha256"] == sha(data)
                assert not path.exists()
        if policy == "move":
            again = [p for p in (d.path / ".released").iterdir() if p.name.startswith(NAME + "~")]
            names = sorted(p.name for p in again)
            assert len(names) == 2 and names[1].endswith(".evault-receipt.json")
            assert (d.path / ".released" / names[0]).read_bytes() == b"c" * 10
        assert len(await env.rows("SELECT 1 FROM evidence")) == 3


async def test_file_outside_the_dock_is_kept(pg_dsn: str, tmp_path: Path) -> None:
    d = dock(tmp_path, release="delete")
    usb = tmp_path / "usb"
    usb.mkdir()
    src = usb / NAME
    src.write_bytes(b"from a stick")
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        r = await env.acq.acquire_path(d, src)
        assert isinstance(r, Receipt) and src.read_bytes() == b"from a stick"
        fd = os.open(usb, os.O_RDONLY)
        try:
            assert read_receipt(fd, NAME.encode()) == r
        finally:
            os.close(fd)


async def test_acquire_stream_same_path_after_storing(pg_dsn: str, tmp_path: Path) -> None:
    d = dock(tmp_path)
    data = os.urandom(70_000)
    (d.path / NAME).write_bytes(data)

    async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        pushed = await env.acq.acquire_stream(
            d.id, NAME, chunks(data[:1000], data[1000:]), sha(data), None, {"seq": 3}
        )
        assert pushed.kind == "acquired" and pushed.source is None and pushed.sha256 == sha(data)
        seq = await env.rows("SELECT metadata->'seq' AS seq FROM evidence")
        assert [json.loads(r["seq"]) for r in seq] == [3]
        from_dock = await env.acq.acquire_path(d, d.path / NAME)
        assert isinstance(from_dock, Receipt) and from_dock.kind == "reoffered"
        with pytest.raises(BadRequest):
            await env.acq.acquire_stream(d.id, "x.exe", chunks(b"x"), None, None)
        with pytest.raises(IntegrityError):
            await env.acq.acquire_stream(d.id, "y.mp4", chunks(b"y"), sha(b"z"), None)
        with pytest.raises(NotFound):
            await env.acq.acquire_stream("nope", "y.mp4", chunks(b"y"), None, None)
        assert len(await env.rows("SELECT 1 FROM evidence")) == 1
        assert len(await env.rows("SELECT 1 FROM evidence_offers")) == 2
