"""Data-key wrapping and KEK rotation: re-wrap without re-encrypting, reads during and after."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from vault.errors import ConfigError, Conflict, IntegrityError
from vault.storage.kek import FileKekStore
from vault.storage.keyring import (
    ObjectKey,
    Rewrapped,
    WrappedKey,
    in_use,
    new_data_key,
    retire,
    rotate,
    rotate_all,
    unwrap,
    wrap,
)
from vault.storage.sealing import SealedReader, seal_stream


class MemoryRows:
    """In-memory ``KeyRows`` that yields to the event loop on every call, like a database."""

    def __init__(self) -> None:
        self.rows: dict[bytes, ObjectKey] = {}

    async def kek_ids(self) -> Sequence[str]:
        await asyncio.sleep(0)
        return sorted({r.wrapped.kek_id for r in self.rows.values()})

    async def under(self, kek_id: str, after: bytes | None, limit: int) -> Sequence[ObjectKey]:
        await asyncio.sleep(0)
        hits = sorted(
            (r for r in self.rows.values() if r.wrapped.kek_id == kek_id),
            key=lambda r: r.object_id,
        )
        return [r for r in hits if after is None or r.object_id > after][:limit]

    async def replace(self, change: Rewrapped) -> bool:
        await asyncio.sleep(0)
        if self.rows[change.object_id].wrapped != change.old:
            return False
        self.rows[change.object_id] = change.row
        return True

    async def in_use(self, kek_id: str) -> bool:
        await asyncio.sleep(0)
        return in_use(kek_id, self.rows.values())


def make_objects(
    store: FileKekStore, n: int
) -> tuple[dict[bytes, bytes], MemoryRows, dict[bytes, bytes]]:
    """n sealed objects: (object id -> sealed bytes, rows, object id -> plaintext)."""
    files: dict[bytes, bytes] = {}
    plain: dict[bytes, bytes] = {}
    rows = MemoryRows()
    for i in range(n):
        data = os.urandom(100 + 5000 * (i % 3))
        dek = new_data_key()
        out = io.BytesIO()
        res = seal_stream(dek, io.BytesIO(data), out, 4096)
        rows.rows[res.object_id] = ObjectKey(
            res.object_id, res.sha256, wrap(store.current(), dek, res.object_id, res.sha256)
        )
        files[res.object_id] = out.getvalue()
        plain[res.object_id] = data
    return files, rows, plain


def read(store: FileKekStore, rows: MemoryRows, files: dict[bytes, bytes], oid: bytes) -> bytes:
    row = rows.rows[oid]
    dek = unwrap(store, row.wrapped, row.object_id, row.sha256)
    return b"".join(SealedReader(dek, io.BytesIO(files[oid])).read_all())


def test_wrap_unwrap_binding(tmp_path: Path) -> None:
    store = FileKekStore(tmp_path / "kek")
    kek = store.ensure()
    dek, oid, sha = new_data_key(), os.urandom(16), "ab" * 32
    w = wrap(kek, dek, oid, sha)
    assert w.kek_id == kek.kek_id and dek not in w.blob
    assert unwrap(store, w, oid, sha) == dek
    with pytest.raises(IntegrityError):
        unwrap(store, w, oid, "cd" * 32)  # the row of another content address
    with pytest.raises(IntegrityError):
        unwrap(store, w, os.urandom(16), sha)  # another sealed object
    with pytest.raises(IntegrityError):
        unwrap(store, WrappedKey("../x", w.blob), oid, sha)
    with pytest.raises(ValueError):
        wrap(kek, dek, oid, "AB" * 32)
    assert len(new_data_key()) == 32 and new_data_key() != new_data_key()


def test_rotate_then_old_kek_not_needed(tmp_path: Path) -> None:
    d = tmp_path / "kek"
    store = FileKekStore(d)
    old = store.ensure()
    files, rows, plain = make_objects(store, 12)
    sealed_before = dict(files)
    assert in_use(old.kek_id, rows.rows.values())
    new = store.create()
    assert not in_use(new.kek_id, rows.rows.values())
    with pytest.raises(Conflict):
        retire(store, old.kek_id, rows.rows.values())
    for change in rotate(store, list(rows.rows.values()), new):
        rows.rows[change.object_id] = change.row
    assert not in_use(old.kek_id, rows.rows.values())
    assert in_use(new.kek_id, [r.wrapped for r in rows.rows.values()])
    assert list(rotate(store, rows.rows.values(), new)) == []  # idempotent
    retire(store, old.kek_id, rows.rows.values())
    store.destroy_retired(old.kek_id)  # the old key is gone for good
    fresh = FileKekStore(d)
    for oid in files:
        assert read(fresh, rows, files, oid) == plain[oid]
    assert files == sealed_before  # content never re-encrypted


def test_rotate_reports_undecryptable_rows(tmp_path: Path) -> None:
    store = FileKekStore(tmp_path / "kek")
    store.ensure()
    _, rows, _ = make_objects(store, 2)
    oid, row = next(iter(rows.rows.items()))
    rows.rows[oid] = ObjectKey(oid, row.sha256, WrappedKey(row.wrapped.kek_id, bytes(61)))
    with pytest.raises(IntegrityError):
        list(rotate(store, rows.rows.values(), store.create()))


async def test_rotate_all_under_load(tmp_path: Path) -> None:
    d = tmp_path / "kek"
    store = FileKekStore(d)
    first = store.ensure()
    files, rows, plain = make_objects(store, 40)
    reads = 0
    stop = asyncio.Event()

    async def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            for oid in list(files):
                assert read(store, rows, files, oid) == plain[oid]
                reads += 1
                await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    report = await rotate_all(store, rows, batch=7, grace_seconds=0.05)
    stop.set()
    await task
    assert reads > 40
    assert report.old_kek_ids == [first.kek_id] and report.retired == [first.kek_id]
    assert report.rewrapped == 40 and report.kept == []
    assert store.current().kek_id == report.new_kek_id
    assert not (d / f"{first.kek_id}.key").exists()
    store.destroy_retired(first.kek_id)
    fresh = FileKekStore(d)
    with pytest.raises(ConfigError):
        fresh.get(first.kek_id)
    for oid in files:
        assert read(fresh, rows, files, oid) == plain[oid]

    again = await rotate_all(store, rows, grace_seconds=0)  # a second rotation
    assert again.old_kek_ids == [report.new_kek_id] and again.retired == [report.new_kek_id]


async def test_rotate_all_keeps_kek_still_in_use(tmp_path: Path) -> None:
    store = FileKekStore(tmp_path / "kek")
    store.ensure()
    _, rows, _ = make_objects(store, 3)

    class StubbornRows(MemoryRows):
        async def replace(self, change: Rewrapped) -> bool:
            return False  # a concurrent writer always wins

    stubborn = StubbornRows()
    stubborn.rows = rows.rows
    report = await rotate_all(store, stubborn, grace_seconds=0, passes=2)
    assert report.retired == [] and report.kept == report.old_kek_ids
    assert store.get(report.old_kek_ids[0])  # still available
