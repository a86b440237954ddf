"""The contract both blob stores meet, as an async Protocol: ``Blobs``.

``vault.storage.s3store.S3BlobStore`` implements it directly; ``FileBlobs`` adapts the file store
(``vault.storage.blobstore.BlobStore``, synchronous and path-based) to it without changing it,
running its blocking calls on threads. The service's other modules still use ``BlobStore`` itself
(paths, sealed objects); moving them onto ``Blobs`` is a later step.

The contract, for every implementation:

* content-addressed: an object is named by the lower-case hex SHA-256 of its bytes;
* write-once: ``put_file``/``put_stream`` of content already stored writes nothing; the stored
  bytes are re-hashed first and ``IntegrityError`` raised if they do not match their address;
* a write returns only once the object is durable; a failed write leaves nothing visible;
* ``read(h, start, end)`` streams the bytes ``[start, end)``; ``verify(h)`` re-hashes them;
* ``retain_until`` is the date before which the object must not be deleted. The S3 store enforces
  it with Object Lock COMPLIANCE (``retention``/``extend_retention`` read and extend it, never
  shorten it); the file store cannot enforce anything against the host's root: it accepts the
  date and reports ``None`` (retention is then the database's rules alone).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from vault.errors import BadRequest
from vault.storage.blobstore import BlobStore

__all__ = ["Blobs", "FileBlobs", "Stored"]

READ_CHUNK = 1 << 20


class Stored(Protocol):
    """What a write returns: digest, size, and whether the content was stored already."""

    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def existed(self) -> bool: ...


@runtime_checkable
class Blobs(Protocol):
    """A write-once, content-addressed blob store (see the module docstring)."""

    async def put_file(
        self, fd: int, *, retain_until: datetime, max_bytes: int | None = None
    ) -> Stored: ...

    async def put_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        retain_until: datetime,
        expected_sha256: str | None,
        max_bytes: int | None,
    ) -> Stored: ...

    async def exists(self, sha256: str) -> bool: ...

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]: ...

    async def verify(self, sha256: str) -> bool: ...

    async def retention(self, sha256: str) -> datetime | None: ...

    async def extend_retention(self, sha256: str, until: datetime) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class FileStored:
    sha256: str
    size: int
    existed: bool


class FileBlobs:
    """``Blobs`` over the file store: blocking calls run on threads."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store

    async def put_file(
        self, fd: int, *, retain_until: datetime, max_bytes: int | None = None
    ) -> FileStored:
        got = await asyncio.to_thread(self.store.ingest_file, fd, max_bytes=max_bytes)
        return FileStored(got.sha256, got.size, got.existed)

    async def put_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        retain_until: datetime,
        expected_sha256: str | None,
        max_bytes: int | None,
    ) -> FileStored:
        got = await self.store.ingest_stream(
            chunks, expected_sha256=expected_sha256, max_bytes=max_bytes
        )
        return FileStored(got.sha256, got.size, got.existed)

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.store.exists, sha256)

    async def read(
        self, sha256: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        if start < 0 or (end is not None and end < start):
            raise BadRequest("bad byte range")
        f = await asyncio.to_thread(self.store.open, sha256)
        try:
            size = os.fstat(f.fileno()).st_size
            stop = size if end is None else min(end, size)  # as S3 and HTTP ranges do
            if start > size:
                raise BadRequest("byte range outside the object")
            offset = start
            while offset < stop:
                n = min(READ_CHUNK, stop - offset)
                data = await asyncio.to_thread(os.pread, f.fileno(), n, offset)
                if not data:
                    break
                offset += len(data)
                yield data
        finally:
            f.close()

    async def verify(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.store.verify, sha256)

    async def retention(self, sha256: str) -> datetime | None:
        """Always None: a local file system enforces no retention."""
        return None

    async def extend_retention(self, sha256: str, until: datetime) -> datetime | None:
        """Nothing to extend on a file system (see ``retention``)."""
        return None
