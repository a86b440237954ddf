"""``api.streaming.send_content`` over real HTTP: the zero-copy path for plain objects and the
batched read path for any other object give the same bytes and headers at every boundary."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api import streaming
from api.streaming import send_content


class FileObject:
    """Like ``vault.storage.content.PlainObject``: offers ``fileno`` (the sendfile path)."""

    def __init__(self, path: Path) -> None:
        self._f = path.open("rb", buffering=0)
        self.size = os.fstat(self._f.fileno()).st_size
        self.closed = False

    def fileno(self) -> int:
        return self._f.fileno()

    def read_range(self, start: int, end: int) -> Iterator[bytes]:
        raise AssertionError("the plain path must not read through Python")

    @contextmanager
    def as_file(self) -> Iterator[Path]:
        raise AssertionError("unused")

    def close(self) -> None:
        self.closed = True
        self._f.close()


class ChunkedObject:
    """Like a sealed object: no ``fileno``; plaintext in (odd-sized) chunks."""

    def __init__(self, data: bytes, chunk: int = 65_537) -> None:
        self.data, self.chunk, self.size = data, chunk, len(data)
        self.closed = False

    def read_range(self, start: int, end: int) -> Iterator[bytes]:
        assert 0 <= start <= end <= self.size
        for pos in range(start, end, self.chunk):
            yield self.data[pos : min(end, pos + self.chunk)]

    @contextmanager
    def as_file(self) -> Iterator[Path]:
        raise AssertionError("unused")

    def close(self) -> None:
        self.closed = True


MIB = 1 << 20
SIZE = 3 * MIB + 12_345
RANGES = {
    "bytes=0-0": (0, 1),
    "bytes=0-1048575": (0, MIB),  # exactly one MiB
    "bytes=1048575-1048576": (MIB - 1, MIB + 1),  # across a MiB boundary
    f"bytes={SIZE - 1}-": (SIZE - 1, SIZE),  # the last byte
    f"bytes={SIZE - 1}-{SIZE * 2}": (SIZE - 1, SIZE),  # end clamped
    "bytes=-1": (SIZE - 1, SIZE),
    f"bytes=-{SIZE + 10}": (0, SIZE),  # suffix longer than the object
    "bytes=3145728-": (3 * MIB, SIZE),  # the tail after the last whole MiB
    "bytes=65536-65537": (65_536, 65_538),
}


@pytest.fixture(params=["plain", "sealed"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _client(opened: list[object], make: object) -> TestClient[web.Request, web.Application]:
    async def handler(request: web.Request) -> web.StreamResponse:
        obj = make()  # type: ignore[operator]
        opened.append(obj)
        return await send_content(
            request, obj, sha256="ab" * 32, media_type="video/mp4", disposition="inline"
        )

    app = web.Application()
    app.router.add_get("/c", handler)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_ranges_at_boundaries(kind: str, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    path = tmp_path / "obj"
    path.write_bytes(data)
    opened: list[object] = []
    make = (lambda: FileObject(path)) if kind == "plain" else (lambda: ChunkedObject(data))
    client = await _client(opened, make)
    try:
        for header, (start, end) in RANGES.items():
            r = await client.get("/c", headers={"Range": header})
            body = await r.read()
            assert r.status == 206, header
            assert body == data[start:end], header
            assert r.headers["Content-Range"] == f"bytes {start}-{end - 1}/{SIZE}", header
            assert r.headers["Content-Length"] == str(end - start)
        r = await client.get("/c")
        assert r.status == 200 and await r.read() == data
        r = await client.head("/c")
        assert r.status == 200 and r.headers["Content-Length"] == str(SIZE)
        r = await client.get("/c", headers={"Range": f"bytes={SIZE}-"})
        assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{SIZE}"
        # several requests on one keep-alive connection after a sendfile: framing intact
        for _ in range(3):
            r = await client.get("/c", headers={"Range": "bytes=10-19"})
            assert await r.read() == data[10:20]
    finally:
        await client.close()
    assert opened and all(o.closed for o in opened)  # type: ignore[attr-defined]


async def test_empty_object(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    opened: list[object] = []
    make = (lambda: FileObject(path)) if kind == "plain" else (lambda: ChunkedObject(b""))
    client = await _client(opened, make)
    try:
        r = await client.get("/c")
        assert r.status == 200 and await r.read() == b""
        r = await client.get("/c", headers={"Range": "bytes=0-0"})
        assert r.status == 416
    finally:
        await client.close()


def test_batches_are_bounded() -> None:
    chunks = iter([b"x" * MIB] * 9)
    sizes = []
    while batch := streaming._next_batch(chunks):
        sizes.append(sum(map(len, batch)))
    assert sizes == [streaming.BATCH, streaming.BATCH, MIB]
