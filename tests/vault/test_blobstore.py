"""BlobStore: real files, real fsync, under tmp_path."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import stat
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from vault.errors import BadRequest, IntegrityError, NotFound, TooLarge, Unavailable
from vault.storage.blobstore import BlobStore, StoredBlob

CHUNK = 4096


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store", chunk_size=CHUNK)


def make_file(tmp_path: Path, data: bytes, name: str = "src.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def ingest(store: BlobStore, path: Path, **kw: int | None) -> StoredBlob:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        return store.ingest_file(fd, **kw)
    finally:
        os.close(fd)


def object_files(store: BlobStore) -> list[Path]:
    return sorted(p for p in (store.root / "objects").rglob("*") if not p.is_dir())


def tmp_files(store: BlobStore) -> list[Path]:
    return sorted((store.root / "tmp").iterdir())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class FailAt:
    """WriteFault that fails the first write at or past ``offset``."""

    def __init__(self, offset: int, err: int = errno.ENOSPC) -> None:
        self.offset, self.err, self.calls = offset, err, 0

    def before_write(self, offset: int) -> None:
        self.calls += 1
        if offset >= self.offset:
            raise OSError(self.err, os.strerror(self.err))


async def agen(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize("size", [1, CHUNK - 1, CHUNK, CHUNK + 1, 10 * CHUNK + 3])
def test_roundtrip(store: BlobStore, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    blob = ingest(store, make_file(tmp_path, data))
    assert blob == StoredBlob(hashlib.sha256(data).hexdigest(), size, blob.path, existed=False)
    with store.open(blob.sha256) as f:
        assert f.read() == data
    assert store.exists(blob.sha256)
    assert store.verify(blob.sha256)
    assert tmp_files(store) == []


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
def test_multi_mib_file_both_write_modes(tmp_path: Path, direct: bool) -> None:
    data = os.urandom((9 << 20) + 5)  # > the 8 MiB writeback hint, unaligned tail
    store = BlobStore(tmp_path / "store", direct=direct)
    blob = ingest(store, make_file(tmp_path, data))
    assert blob.sha256 == hashlib.sha256(data).hexdigest() and blob.size == len(data)
    assert blob.path.read_bytes() == data


def test_chunk_size_must_be_aligned(tmp_path: Path) -> None:
    for bad in (0, 1000, 4097, 16 << 20):
        with pytest.raises(ValueError):
            BlobStore(tmp_path / "store", chunk_size=bad)


def test_content_address_layout_and_modes(store: BlobStore, tmp_path: Path) -> None:
    blob = ingest(store, make_file(tmp_path, b"evidence"))
    h = blob.sha256
    assert blob.path == store.root / "objects" / "sha256" / h[:2] / h[2:4] / h
    assert blob.path == store.path_of(h) == store.path_of(h.upper())
    assert object_files(store) == [blob.path]
    assert mode(blob.path) == 0o400
    for d in [store.root, store.root / "tmp", *list(blob.path.parents)[:4]]:
        assert mode(d) == 0o700, d


def test_source_fd_position_is_not_used_or_moved(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK)
    fd = os.open(make_file(tmp_path, data), os.O_RDONLY)
    try:
        os.lseek(fd, 100, os.SEEK_SET)
        blob = store.ingest_file(fd)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 100
    finally:
        os.close(fd)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()


def test_second_ingest_is_recognised(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK + 5)
    first = ingest(store, make_file(tmp_path, data, "a"))
    second = ingest(store, make_file(tmp_path, data, "b"))
    assert not first.existed and second.existed
    assert (second.sha256, second.size, second.path) == (first.sha256, first.size, first.path)
    assert object_files(store) == [first.path]
    assert tmp_files(store) == []


def test_concurrent_ingests_of_same_content_converge(store: BlobStore, tmp_path: Path) -> None:
    src = make_file(tmp_path, os.urandom(8 * CHUNK))
    results: list[StoredBlob] = []
    threads = [
        threading.Thread(target=lambda: results.append(ingest(store, src))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len({r.sha256 for r in results}) == 1
    assert object_files(store) == [results[0].path]
    assert store.verify(results[0].sha256)


def test_corrupted_existing_object_is_integrity_error(store: BlobStore, tmp_path: Path) -> None:
    src = make_file(tmp_path, os.urandom(3 * CHUNK))
    blob = ingest(store, src)
    blob.path.chmod(0o600)
    with blob.path.open("r+b") as f:  # flip one byte: bit rot / tampering
        f.seek(CHUNK)
        byte = f.read(1)
        f.seek(CHUNK)
        f.write(bytes([byte[0] ^ 1]))
    assert not store.verify(blob.sha256)
    with pytest.raises(IntegrityError):
        ingest(store, src)
    assert tmp_files(store) == []
    assert object_files(store) == [blob.path]  # the evidence of corruption is kept


def test_disk_full_mid_write_leaves_nothing(tmp_path: Path) -> None:
    fault = FailAt(2 * CHUNK)
    store = BlobStore(tmp_path / "store", chunk_size=CHUNK, fault=fault)
    with pytest.raises(Unavailable) as info:
        ingest(store, make_file(tmp_path, os.urandom(6 * CHUNK)))
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert fault.calls == 3
    assert object_files(store) == []
    assert tmp_files(store) == []


def test_eio_on_first_write_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store", chunk_size=CHUNK, fault=FailAt(0, errno.EIO))
    with pytest.raises(Unavailable) as info:
        ingest(store, make_file(tmp_path, b"x"))
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EIO
    assert object_files(store) == [] and tmp_files(store) == []


def test_max_bytes_is_too_large(store: BlobStore, tmp_path: Path) -> None:
    src = make_file(tmp_path, os.urandom(2 * CHUNK))
    with pytest.raises(TooLarge):
        ingest(store, src, max_bytes=2 * CHUNK - 1)
    assert object_files(store) == [] and tmp_files(store) == []
    assert ingest(store, src, max_bytes=2 * CHUNK).size == 2 * CHUNK


def test_source_growing_past_max_bytes_is_too_large(tmp_path: Path) -> None:
    src = make_file(tmp_path, os.urandom(2 * CHUNK))

    class GrowSource:
        def before_write(self, offset: int) -> None:
            if offset == 0:  # a writer appends while we copy
                with src.open("ab") as f:
                    f.write(os.urandom(3 * CHUNK))

    store = BlobStore(tmp_path / "store", chunk_size=CHUNK, fault=GrowSource())
    with pytest.raises(TooLarge):
        ingest(store, src, max_bytes=4 * CHUNK)
    assert object_files(store) == [] and tmp_files(store) == []


def test_zero_byte_file(store: BlobStore, tmp_path: Path) -> None:
    blob = ingest(store, make_file(tmp_path, b""))
    assert blob.sha256 == hashlib.sha256(b"").hexdigest()
    assert blob.size == 0 and blob.path.stat().st_size == 0 and mode(blob.path) == 0o400
    assert store.verify(blob.sha256)


def test_non_regular_source_is_bad_request(store: BlobStore) -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(BadRequest):
            store.ingest_file(r)
    finally:
        os.close(r)
        os.close(w)
    assert tmp_files(store) == []


@pytest.mark.parametrize(
    "bad", ["", "../" * 21 + "x", "g" * 64, "a" * 63, "a" * 65, "a" * 63 + "\n"]
)
def test_bad_digest_is_bad_request(store: BlobStore, bad: str) -> None:
    with pytest.raises(BadRequest):
        store.path_of(bad)
    with pytest.raises(BadRequest):
        store.exists(bad)


def test_missing_object(store: BlobStore) -> None:
    h = hashlib.sha256(b"never stored").hexdigest()
    assert not store.exists(h)
    with pytest.raises(NotFound):
        store.open(h)
    with pytest.raises(NotFound):
        store.verify(h)
    assert store.remove(h) is False


def test_remove(store: BlobStore, tmp_path: Path) -> None:
    blob = ingest(store, make_file(tmp_path, b"dispose of me"))
    assert store.remove(blob.sha256) is True
    assert not store.exists(blob.sha256) and object_files(store) == []
    assert store.remove(blob.sha256) is False


def test_sweep_tmp_removes_stale_keeps_live(store: BlobStore) -> None:
    tmp = store.root / "tmp"
    (tmp / "stale.tmp").write_bytes(b"half written")
    (tmp / "stale-ro.tmp").write_bytes(b"sealed, not renamed")
    (tmp / "stale-ro.tmp").chmod(0o400)
    (tmp / "link.tmp").symlink_to("/etc/passwd")
    live = tmp / "live.tmp"
    fd = os.open(live, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a writer in another process would hold it
        assert store.sweep_tmp() == 3
        assert tmp_files(store) == [live]
    finally:
        os.close(fd)
    assert Path("/etc/passwd").exists()
    assert store.sweep_tmp() == 1 and tmp_files(store) == []


def test_reopening_a_store_keeps_objects(store: BlobStore, tmp_path: Path) -> None:
    blob = ingest(store, make_file(tmp_path, b"persist"))
    again = BlobStore(store.root)
    assert again.exists(blob.sha256) and again.verify(blob.sha256)


# -- ingest_stream ------------------------------------------------------------------------------


def split(data: bytes, sizes: Iterator[int]) -> list[bytes]:
    parts, i = [], 0
    while i < len(data):
        n = next(sizes)
        parts.append(data[i : i + n])
        i += n
    return parts


async def test_stream_roundtrip_and_dedup(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(5 * CHUNK + 123)
    h = hashlib.sha256(data).hexdigest()
    parts = split(data, iter([1, 1000, 7000, 50, 9000] * 10))
    blob = await store.ingest_stream(agen(*parts), expected_sha256=h.upper(), max_bytes=None)
    assert (blob.sha256, blob.size, blob.existed) == (h, len(data), False)
    assert blob.path.read_bytes() == data and mode(blob.path) == 0o400
    again = await store.ingest_stream(agen(data), expected_sha256=None, max_bytes=len(data))
    assert again.existed and again.path == blob.path
    assert ingest(store, make_file(tmp_path, data)).existed
    assert object_files(store) == [blob.path] and tmp_files(store) == []


async def test_stream_wrong_expected_hash_keeps_nothing(store: BlobStore) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(IntegrityError):
        await store.ingest_stream(agen(b"a" * 3 * CHUNK), expected_sha256=wrong, max_bytes=None)
    assert object_files(store) == [] and tmp_files(store) == []


async def test_stream_malformed_expected_hash_is_bad_request(store: BlobStore) -> None:
    with pytest.raises(BadRequest):
        await store.ingest_stream(agen(b"a"), expected_sha256="xyz", max_bytes=None)
    assert tmp_files(store) == []


async def test_stream_too_large_keeps_nothing(store: BlobStore) -> None:
    parts = [b"b" * 1000] * 10
    with pytest.raises(TooLarge):
        await store.ingest_stream(agen(*parts), expected_sha256=None, max_bytes=9999)
    assert object_files(store) == [] and tmp_files(store) == []


async def test_stream_disk_full_keeps_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store", chunk_size=CHUNK, fault=FailAt(CHUNK))
    with pytest.raises(Unavailable) as info:
        await store.ingest_stream(agen(*[b"c" * 1000] * 20), expected_sha256=None, max_bytes=None)
    assert isinstance(info.value.__cause__, OSError)
    assert object_files(store) == [] and tmp_files(store) == []


async def test_stream_client_error_propagates_and_keeps_nothing(store: BlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"d" * 3 * CHUNK
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.ingest_stream(broken(), expected_sha256=None, max_bytes=None)
    assert object_files(store) == [] and tmp_files(store) == []


async def test_stream_empty(store: BlobStore) -> None:
    h = hashlib.sha256(b"").hexdigest()
    blob = await store.ingest_stream(agen(), expected_sha256=h, max_bytes=0)
    assert blob.size == 0 and blob.sha256 == h and store.verify(h)


async def test_stream_cancelled_keeps_nothing(store: BlobStore) -> None:
    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"e" * 2 * CHUNK
        yield b"e" * 2 * CHUNK
        started.set()
        await asyncio.Event().wait()  # the client stops sending
        yield b""

    task = asyncio.ensure_future(
        store.ingest_stream(stalled(), expected_sha256=None, max_bytes=None)
    )
    await asyncio.wait_for(started.wait(), 5)
    assert len(tmp_files(store)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert object_files(store) == [] and tmp_files(store) == []
