"""Reusable large buffers: fresh memory for every MiB decrypted costs more than decrypting it.

A new ``bytearray`` of a MiB is zero-filled and, above malloc's mapping threshold, its pages
are faulted in one by one and handed back to the kernel when it is freed. Readers that go
through many such buffers (``vault.storage.sealing.SealedReader.read_views``) take them from
here and give them back when done.

Guarantees:

- ``take(n)`` returns a buffer of at least ``n`` bytes that nothing else holds a view of: a
  buffer given back is handed out again only once every ``memoryview`` of it (a piece still
  being sent, queued, or kept by a consumer) is gone. This is checked on the buffer itself (a
  ``bytearray`` with a live view cannot change its size), not assumed from how consumers
  behave, so a consumer that keeps pieces simply gets fresh buffers under its own.
- Its content is whatever it held before: callers overwrite what they use, and hand out views
  of only what they wrote.
- At most ``KEEP`` buffers are kept (of at most ``MAX_SIZE`` bytes each); thread-safe.
"""

from __future__ import annotations

import threading

__all__ = ["KEEP", "MAX_SIZE", "give", "take"]

KEEP = 16
MAX_SIZE = 4 << 20

_lock = threading.Lock()
_free: list[bytearray] = []


def _unshared(buf: bytearray) -> bool:
    """Whether no view of ``buf`` is alive (resizing one that has a view is refused)."""
    try:
        buf.append(0)
    except BufferError:
        return False
    del buf[-1]
    return True


def take(n: int) -> bytearray:
    """A buffer of at least ``n`` bytes nobody else holds (a new one if none is free)."""
    with _lock:
        for i, buf in enumerate(_free):
            if len(buf) >= n and _unshared(buf):
                del _free[i]
                return buf
    return bytearray(n)


def give(buf: bytearray) -> None:
    """Hand ``buf`` back; views of it may still be alive (it waits until they are gone)."""
    if len(buf) > MAX_SIZE:
        return
    with _lock:
        if len(_free) < KEEP:
            _free.append(buf)
