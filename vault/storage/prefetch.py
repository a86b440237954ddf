"""Read-ahead for sequential reads of stored objects (plain and sealed alike).

A reader that consumes a file front to back, doing CPU work (hashing, decrypting) between
reads, waits for the disk at every read the kernel's own read-ahead did not cover. Its window
is a per-device setting (``/sys/block/*/queue/read_ahead_kb``, often 128 KiB) and shrinks after
a seek, so on many machines a 1 MiB read is mostly a synchronous one. ``ReadAhead`` asks the
kernel (``posix_fadvise(POSIX_FADV_WILLNEED)``) to start reading the next ``window`` bytes
before the reader turns to its CPU work, so disk and CPU overlap.

Guarantees: it never reads or changes data and never fails a read: it is a hint, skipped where
the platform lacks ``posix_fadvise`` or the file has no descriptor (``io.BytesIO``), and an
``OSError`` from the hint is ignored. It issues at most one system call per ``window / 2`` bytes
consumed. Both read paths (``vault.storage.content.PlainObject``,
``vault.storage.sealing.SealedReader``) use it the same way, so their cold-read throughputs compare
like with like.
"""

from __future__ import annotations

import os
from typing import IO, Any

__all__ = ["WINDOW", "ReadAhead"]

WINDOW = 8 << 20


def _fileno(f: IO[Any] | int) -> int | None:
    if isinstance(f, int):
        return f
    try:
        return f.fileno()
    except (OSError, AttributeError, ValueError):  # io.UnsupportedOperation is an OSError
        return None


class ReadAhead:
    """Keeps the kernel reading up to ``window`` bytes past the reader's position."""

    def __init__(self, f: IO[Any] | int, end: int, window: int = WINDOW) -> None:
        self._fd = _fileno(f) if hasattr(os, "posix_fadvise") else None
        self._end = end
        self._window = window
        self._advised = 0

    def at(self, pos: int) -> None:
        """The reader is at ``pos`` and about to read on from there."""
        if self._fd is None or self._advised - pos > self._window // 2:
            return
        start = max(pos, self._advised)
        stop = min(self._end, pos + self._window)
        if stop <= start:
            return
        try:
            os.posix_fadvise(self._fd, start, stop - start, os.POSIX_FADV_WILLNEED)
        except OSError:
            self._fd = None
            return
        self._advised = stop
