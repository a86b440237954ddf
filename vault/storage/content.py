"""Reading stored content: the one read path for originals and renditions.

Everything that serves or processes stored bytes (HTTP streaming with Range, media jobs,
exports, verification) goes through a :class:`ContentStore`, so whether an object is stored in
plain or sealed (encrypted at rest) is decided in one place.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from vault.errors import IntegrityError
from vault.storage.blobstore import BlobStore
from vault.storage.prefetch import ReadAhead

READ_CHUNK = 1 << 20


class Readable(Protocol):
    """An open stored object. Reads return plaintext; a damaged object raises IntegrityError
    and never yields bytes that fail their check (sealed objects) — plain objects are checked
    by scrub and by hashing on the way out where callers need it."""

    size: int

    def read_range(self, start: int, end: int) -> Iterator[bytes]:
        """Plaintext bytes ``[start, end)``, in chunks; ``0 <= start <= end <= size``."""
        ...

    @contextmanager
    def as_file(self) -> Iterator[Path]:
        """A readable file holding the plaintext, for tools such as ffmpeg, valid inside the
        ``with``. For plain objects: the object itself; for sealed ones, a private temporary
        copy removed afterwards."""
        ...

    def close(self) -> None: ...


class ContentStore(Protocol):
    """Opens stored objects by their (plaintext) SHA-256."""

    async def open(self, sha256: str, *, reuse: bool = False) -> Readable:
        """The object, or NotFound. ``reuse``: it may come from an object kept open since an
        earlier open (serving the Range requests of a playback); callers that check what is
        stored now (scrub, integrity reports) leave it False."""
        ...

    async def foreign_versions(self, sha256: str) -> str | None:
        """What was written over the object besides its original bytes (a store that keeps
        versions, such as an S3 bucket with Object Lock: a later version, a delete marker),
        which reads never serve; None when nothing was, or the store keeps no versions."""
        ...


class PlainObject:
    """A stored object kept in plain."""

    def __init__(self, store: BlobStore, sha256: str) -> None:
        self._path = store.path_of(sha256)
        self._f = store.open(sha256)
        self.size = os.fstat(self._f.fileno()).st_size

    @classmethod
    def over(cls, path: Path, f: BinaryIO) -> PlainObject:
        """The object at ``path`` read through ``f``, a descriptor of it already open (closed
        with the object)."""
        obj = cls.__new__(cls)
        obj._path, obj._f = path, f
        obj.size = os.fstat(f.fileno()).st_size
        return obj

    def read_range(self, start: int, end: int) -> Iterator[bytes]:
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"range {start}-{end} outside 0-{self.size}")
        pos = start
        ahead = ReadAhead(self._f, end)
        while pos < end:
            data = os.pread(self._f.fileno(), min(READ_CHUNK, end - pos), pos)
            ahead.at(pos + len(data))
            if not data:
                raise IntegrityError(f"object {self._path.name} is shorter than recorded")
            yield data
            pos += len(data)

    @contextmanager
    def as_file(self) -> Iterator[Path]:
        yield self._path

    def fileno(self) -> int:
        """The open object's descriptor: its bytes are the content (for zero-copy sending;
        read it with positioned reads or sendfile, valid until ``close``)."""
        return self._f.fileno()

    def close(self) -> None:
        self._f.close()


class PlainContentStore:
    """A :class:`ContentStore` over a :class:`BlobStore` whose objects are all plain."""

    def __init__(self, store: BlobStore) -> None:
        self.blobs = store

    async def open(self, sha256: str, *, reuse: bool = False) -> Readable:
        return PlainObject(self.blobs, sha256)

    async def foreign_versions(self, sha256: str) -> str | None:
        """None: a file keeps no versions (scrub re-hashes the file itself)."""
        return None
