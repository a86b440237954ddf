"""The S3 blob store behind the service's storage surface (``vault.storage.backend.ObjectStore``):
what acquisition, media jobs, sealing, content reads, scrub and disposal call, on an
``S3BlobStore`` (``vault.storage.s3store``) instead of the file store.

The service calls its store from worker threads (acquisition copies, sealing, media records run
in ``asyncio.to_thread``) with blocking methods; the S3 client is asynchronous and bound to the
event loop that opened it. ``S3Blobs`` runs each call as a coroutine on that loop and waits for
it from the worker thread (``run_coroutine_threadsafe``). A blocking method called ON the loop's
thread would wait for itself: it raises ``RuntimeError`` instead of hanging.

Guarantees, beyond ``S3BlobStore``'s own:

* Every object written (original, rendition, sealed ciphertext) carries Object Lock COMPLIANCE
  until ``retain_for`` from the write (the ordinary retention period: an item cannot be disposed
  of earlier than that anyway); links and retention runs extend it (``vault.ops.objectlock``).
* Sealed objects go to the bucket as ciphertext only: the sealer writes them to ``tmp_dir`` (a
  local folder, ciphertext), ``commit_sealed`` uploads that file under
  ``sealed/sha256/../<sha256>.<object id>`` and removes it.
* Reads always read the ORIGINAL version of a key (the oldest one): a version written over it
  through the S3 API is never served. Scrub finds such versions and delete markers
  (``foreign_versions``) and reports the object as changed.
* ``remove`` (disposal) deletes every version of the content's keys, and raises ``Conflict``
  while any is locked (the disposal stays pending and the next run retries). ``remove_plain`` /
  ``remove_sealed`` drop a leftover copy (``Storage.settle``, re-encryption): a copy still locked
  cannot be deleted; it is kept until its lock expires (a warning says so) and they return False.
  A plain version superseded by its sealed copy is recorded and deleted once its lock expired
  (``vault.storage.superseded``, with ``plain_original``, ``plain_lock``,
  ``remove_plain_version``).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterator,
)
from contextlib import aclosing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypeVar, cast

from vault.errors import Conflict, IntegrityError
from vault.storage.blobcopy import TempFile, mkdirs, unavailable, unlink_unless_locked
from vault.storage.blobstore import StoredBlob, _digest
from vault.storage.s3store import S3BlobStore, key_of, sealed_key_of

__all__ = ["S3Blobs", "S3PlainObject"]

log = logging.getLogger("evault.storage")

T = TypeVar("T")
ScratchBase = Callable[[int], Path]
_CLOSING: set[asyncio.Task[None]] = set()  # early closes of reads, kept until they finish
WINDOW = 8 << 20  # bytes fetched per ranged GET by a sealed object's reader


class S3Blobs:
    """The service's object store on S3 (module docstring). Thread-safe."""

    def __init__(
        self,
        store: S3BlobStore,
        loop: asyncio.AbstractEventLoop,
        tmp_dir: Path,
        *,
        retain_for: timedelta,
        hold_for: timedelta,
    ) -> None:
        """``retain_for``: the lock of every write; ``hold_for``: how far ahead the locks of an
        item kept by a link, hold or permanent rule are held (``vault.ops.objectlock``)."""
        self.s3 = store
        self._loop = loop
        self._tmp = tmp_dir
        self.retain_for = retain_for
        self.hold_for = hold_for
        with unavailable("creating the local temp folder"):
            mkdirs([tmp_dir.parent, tmp_dir])

    def __repr__(self) -> str:
        return f"S3Blobs(bucket={self.s3.bucket!r})"

    # -- bridging ---------------------------------------------------------------------------

    def on_loop(self) -> bool:
        """True when called on the event loop the store runs on."""
        return self._on_loop()

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the store's loop and wait for it (from a worker thread only)."""
        if self._on_loop():
            coro.close()
            raise RuntimeError("S3Blobs: a blocking call on the event loop (use a worker thread)")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def iterate(self, chunks: AsyncIterator[bytes]) -> Generator[bytes]:
        """An async iterator consumed from a worker thread, one chunk per call to the loop."""
        agen = cast(Any, chunks)
        try:
            while True:
                try:
                    yield self.call(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            # Closed early (a client gone mid-stream): release the GET's connection; on the
            # loop's own thread (a reader closed there) without waiting.
            if self._on_loop():
                task = self._loop.create_task(agen.aclose())
                _CLOSING.add(task)
                task.add_done_callback(_CLOSING.discard)
            elif not self._loop.is_closed():
                self.call(agen.aclose())

    def retain_until(self) -> datetime:
        return datetime.now(UTC) + self.retain_for

    # -- the surface the service uses (vault.storage.backend.ObjectStore) -------------------

    @property
    def tmp_dir(self) -> Path:
        """A local folder for ciphertext being sealed before its upload."""
        return self._tmp

    def ingest_file(self, fd: int, *, max_bytes: int | None = None) -> StoredBlob:
        got = self.call(self.s3.put_file(fd, retain_until=self.retain_until(), max_bytes=max_bytes))
        return StoredBlob(got.sha256, got.size, Path(key_of(got.sha256)), got.existed)

    async def ingest_stream(
        self, chunks: AsyncIterator[bytes], *, expected_sha256: str | None, max_bytes: int | None
    ) -> StoredBlob:
        got = await self.s3.put_stream(
            chunks,
            retain_until=self.retain_until(),
            expected_sha256=expected_sha256,
            max_bytes=max_bytes,
        )
        return StoredBlob(got.sha256, got.size, Path(key_of(got.sha256)), got.existed)

    def commit_sealed(self, tmp: TempFile, sha256: str, object_id: bytes) -> Path:
        """Upload the sealed ``tmp`` as this sealed object (locked), then drop the local file."""
        key = sealed_key_of(sha256, object_id)
        assert tmp.path is not None
        with unavailable("reading a sealed temp file"):
            fd = os.open(tmp.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            self.call(self.s3.put_sealed_file(fd, key, retain_until=self.retain_until()))
        finally:
            os.close(fd)
        tmp.discard()
        return Path(key)

    def exists(self, sha256: str) -> bool:
        return self.call(self.s3.exists(sha256))

    def verify(self, sha256: str) -> bool:
        return self.call(self.s3.verify(sha256))

    def open_plain(self, sha256: str, scratch: ScratchBase | None = None) -> S3PlainObject:
        """The plain object, as a ``vault.storage.content.Readable``. ``NotFound`` if absent.
        ``scratch``: the folder to put a local copy in for ``as_file`` (by size)."""
        key = key_of(sha256)
        return S3PlainObject(self, key, self.call(self.s3.size_of(key)), scratch)

    async def open_plain_here(
        self, sha256: str, scratch: ScratchBase | None = None
    ) -> S3PlainObject:
        """``open_plain`` for a caller on the store's own event loop (no worker thread)."""
        key = key_of(sha256)
        return S3PlainObject(self, key, await self.s3.size_of(key), scratch)

    def open_sealed(self, sha256: str, object_id: bytes) -> BinaryIO:
        """The sealed object's ciphertext as a seekable file (ranged GETs). ``NotFound``."""
        key = sealed_key_of(sha256, object_id)
        size = self.call(self.s3.size_of(key))
        return cast(BinaryIO, io.BufferedReader(_RangeFile(self, key, size), WINDOW))

    def sealed_keys(self, sha256: str) -> list[str]:
        h = _digest(sha256)
        return self.call(self.s3.keys(f"sealed/sha256/{h[:2]}/{h[2:4]}/{h}."))

    def remove(self, sha256: str) -> bool:
        """Disposal: every version of the plain and sealed keys. ``Conflict`` while locked."""
        removed = self.call(self.s3.remove_key(key_of(sha256)))
        for key in self.sealed_keys(sha256):
            removed = self.call(self.s3.remove_key(key)) or removed
        return removed

    def remove_plain(self, sha256: str) -> bool:
        return self._drop(key_of(sha256))

    def remove_sealed(self, sha256: str, object_id: bytes) -> bool:
        return self._drop(sealed_key_of(sha256, object_id))

    def _drop(self, key: str) -> bool:
        try:
            return self.call(self.s3.remove_key(key))
        except Conflict:
            log.warning("S3 store: leftover copy %s kept until its Object Lock expires", key)
            return False

    def plain_original(self, sha256: str) -> str | None:
        """The version id of the plain original of this content, None if there is none."""
        got = self.call(self.s3.original_of(key_of(sha256)))
        return None if got is None else got[0]

    def plain_lock(self, sha256: str, version: str) -> datetime | None:
        """The COMPLIANCE retain-until date of that plain version (None: no lock);
        ``NotFound`` if the version is not there."""
        return self.call(self.s3.version_retention(key_of(sha256), version))

    def remove_plain_version(self, sha256: str, version: str) -> bool:
        """Delete exactly that plain version (no other); ``Conflict`` while it is locked,
        False if it is not there."""
        return self.call(self.s3.remove_version(key_of(sha256), version))

    def sweep_tmp(self) -> int:
        """Remove local sealing temp files left by a crash (never one being written)."""
        with unavailable("sweeping temp files"):
            entries = [Path(e) for e in os.scandir(self._tmp) if e.is_file(follow_symlinks=False)]
            return sum(unlink_unless_locked(path) for path in entries)

    def extend(self, sha256: str, until: datetime, *, plain: bool = True) -> int:
        """Lock every stored form of this content (plain, sealed) until at least ``until``;
        never shortens. Returns how many objects that covered. ``plain=False``: the sealed
        forms only (the content is sealed: a plain version left is superseded and must be
        let expire, ``vault.storage.superseded``)."""
        keys = [key_of(sha256)] if plain and self.call(self.s3.exists(sha256)) else []
        keys += self.sealed_keys(sha256)
        for key in keys:
            self.call(self.s3.extend_key(key, until))
        return len(keys)

    def foreign_versions(self, sha256: str, object_id: bytes | None) -> str | None:
        """What else than the original is under this content's live key (``S3BlobStore``)."""
        key = key_of(sha256) if object_id is None else sealed_key_of(sha256, object_id)
        return self.call(self.s3.foreign_versions(key))


class S3PlainObject:
    """A plain object in the bucket (``vault.storage.content.Readable``): ranged GETs of its
    original version; ``as_file`` downloads it to a private temporary folder."""

    def __init__(
        self, blobs: S3Blobs, key: str, size: int, scratch: ScratchBase | None = None
    ) -> None:
        self._blobs = blobs
        self._key = key
        self.size = size
        self._scratch = scratch
        self._reads: list[Iterator[bytes]] = []

    def read_range(self, start: int, end: int) -> Iterator[bytes]:
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"range {start}-{end} outside 0-{self.size}")
        if start == end:
            return iter(())
        chunks = self._blobs.iterate(self._blobs.s3.read_key(self._key, start, end))
        reads = self._checked(chunks, end - start)
        self._reads.append(reads)
        return reads

    def stream_range(self, start: int, end: int) -> AsyncIterator[bytes] | None:
        """``read_range`` as an async iterator, for a caller on the store's own event loop (the
        HTTP server streaming a response): the chunks come straight from the GET, with no hop
        to a worker thread per chunk. None when called from elsewhere (use ``read_range``)."""
        if not self._blobs._on_loop():
            return None
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"range {start}-{end} outside 0-{self.size}")
        return self._stream(start, end)

    async def _stream(self, start: int, end: int) -> AsyncIterator[bytes]:
        got = 0
        if start < end:
            reads = cast(AsyncGenerator[bytes], self._blobs.s3.read_key(self._key, start, end))
            async with aclosing(reads) as chunks:
                async for chunk in chunks:
                    got += len(chunk)
                    yield chunk
        if got != end - start:
            raise IntegrityError(f"object {PurePosixPath(self._key).name} is shorter than recorded")

    def _checked(self, chunks: Generator[bytes], want: int) -> Iterator[bytes]:
        got = 0
        try:
            for chunk in chunks:
                got += len(chunk)
                yield chunk
        finally:
            chunks.close()  # releases the GET
        if got != want:
            raise IntegrityError(f"object {PurePosixPath(self._key).name} is shorter than recorded")

    @contextmanager
    def as_file(self) -> Iterator[Path]:
        base = None if self._scratch is None else self._scratch(self.size)
        folder = Path(tempfile.mkdtemp(prefix="evault-s3-", dir=base))
        try:
            path = folder / "object"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                for piece in self.read_range(0, self.size):
                    out.write(piece)
            yield path
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        for reads in self._reads:
            reads.close()  # type: ignore[attr-defined]
        self._reads.clear()


class _RangeFile(io.RawIOBase):
    """A read-only, seekable view of one object's original version: each read is one ranged
    GET (``io.BufferedReader`` above it makes them ``WINDOW``-sized)."""

    def __init__(self, blobs: S3Blobs, key: str, size: int) -> None:
        self._blobs = blobs
        self._key = key
        self._size = size
        self._pos = 0
        self._lock = threading.Lock()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        with self._lock:
            start = self._pos
            end = min(self._size, start + len(view))
            if start >= end:
                return 0

            async def fetch() -> bytes:
                parts = [c async for c in self._blobs.s3.read_key(self._key, start, end)]
                return b"".join(parts)

            data = self._blobs.call(fetch())
            view[: len(data)] = data
            self._pos = start + len(data)
            return len(data)
