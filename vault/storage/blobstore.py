"""Write-once, content-addressed blob store for originals (DESIGN §4).

Layout under ``root``: ``objects/sha256/<2 hex>/<2 hex>/<64 hex>`` holds committed plain objects
(mode 0400, directories 0700); ``sealed/sha256/<2 hex>/<2 hex>/<64 hex>.<32 hex>`` holds sealed
(encrypted, ``vault.storage.sealing``) objects, named by the PLAINTEXT SHA-256 and the 16-byte
object id of their header, so two sealings of one content never collide and a sealed file left by a
crash (whose data key was never stored) can never be mistaken for the live one: PostgreSQL's
``object_keys`` names the live object id (``vault.storage.storage``). ``tmp/`` holds uncommitted
temporaries on the same file system as both.

Guarantees:

* An object at ``path_of(h)`` is only ever created by renaming a fully written, fsynced temp file
  whose bytes hash to ``h``; the directory chain is fsynced after the rename. When an ingest
  returns, the object is durable. Ingest never replaces or deletes an existing object.
* Every ingest reads its source exactly once and hashes while copying; memory is bounded by a few
  ``chunk_size`` buffers whatever the size of the source.
* When an ingest raises, its temp file is removed and nothing new is visible under ``objects/``.
  ``OSError`` becomes ``Unavailable`` (cause chained); an over-limit source becomes ``TooLarge``;
  a hash that disagrees (an upload's expected hash, or a stored object's bytes) ``IntegrityError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import mmap
import os
import re
import stat
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vault.errors import BadRequest, ConfigError, IntegrityError, NotFound, TooLarge
from vault.storage.blobcopy import (
    ALIGN,
    MAX_CHUNK,
    TempFile,
    WriteFault,
    check_source,
    copy_and_hash,
    fsync_dir,
    hash_file,
    mkdirs,
    unavailable,
    unlink_unless_locked,
)

__all__ = ["BlobStore", "StoredBlob", "WriteFault"]

_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


UPLOAD_BUFFERS = 3  # buffers in flight per upload: receive, write and hash overlap


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A durable object: lower-case hex SHA-256, size in bytes, its path, and whether it was
    already stored before this ingest."""

    sha256: str
    size: int
    path: Path
    existed: bool


def _digest(sha256: str) -> str:
    """Return the canonical (lower-case) form of a hex SHA-256, or raise ``BadRequest``."""
    canon = sha256.lower() if isinstance(sha256, str) else ""
    if _DIGEST_RE.fullmatch(canon) is None:
        raise BadRequest("not a SHA-256 hex digest")
    return canon


class BlobStore:
    """The content-addressed store. Thread-safe; several processes may share one ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        chunk_size: int = 1 << 20,
        fault: WriteFault | None = None,
        direct: bool = True,
    ) -> None:
        """``direct``: ``ingest_file`` writes with O_DIRECT where possible (see
        ``vault.storage.blobcopy.TempFile``)."""
        if not 0 < chunk_size <= MAX_CHUNK or chunk_size % ALIGN:
            raise ValueError(f"chunk_size must be a multiple of {ALIGN} up to {MAX_CHUNK}")
        self._direct = direct
        self.root = Path(root)
        self._objects = self.root / "objects" / "sha256"
        self._sealed = self.root / "sealed" / "sha256"
        self._tmp = self.root / "tmp"
        self._chunk = chunk_size
        self._fault = fault
        if not self.root.parent.is_dir():
            raise ConfigError("blob store root: parent directory does not exist")
        with unavailable("creating the store directories"):
            mkdirs([self.root, self.root / "objects", self._objects, self._tmp])
            mkdirs([self.root / "sealed", self._sealed])
            devices = {p.stat().st_dev for p in (self._tmp, self._objects, self._sealed)}
        if len(devices) != 1:
            raise ConfigError("blob store: tmp/, objects/, sealed/ must be on one file system")

    # -- addressing ---------------------------------------------------------------------------

    def path_of(self, sha256: str) -> Path:
        """Where the object with this digest lives (or would live). Raises ``BadRequest``."""
        h = _digest(sha256)
        return self._objects / h[:2] / h[2:4] / h

    @property
    def tmp_dir(self) -> Path:
        """Where temporaries are written (same file system as the objects)."""
        return self._tmp

    def sealed_path(self, sha256: str, object_id: bytes) -> Path:
        """Where the sealed object with this plaintext digest and header object id lives."""
        h = _digest(sha256)
        if len(object_id) != 16:
            raise BadRequest("a sealed object id is 16 bytes")
        return self._sealed / h[:2] / h[2:4] / f"{h}.{object_id.hex()}"

    def sealed_paths(self, sha256: str) -> list[Path]:
        """Every sealed file stored for this content (the live one and any crash leftovers)."""
        h = _digest(sha256)
        folder = self._sealed / h[:2] / h[2:4]
        with unavailable("listing sealed objects"):
            try:
                found = [p for p in folder.iterdir() if p.name.startswith(h + ".")]
            except FileNotFoundError:
                return []
        return sorted(found)

    def exists(self, sha256: str) -> bool:
        """True if a regular file is stored under this digest (its bytes are not checked)."""
        path = self.path_of(sha256)
        with unavailable("looking up an object"):
            try:
                return stat.S_ISREG(path.lstat().st_mode)
            except FileNotFoundError:
                return False

    def open(self, sha256: str) -> BinaryIO:
        """Open the object for reading. ``NotFound`` if absent. Bytes are not re-verified."""
        path = self.path_of(sha256)
        with unavailable("opening an object"):
            try:
                return open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW))
            except FileNotFoundError:
                raise NotFound(f"no stored object {path.name}") from None

    def open_sealed(self, sha256: str, object_id: bytes) -> BinaryIO:
        """Open a sealed object for reading. ``NotFound`` if absent. Not authenticated here:
        ``vault.storage.sealing.SealedReader`` does that."""
        path = self.sealed_path(sha256, object_id)
        with unavailable("opening a sealed object"):
            try:
                return open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW))
            except FileNotFoundError:
                raise NotFound(f"no stored sealed object {path.name}") from None

    def verify(self, sha256: str) -> bool:
        """Re-hash the stored bytes: True iff they hash to ``sha256``. ``NotFound`` if absent."""
        path = self.path_of(sha256)
        with unavailable("reading an object"):
            try:
                return hash_file(path) == path.name
            except FileNotFoundError:
                raise NotFound(f"no stored object {path.name}") from None

    def remove(self, sha256: str) -> bool:
        """Delete every stored form of a content, plain and sealed (disposition), durably.
        Returns False if nothing was there."""
        removed = self.remove_plain(sha256)
        for path in self.sealed_paths(sha256):
            removed = self._unlink(path) or removed
        return removed

    def remove_plain(self, sha256: str) -> bool:
        """Delete the plain object durably. Returns False if it was not there."""
        return self._unlink(self.path_of(sha256))

    def remove_sealed(self, sha256: str, object_id: bytes) -> bool:
        """Delete one sealed object durably. Returns False if it was not there."""
        return self._unlink(self.sealed_path(sha256, object_id))

    def _unlink(self, path: Path) -> bool:
        with unavailable("removing an object"):
            try:
                if stat.S_ISREG(path.lstat().st_mode):  # some file systems refuse to unlink 0400
                    path.chmod(0o600)
                path.unlink()
            except FileNotFoundError:
                return False
            fsync_dir(path.parent)
        return True

    def sweep_tmp(self) -> int:
        """Remove temp files left by crashed writers; returns how many were removed.

        A temp file being written (by any process) holds an exclusive flock and is skipped, so
        this is safe to call at any time, not only at start.
        """
        with unavailable("sweeping temp files"):
            entries = [
                Path(e) for e in os.scandir(self._tmp) if not e.is_dir(follow_symlinks=False)
            ]
            return sum(unlink_unless_locked(path) for path in entries)

    def commit_sealed(self, tmp: TempFile, sha256: str, object_id: bytes) -> Path:
        """Rename the sealed (0400, fsynced) ``tmp`` into place as this sealed object and fsync
        the directory chain. Never replaces anything: the name is new (a random object id), and
        an existing file there is ``IntegrityError``."""
        final = self.sealed_path(sha256, object_id)
        chain = [final.parent.parent, final.parent]
        with unavailable("committing a sealed object"):
            mkdirs(chain)
            assert tmp.path is not None
            try:
                os.link(tmp.path, final)  # fails rather than replace
            except FileExistsError:
                raise IntegrityError("a sealed object with this id exists already") from None
            tmp.discard()  # unlinks the temp name; the object keeps its own
            for directory in reversed([self._sealed, *chain]):
                fsync_dir(directory)
        return final

    # -- ingest -------------------------------------------------------------------------------

    def ingest_file(self, fd: int, *, max_bytes: int | None = None) -> StoredBlob:
        """Copy the regular file open at ``fd`` (from offset 0, to EOF; the fd's position is
        not used or moved) into the store, hashing in the same single read pass.

        The caller checks afterwards that the source did not change during the copy.
        ``BadRequest`` if ``fd`` is not a regular file; ``TooLarge`` past ``max_bytes``;
        ``Unavailable`` on any I/O error (reading the source or writing the store).
        """
        check_source(fd, max_bytes)
        tmp = TempFile(self._tmp, self._fault)
        try:
            tmp.open(direct=self._direct)
            digest, size = copy_and_hash(fd, tmp, self._chunk, max_bytes)
            return self._commit(tmp, digest, size)
        finally:
            tmp.discard()

    async def ingest_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        expected_sha256: str | None,
        max_bytes: int | None,
    ) -> StoredBlob:
        """Store an upload. Chunks are gathered into page-aligned buffers of ``chunk_size``, each
        written (direct I/O where possible) and hashed on two threads at once while the next is
        received; the event loop never blocks on disk. ``expected_sha256`` mismatch ->
        ``IntegrityError`` and nothing kept; over ``max_bytes`` -> ``TooLarge`` (raised as soon
        as the limit is passed). Errors from
        ``chunks`` itself propagate unchanged. On any exit the temp file is removed, also on
        cancellation (the worker removes it after its last operation)."""
        expected = None if expected_sha256 is None else _digest(expected_sha256)
        writer = ThreadPoolExecutor(1, thread_name_prefix="blobstore-upload-write")
        hashing = ThreadPoolExecutor(1, thread_name_prefix="blobstore-upload-hash")
        tmp = TempFile(self._tmp, self._fault)
        hasher = hashlib.sha256()
        # Page-aligned buffers: written with direct I/O and hashed on two threads at once,
        # while the event loop receives into the next buffer. A buffer is refilled only after
        # both its write and its hash are done.
        buffers = [mmap.mmap(-1, self._chunk) for _ in range(UPLOAD_BUFFERS)]
        busy: list[tuple[Future[None], Future[None]] | None] = [None] * UPLOAD_BUFFERS

        def finish(size: int) -> StoredBlob:
            tmp.seal()
            digest = hasher.hexdigest()
            if expected is not None and digest != expected:
                raise IntegrityError("upload does not match its expected SHA-256")
            return self._commit(tmp, digest, size)

        async def settle(i: int) -> None:
            pair, busy[i] = busy[i], None
            if pair is not None:
                await asyncio.wrap_future(pair[0])
                await asyncio.wrap_future(pair[1])

        def submit(i: int, n: int, offset: int) -> None:
            view = memoryview(buffers[i])[:n]
            busy[i] = (writer.submit(tmp.write, view, offset), hashing.submit(hasher.update, view))

        try:
            await asyncio.wrap_future(writer.submit(tmp.open, direct=self._direct))
            current = fill = offset = 0
            async for chunk in chunks:
                if max_bytes is not None and offset + fill + len(chunk) > max_bytes:
                    raise TooLarge(f"upload is over the {max_bytes}-byte limit")
                data = memoryview(chunk)
                while data:
                    if fill == 0:
                        await settle(current)
                    n = min(len(data), self._chunk - fill)
                    buffers[current][fill : fill + n] = data[:n]
                    fill, data = fill + n, data[n:]
                    if fill == self._chunk:
                        submit(current, fill, offset)
                        offset, fill = offset + fill, 0
                        current = (current + 1) % UPLOAD_BUFFERS
            if fill:
                await settle(current)
                submit(current, fill, offset)
                offset += fill
            for i in range(UPLOAD_BUFFERS):
                await settle(i)
            return await asyncio.wrap_future(writer.submit(finish, offset))
        finally:
            # Buffers are never closed here: a thread may still hold a view of one after an
            # error; they are freed with their last reference.
            cleanup = writer.submit(tmp.discard)  # runs after anything still queued
            writer.shutdown(wait=False)
            hashing.shutdown(wait=False)
            await asyncio.wrap_future(cleanup)

    # -- commit (shared by both ingest paths) -------------------------------------------------

    def _commit(self, tmp: TempFile, digest: str, size: int) -> StoredBlob:
        """Move the sealed ``tmp`` (whose bytes hash to ``digest``) into place, or discard it if
        the object exists and its bytes hash to ``digest`` (``IntegrityError`` if not). Either
        way the directory chain is fsynced before returning."""
        final = self.path_of(digest)
        chain = [final.parent.parent, final.parent]
        with unavailable("committing an object"):
            mkdirs(chain)
            try:
                existing: os.stat_result | None = os.lstat(final)
            except FileNotFoundError:
                existing = None
            if existing is not None:
                if not stat.S_ISREG(existing.st_mode) or hash_file(final) != digest:
                    raise IntegrityError(f"stored object {digest} does not match its address")
                tmp.discard()
                size = existing.st_size
            else:
                assert tmp.path is not None
                tmp.path.rename(final)
                tmp.renamed()
            for directory in reversed([self._objects, *chain]):
                fsync_dir(directory)
        return StoredBlob(digest, size, final, existing is not None)
