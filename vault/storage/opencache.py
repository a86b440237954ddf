"""Stored objects kept open between reads: a playback's Range requests open one object again
and again.

``OpenObjects`` keeps, per content address, one open descriptor of a file-store object and, for
a sealed object, what opening it established (``vault.storage.sealing.SealedState``: the chunk
cipher derived from its unwrapped data key, its authenticated size and last chunk). Opening the
same object again is then a ``dup`` of that descriptor on the calling thread: no worker thread,
no file lookup, no key unwrap or derivation, no decryption of the last chunk.

Only ``SealingContentStore.open(..., reuse=True)`` goes through it (the HTTP content routes);
every other open (scrub, integrity reports, jobs) opens what is stored at that moment.

Guarantees:

- An entry is used only for the key row it was opened with: ``SealingContentStore`` passes the
  row it would open the object with now (itself at most ``KEY_CACHE_SECONDS`` old), so a
  re-wrap (key rotation), a re-seal or a removed key row drops the entry and the object is
  opened afresh. An entry is never used more than ``max_age`` seconds after it was opened,
  however often it is used; at most ``limit`` are kept (the least recently used is dropped
  first). A dropped entry's descriptor is closed; ``forget`` drops one at once (its object was
  removed or re-sealed by this process).
- Every reader gets a descriptor of its own (``os.dup``): dropping an entry never closes one a
  reader still uses. Reads are positional, so readers never share a file position.
- What is served does not change. This cache decides nothing: every request is decided, and
  recorded, before its object is opened (a revoked token, a relabel or a scrub failure refuse
  the request before it gets here). A sealed object's chunks are each authenticated as they are
  read, and ``SealedReader.reopen`` refuses a file whose length changed since it was opened; a
  plain object is the same file, whose content is its address.
- Key material stays in this process's memory: the chunk cipher (the data key itself is not
  kept) and the last chunk's plaintext, dropped with their entry; ``repr`` shows neither and
  nothing here logs. Entries are touched from the event loop's thread only (not thread-safe).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from vault.storage.keyring import ObjectKey
from vault.storage.sealing import SealedState

__all__ = ["OPEN_LIMIT", "OPEN_SECONDS", "OpenEntry", "OpenObjects"]

OPEN_SECONDS = 10.0
"""How long after opening an object its entry may be used (module docstring)."""
OPEN_LIMIT = 64
"""How many objects are kept open at most (one descriptor each)."""


@dataclass(slots=True)
class OpenEntry:
    """One kept object: the key row it was opened with (None: plain), its file, its path
    (plain objects, for ``as_file``), what opening a sealed one established, and when."""

    key: ObjectKey | None
    f: BinaryIO = field(repr=False)
    path: Path | None
    state: SealedState | None
    opened: float

    def dup(self) -> BinaryIO:
        """A new descriptor of the same open file, for one reader (the caller closes it)."""
        fd = os.dup(self.f.fileno())
        try:
            return open(fd, "rb", buffering=0)  # the reader closes it
        except BaseException:
            os.close(fd)
            raise


class OpenObjects:
    """The objects this process keeps open (module docstring)."""

    def __init__(
        self,
        max_age: float = OPEN_SECONDS,
        limit: int = OPEN_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age = max_age
        self._limit = limit
        self._clock = clock
        self._entries: dict[str, OpenEntry] = {}  # sha256 -> entry, least recently used first

    def __len__(self) -> int:
        return len(self._entries)

    def now(self) -> float:
        return self._clock()

    def get(self, sha256: str, key: ObjectKey | None) -> OpenEntry | None:
        """The entry for ``sha256`` opened with exactly ``key``, while it may be used; else
        None (an entry that may no longer be used is dropped)."""
        entry = self._entries.pop(sha256, None)
        if entry is None:
            return None
        if entry.key != key or self._clock() - entry.opened > self.max_age:
            entry.f.close()
            return None
        self._entries[sha256] = entry
        return entry

    def keep(self, sha256: str, entry: OpenEntry) -> None:
        """Keep ``entry`` (replacing, and closing, one kept for the same object)."""
        old = self._entries.pop(sha256, None)
        if old is not None and old is not entry:
            old.f.close()
        if self._limit <= 0:
            entry.f.close()
            return
        self._entries[sha256] = entry
        while len(self._entries) > self._limit:
            self._entries.pop(next(iter(self._entries))).f.close()

    def forget(self, sha256: str) -> None:
        """Drop the entry of ``sha256``, if any."""
        entry = self._entries.pop(sha256, None)
        if entry is not None:
            entry.f.close()

    def clear(self) -> None:
        """Drop every entry."""
        while self._entries:
            self._entries.popitem()[1].f.close()
