"""Overlap a producer's work with its consumer's: run an iterator on a worker thread.

``ahead(source, depth)`` yields exactly the items of ``source``, in order, while a worker thread
computes up to ``depth`` items ahead of the consumer. It pays off where both sides spend their
time in code that releases the GIL (AES-GCM in ``cryptography``, ``hashlib`` on large buffers,
file I/O): a sealed object read and hashed uses two cores instead of one.

Guarantees:

- The items, their order and the exception are those of ``source``: an exception raised by the
  source is raised to the consumer after the items before it, and nothing after it is produced.
- At most ``depth`` items wait in the queue, plus the one the worker is producing: memory is
  bounded by the caller's choice of item size.
- Only the worker thread touches ``source`` until the iteration ends; the consumer must not use
  what the source reads from (its file) meanwhile.
- Closing the returned generator (``close()``, garbage collection, an exception in the
  consumer) stops the worker after the item it is producing, closes ``source`` on the worker
  thread and waits for it: when ``close()`` returns, the source is no longer in use.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

__all__ = ["ahead"]

T = TypeVar("T")

_ITEM, _END, _ERROR = 0, 1, 2
_POLL = 0.05


def ahead(source: Iterator[T], depth: int = 1) -> Iterator[T]:
    """The items of ``source``, produced on a worker thread up to ``depth`` ahead."""
    if depth < 1:
        raise ValueError("depth must be at least 1")
    return _run(source, depth)


def _run(source: Iterator[T], depth: int) -> Iterator[T]:
    slots: queue.Queue[tuple[int, T | BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: int, value: T | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                slots.put((kind, value), timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in source:
                if not put(_ITEM, item):
                    return
            put(_END, None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            put(_ERROR, exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name="evault-ahead", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == _END:
                return
            if kind == _ERROR:
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
