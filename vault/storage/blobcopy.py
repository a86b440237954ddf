"""The blob store's file mechanics: temp files, the one-pass copy pipeline, durable helpers.

Split from ``vault.storage.blobstore`` (which owns addressing, commit and the public API); nothing
here knows about content addresses.

Guarantees:

* ``TempFile`` creates a new 0600 file in the store's ``tmp/`` (``O_EXCL``, never following a
  link) and holds an exclusive ``flock`` on it while open, so ``sweep_tmp`` in any process
  leaves it alone; ``discard`` closes and unlinks it and never raises.
* ``copy_and_hash`` reads its source exactly once, from offset 0 to EOF, writing and hashing the
  same bytes; memory is bounded by ``BUFFERS * chunk`` whatever the size of the source; on
  success the temp file is sealed (0400) and fsynced.
* Every ``OSError`` leaves as ``Unavailable`` (cause chained, no path in the message); a source
  that grows past ``max_bytes`` during the copy raises ``TooLarge``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import mmap
import os
import queue
import secrets
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from vault.errors import BadRequest, TooLarge, Unavailable

__all__ = [
    "ALIGN",
    "MAX_CHUNK",
    "TempFile",
    "WriteFault",
    "copy_and_hash",
    "fsync_dir",
    "hash_file",
    "mkdirs",
    "unavailable",
    "unlink_unless_locked",
]

_log = logging.getLogger("vault.storage.blobstore")

BUFFERS = 8  # buffers per ingest: peak memory BUFFERS * chunk_size (<= 64 MiB)
_WRITEBACK_EVERY = 8 << 20  # start writeback this often so the final fsync has little left
ALIGN = 4096  # direct I/O: offsets, lengths and buffers aligned to this
MAX_CHUNK = 8 << 20
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_PROBE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


class WriteFault(Protocol):
    """Fault-injection seam: called before every write to a temp file (``None`` in production)."""

    def before_write(self, offset: int) -> None:
        """Raise (e.g. ``OSError(ENOSPC)``) to make the write at ``offset`` fail."""


@contextmanager
def unavailable(action: str) -> Iterator[None]:
    """Re-raise ``OSError`` as ``Unavailable`` naming ``action`` (never a path), cause chained."""
    try:
        yield
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        raise Unavailable(f"blob store: {action} failed: {reason}") from exc


def fsync_dir(path: Path) -> None:
    """fsync the directory ``path`` (makes renames and creations in it durable)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mkdirs(chain: list[Path]) -> None:
    """Create each missing directory of ``chain`` (outermost first) 0700, fsyncing its parent."""
    for directory in chain:
        try:
            directory.mkdir(0o700)
        except FileExistsError:
            continue
        directory.chmod(0o700)
        fsync_dir(directory.parent)


def unlink_unless_locked(path: Path) -> bool:
    """Unlink ``path`` unless a live writer holds its flock; True if this call removed it.
    A symlink is unlinked, never followed."""
    try:
        fd = -1 if path.is_symlink() else os.open(path, _PROBE_FLAGS)
        try:
            if fd >= 0:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink()
            return True
        finally:
            if fd >= 0:
                os.close(fd)
    except (BlockingIOError, FileNotFoundError):
        return False  # in use, or already gone


def hash_file(path: Path) -> str:
    """SHA-256 of the regular file at ``path`` (links not followed)."""
    with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class TempFile:
    """One uncommitted file in ``tmp/``, flock-ed while open so ``sweep_tmp`` leaves it alone.

    Created lazily by ``open()``; ``discard()`` is idempotent and safe before ``open()``.
    """

    def __init__(self, tmp_dir: Path, fault: WriteFault | None) -> None:
        self._dir = tmp_dir
        self._fault = fault
        self.fd = -1
        self.path: Path | None = None
        self._hinted = 0
        self._direct = False

    @unavailable("creating a temp file")
    def open(self, *, direct: bool = False) -> None:
        """Create and lock the file. ``direct``: write with O_DIRECT where the file system
        allows it (then ``write`` must get page-aligned buffers)."""
        linked = False
        while not linked:
            self.discard()
            path = self._dir / f"{secrets.token_hex(16)}.tmp"
            self.fd, self.path = os.open(path, _NEW_FILE_FLAGS, 0o600), path
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
                linked = os.fstat(self.fd).st_nlink > 0  # else swept between create and lock
            except BaseException:
                self.discard()
                raise
        if direct and _O_DIRECT:
            self._set_direct(True)

    def _set_direct(self, on: bool) -> None:
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        try:
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)
        except OSError:
            if not on:
                raise
            on = False  # this file system has no direct I/O: stay buffered
        self._direct = on

    @unavailable("writing a temp file")
    def write(self, data: memoryview, offset: int) -> None:
        """Append ``data`` (which starts at ``offset``). Direct I/O (no page-cache copy, no
        dirty pages for fsync to flush) while offsets and lengths are aligned; the unaligned
        tail, or anything the file system refuses to take direct, goes through the cache."""
        if self._fault is not None:
            self._fault.before_write(offset)
        if self._direct and (offset | len(data)) % ALIGN:
            self._set_direct(False)
        end = offset + len(data)
        while data:
            try:
                written = os.write(self.fd, data)
            except OSError as exc:
                if not (self._direct and exc.errno == errno.EINVAL):
                    raise
                self._set_direct(False)
                continue
            if written <= 0:
                raise OSError(errno.EIO, "short write")
            data = data[written:]
            if data and self._direct:
                self._set_direct(False)
        if self._direct:
            return
        if end - self._hinted >= _WRITEBACK_EVERY and hasattr(os, "posix_fadvise"):
            # On Linux DONTNEED starts asynchronous writeback of the dirty range: the disk works
            # while we hash, instead of all at the final fsync. A hint only; fsync decides.
            os.posix_fadvise(self.fd, self._hinted, end - self._hinted, os.POSIX_FADV_DONTNEED)
            self._hinted = end

    @unavailable("writing a temp file")
    def seal(self) -> None:
        """Make the file read-only and durable (data and mode) before it is renamed."""
        os.fchmod(self.fd, 0o400)
        os.fsync(self.fd)

    def renamed(self) -> None:
        """The file now lives under ``objects/``: close it, never unlink it."""
        self.path = None
        self.discard()

    def discard(self) -> None:
        """Close and unlink. Errors are logged, not raised: they may only leave a stale temp
        for ``sweep_tmp`` (never lose data) and must not mask the error being handled."""
        fd, self.fd = self.fd, -1
        path, self.path = self.path, None
        try:
            if fd >= 0:
                os.close(fd)
        except OSError as exc:
            _log.warning("blob store: could not close a temp file: %s", exc)
        try:
            if path is not None:
                path.unlink(missing_ok=True)
        except OSError as exc:
            _log.warning("blob store: could not remove a temp file: %s", exc)


def check_source(fd: int, max_bytes: int | None) -> os.stat_result:
    """The source open at ``fd`` must be a regular file within ``max_bytes``; tells the kernel
    it will be read once, sequentially. ``BadRequest``, ``TooLarge`` or ``Unavailable``."""
    with unavailable("reading the source"):
        st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise BadRequest("source is not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise TooLarge(f"source is over the {max_bytes}-byte limit")
    if hasattr(os, "posix_fadvise"):
        with unavailable("reading the source"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    return st


def copy_and_hash(src: int, tmp: TempFile, chunk: int, max_bytes: int | None) -> tuple[str, int]:
    """Copy the file open at ``src`` into the open ``tmp`` and hash it; return (hex, size).

    Pipeline: a copier thread fills a buffer from ``src`` and writes it to ``tmp``; this thread
    hashes the same buffer, then hands it back. Reading+writing and hashing overlap; only
    ``BUFFERS`` page-aligned buffers exist, and a buffer is never modified while it is being
    written or hashed. The copier seals (fsyncs) while the last buffers are hashed."""
    free: queue.SimpleQueue[mmap.mmap | None] = queue.SimpleQueue()
    full: queue.SimpleQueue[tuple[mmap.mmap, int] | None] = queue.SimpleQueue()
    for _ in range(BUFFERS):
        free.put(mmap.mmap(-1, chunk))
    stop = threading.Event()

    def copier() -> int:
        offset = 0
        try:
            while True:
                buf = free.get()
                if buf is None or stop.is_set():
                    return offset
                with memoryview(buf) as view:
                    n = 0
                    while n < len(view):  # fill it: only the last write may be short
                        with unavailable("reading the source"):
                            got = os.preadv(src, [view[n:]], offset + n)
                        if got == 0:
                            break
                        n += got
                    if n == 0:
                        break
                    if max_bytes is not None and offset + n > max_bytes:
                        raise TooLarge(f"source is over the {max_bytes}-byte limit")
                    tmp.write(view[:n], offset)
                offset += n
                full.put((buf, n))
            tmp.seal()
            return offset
        finally:
            full.put(None)

    hasher = hashlib.sha256()
    with ThreadPoolExecutor(1, thread_name_prefix="blobstore-copy") as pool:
        copied = pool.submit(copier)
        try:
            while (item := full.get()) is not None:
                buf, n = item
                with memoryview(buf) as view:
                    hasher.update(view[:n])
                free.put(buf)
        finally:
            stop.set()
            free.put(None)  # wake the copier if it waits for a buffer
        size = copied.result()
    return hasher.hexdigest(), size
