"""Writing sealed objects: content encrypted before its first byte reaches the blob store.

``Sealer`` is the sealing twin of ``BlobStore.ingest_file`` / ``ingest_stream``: it reads its
source once, hashes the plaintext and seals it (``vault.storage.sealing.SealWriter``, a fresh
random data key per object) in the same pass, and writes only ciphertext to the store's ``tmp/``;
the temp file is fsynced, made 0400 and linked into ``sealed/`` under a new name (``BlobStore``'s
layout), or, on the S3 store, uploaded as that key with Object Lock and removed
(``vault.storage.s3blobs``): the bucket only ever receives ciphertext.

Guarantees:

* Plaintext never touches the vault's disk on this path: the only file written holds the header
  and authenticated ciphertext chunks. Memory is bounded (two 1 MiB read buffers, one chunk and
  one 1 MiB output batch) whatever the source size.
* The content address is the PLAINTEXT SHA-256 (``SealedBlob.sha256``); with
  ``expected_sha256`` a mismatch is ``IntegrityError`` and nothing is kept.
* The data key is wrapped by the current key-encryption key (``vault.storage.kek``) before the
  object is committed, and bound to the object id and the plaintext SHA-256
  (``vault.storage.keyring``); the returned ``SealedBlob.key`` is what the caller stores in
  ``object_keys`` in the same transaction that makes the object live. A KEK store that fails leaves
  nothing committed. Once committed, the object's size and final chunk have been authenticated by
  reading them back.
* A committed sealed object whose key row is never stored (a crash, a lost race) is ciphertext
  without a key: unreadable by anyone, harmless, and never taken for the live object (its name
  carries its own object id). Callers remove it when they know it lost (``vault.storage.storage``).
* Errors: ``TooLarge`` past ``max_bytes``; ``Unavailable`` for I/O errors (source or store);
  ``ConfigError``/``Unavailable`` from the KEK store. On any error the temp file is removed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, cast

from vault.errors import IntegrityError, TooLarge
from vault.storage.backend import ObjectStore
from vault.storage.blobcopy import TempFile, check_source, unavailable
from vault.storage.blobstore import StoredBlob
from vault.storage.kek import FileKekStore, Kek, KekStore
from vault.storage.keyring import ObjectKey, new_data_key, wrap
from vault.storage.sealing import DEFAULT_CHUNK_SIZE, SealedReader, SealWriter

__all__ = ["SealedBlob", "Sealer"]

_READ = 1 << 20


@dataclass(frozen=True, slots=True)
class SealedBlob(StoredBlob):
    """A durable sealed object: ``sha256``/``size`` of the plaintext, ``path`` of the sealed file,
    ``key`` the wrapped data key to store (``object_keys``), ``chunk_size`` of its chunks."""

    key: ObjectKey
    chunk_size: int


class _TempOut:
    """A write-only stream appending to a ``TempFile`` (what ``SealWriter`` writes to)."""

    def __init__(self, tmp: TempFile) -> None:
        self._tmp = tmp
        self.offset = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        self._tmp.write(view, self.offset)
        self.offset += len(view)
        return len(view)


def _pread_full(fd: int, buf: bytearray, offset: int) -> int:
    """Fill ``buf`` from ``fd`` at ``offset``; fewer bytes only at end of file."""
    view = memoryview(buf)
    n = 0
    with unavailable("reading the source"):
        while n < len(buf):
            got = os.preadv(fd, [view[n:]], offset + n)
            if got == 0:
                break
            n += got
    return n


class Sealer:
    """Seals content into a blob store's sealed objects (module docstring). Thread-safe."""

    def __init__(
        self, blobs: ObjectStore, keks: KekStore, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> None:
        self.blobs = blobs
        self.keks = keks
        self.chunk_size = chunk_size

    def current_kek(self) -> Kek:
        """The KEK new data keys are wrapped with; a file store creates its first one here."""
        if isinstance(self.keks, FileKekStore):
            return self.keks.ensure()
        return self.keks.current()

    # -- the one write path -----------------------------------------------------------------

    def _start(self, tmp: TempFile) -> tuple[SealWriter, bytes]:
        """Open ``tmp`` and a ``SealWriter`` (with a fresh data key) writing into it."""
        tmp.open(direct=False)
        dek = new_data_key()
        return SealWriter(dek, cast(BinaryIO, _TempOut(tmp)), self.chunk_size), dek

    def _finish(
        self, tmp: TempFile, writer: SealWriter, dek: bytes, expected_sha256: str | None
    ) -> SealedBlob:
        """Final chunk, fsync, wrap the data key, commit, read the size and final chunk back."""
        result = writer.close()
        if expected_sha256 is not None and result.sha256 != expected_sha256.lower():
            raise IntegrityError("content does not match its expected SHA-256")
        tmp.seal()
        key = ObjectKey(
            result.object_id,
            result.sha256,
            wrap(self.current_kek(), dek, result.object_id, result.sha256),
        )
        path = self.blobs.commit_sealed(tmp, result.sha256, result.object_id)
        with (
            unavailable("reading a sealed object back"),
            self.blobs.open_sealed(result.sha256, result.object_id) as f,
        ):
            if SealedReader(dek, f).size != result.size:
                raise IntegrityError("sealed object reads back with another size")
        return SealedBlob(result.sha256, result.size, path, False, key, self.chunk_size)

    def _seal(
        self, feed: Callable[[SealWriter], None], expected_sha256: str | None = None
    ) -> SealedBlob:
        tmp = TempFile(self.blobs.tmp_dir, None)
        try:
            writer, dek = self._start(tmp)
            feed(writer)
            return self._finish(tmp, writer, dek, expected_sha256)
        finally:
            tmp.discard()

    # -- sources ----------------------------------------------------------------------------

    def seal_file(self, fd: int, *, max_bytes: int | None = None) -> SealedBlob:
        """Seal the regular file open at ``fd`` (offset 0 to EOF, read once; the fd's position
        is not used). ``BadRequest`` if not a regular file; ``TooLarge`` past ``max_bytes``."""
        check_source(fd, max_bytes)

        def feed(writer: SealWriter) -> None:
            # A reader thread fills the next buffer while this one is hashed and sealed.
            bufs = (bytearray(_READ), bytearray(_READ))
            with ThreadPoolExecutor(1, thread_name_prefix="seal-read") as pool:
                pending = pool.submit(_pread_full, fd, bufs[0], 0)
                turn = offset = 0
                while n := pending.result():
                    offset += n
                    if max_bytes is not None and offset > max_bytes:
                        raise TooLarge(f"source is over the {max_bytes}-byte limit")
                    current, turn = bufs[turn], turn ^ 1
                    pending = pool.submit(_pread_full, fd, bufs[turn], offset)
                    writer.write(memoryview(current)[:n])

        return self._seal(feed)

    def seal_chunks(
        self, chunks: Iterable[bytes], *, expected_sha256: str | None = None
    ) -> SealedBlob:
        """Seal plaintext given as chunks (e.g. another stored object's ``read_range``)."""

        def feed(writer: SealWriter) -> None:
            for chunk in chunks:
                writer.write(chunk)

        return self._seal(feed, expected_sha256)

    async def seal_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        expected_sha256: str | None,
        max_bytes: int | None,
    ) -> SealedBlob:
        """Seal an upload. Chunks are batched to about 1 MiB and sealed by one worker thread
        (one batch in flight while the next is received), so the event loop never blocks on
        disk or crypto. ``TooLarge`` as soon as ``max_bytes`` is passed; ``IntegrityError`` on
        an ``expected_sha256`` mismatch; errors from ``chunks`` propagate unchanged. On any
        exit, also cancellation, the temp file is removed (by the worker, after its last step)."""
        worker = ThreadPoolExecutor(1, thread_name_prefix="seal-upload")
        tmp = TempFile(self.blobs.tmp_dir, None)
        try:
            writer, dek = await asyncio.wrap_future(worker.submit(self._start, tmp))
            parts: list[bytes] = []
            batched = total = 0
            in_flight: Future[int] | None = None
            async for chunk in chunks:
                total += len(chunk)
                if max_bytes is not None and total > max_bytes:
                    raise TooLarge(f"upload is over the {max_bytes}-byte limit")
                parts.append(chunk)
                batched += len(chunk)
                if batched >= _READ:
                    if in_flight is not None:
                        await asyncio.wrap_future(in_flight)
                    in_flight = worker.submit(writer.write, b"".join(parts))
                    parts, batched = [], 0
            if in_flight is not None:
                await asyncio.wrap_future(in_flight)
            if parts:
                await asyncio.wrap_future(worker.submit(writer.write, b"".join(parts)))
            return await asyncio.wrap_future(
                worker.submit(self._finish, tmp, writer, dek, expected_sha256)
            )
        finally:
            cleanup = worker.submit(tmp.discard)  # runs after anything still queued
            worker.shutdown(wait=False)
            await asyncio.wrap_future(cleanup)
