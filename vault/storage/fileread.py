"""Reading stored objects by position: what lets several readers share one open file.

Guarantees: ``read_at`` fills a buffer from an offset with positional reads (``os.preadv``) on
a descriptor, neither using nor moving the file position, so readers of one file on different
threads or descriptors never disturb each other; a file-like object without a descriptor is read
with seek and read instead. A file that ends before the buffer is full raises
``IntegrityError`` (stored objects never shrink while open). ``read_cached`` reads only what the
kernel holds in memory and never waits for the disk.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from vault.errors import IntegrityError

__all__ = ["fileno_of", "read_at", "read_cached"]


def _readinto_exact(f: BinaryIO, buf: memoryview) -> None:
    got = 0
    while got < len(buf):
        n = f.readinto(buf[got:])  # type: ignore[attr-defined]
        if not n:
            raise IntegrityError("sealed object ended early (truncated while open?)")
        got += n


def fileno_of(f: BinaryIO) -> int | None:
    """The descriptor of ``f``, or None if it has none (``io.BytesIO``, a remote object)."""
    try:
        return f.fileno()
    except (OSError, AttributeError, ValueError):  # io.UnsupportedOperation is an OSError
        return None


def read_at(f: BinaryIO, fd: int | None, buf: memoryview, offset: int) -> None:
    """Fill ``buf`` from ``offset`` (module docstring); ``fd``: ``fileno_of(f)``."""
    if fd is None:
        f.seek(offset)
        _readinto_exact(f, buf)
        return
    got = 0
    while got < len(buf):
        n = os.preadv(fd, [buf[got:]], offset + got)
        if not n:
            raise IntegrityError("sealed object ended early (truncated while open?)")
        got += n


_NOWAIT = getattr(os, "RWF_NOWAIT", None)


def read_cached(fd: int | None, buf: memoryview, offset: int) -> bool:
    """Fill ``buf`` from ``offset`` only if the kernel holds all of it in memory (a read that
    never waits for the disk: ``RWF_NOWAIT``); False otherwise, ``buf`` then being undefined."""
    if _NOWAIT is None or fd is None:
        return False
    try:
        return os.preadv(fd, [buf], offset, _NOWAIT) == len(buf)
    except OSError:  # EAGAIN: not all in memory; EOPNOTSUPP: not offered on this file system
        return False
