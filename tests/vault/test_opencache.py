"""Objects kept open between reads (``vault.storage.opencache``): used only for the key row
they were opened with and while young, bounded, and never closing a reader's descriptor."""

from __future__ import annotations

import os
from pathlib import Path

from vault.storage.keyring import ObjectKey, WrappedKey
from vault.storage.opencache import OpenEntry, OpenObjects

SHA = "ab" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _key(kek: str = "kek-1", blob: bytes = b"w" * 61) -> ObjectKey:
    return ObjectKey(bytes(16), SHA, WrappedKey(kek, blob))


def _entry(path: Path, key: ObjectKey | None, opened: float) -> OpenEntry:
    return OpenEntry(key, path.open("rb"), path, None, opened)


def test_an_entry_serves_only_its_own_key_row(tmp_path: Path) -> None:
    path = tmp_path / "obj"
    path.write_bytes(b"content")
    clock = Clock()
    kept = OpenObjects(clock=clock)
    entry = _entry(path, _key(), clock.now)
    kept.keep(SHA, entry)
    assert kept.get(SHA, _key()) is entry
    assert kept.get(SHA, _key(blob=b"x" * 61)) is None  # re-wrapped (rotation): dropped
    assert entry.f.closed and len(kept) == 0
    plain = _entry(path, None, clock.now)
    kept.keep(SHA, plain)
    assert kept.get(SHA, _key()) is None  # sealed meanwhile: the plain file is not used
    assert plain.f.closed


def test_an_entry_is_dropped_once_old_however_often_used(tmp_path: Path) -> None:
    path = tmp_path / "obj"
    path.write_bytes(b"content")
    clock = Clock()
    kept = OpenObjects(max_age=10, clock=clock)
    entry = _entry(path, None, clock.now)
    kept.keep(SHA, entry)
    for _ in range(10):
        clock.now += 1
        assert kept.get(SHA, None) is entry
    clock.now += 0.5
    assert kept.get(SHA, None) is None and entry.f.closed


def test_bounded_least_recently_used_first_and_forget(tmp_path: Path) -> None:
    clock = Clock()
    kept = OpenObjects(limit=3, clock=clock)
    entries = {}
    for i in range(4):
        path = tmp_path / f"o{i}"
        path.write_bytes(b"%d" % i)
        entries[f"{i:064x}"] = _entry(path, None, clock.now)
    names = list(entries)
    for name in names[:3]:
        kept.keep(name, entries[name])
    assert kept.get(names[0], None) is entries[names[0]]  # now the most recently used
    kept.keep(names[3], entries[names[3]])
    assert len(kept) == 3 and entries[names[1]].f.closed
    assert not entries[names[0]].f.closed
    kept.forget(names[0])
    assert entries[names[0]].f.closed and kept.get(names[0], None) is None
    kept.clear()
    assert len(kept) == 0 and all(e.f.closed for e in entries.values())


def test_a_reader_keeps_its_descriptor_after_the_entry_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "obj"
    path.write_bytes(b"0123456789")
    kept = OpenObjects()
    entry = _entry(path, None, kept.now())
    kept.keep(SHA, entry)
    mine = entry.dup()
    try:
        kept.clear()  # the entry's descriptor is closed ...
        assert entry.f.closed
        assert os.pread(mine.fileno(), 4, 3) == b"3456"  # ... the reader's is its own
    finally:
        mine.close()
