"""Dock watchers: notice files, wait until they are finished, hand them to the Acquirer.

One ``DockWatcher`` per dock: a watchdog observer (recursive, never following links) marks
paths as pending; a startup scan and a periodic rescan (every ``rescan_seconds``) add every file
the events missed. Each tick (a quarter of the settle time, 50 ms to 1 s) every pending path is
``lstat``-ed and fed to a ``StabilityTracker``: events only mark paths, so bursts of writes are
debounced into observations. A path is handed to ``Acquirer.acquire_path`` only when its size,
mtime and inode stayed unchanged for ``settle_seconds``, its completion marker exists (docks
that use one), and no visible process holds it open for writing.

Guarantees:

* Single flight: a path is never acquired twice at once; at most ``limit`` acquisitions run at a
  time across all docks (a shared semaphore).
* Skipped, never taken: receipts, markers, sidecars (``<media name>.json``), hidden files
  (names starting with '.', including every temp file this service writes) and anything under
  ``.released/`` or a hidden folder. Links, FIFOs and devices are not skipped: the Acquirer
  quarantines them (it never follows or opens them).
* A file that was taken and kept, or refused and left in place, is not offered again while its
  size, times, inode and device stay the same. A deferred file must settle again (and after an
  error waits an increasing back-off, up to a minute) before it is retried.
* The watcher never deletes or moves anything itself; the loop survives any error (logged and
  counted as ``watcher`` failures).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from ingest import metrics
from ingest.acquire import Acquirer, Deferred, Outcome
from ingest.config import DockConfig
from ingest.dockfs import RELEASED, walk
from ingest.quarantine import Quarantined
from ingest.receipts import RECEIPT_SUFFIX, Receipt, SourceState
from ingest.stability import Observation, StabilityTracker, marker_satisfied, open_for_writing
from vault.retry import backoff

__all__ = ["DockWatcher", "ignored"]

log = logging.getLogger("evault.ingest")

_RETRY_REASONS = {"store", "ledger", "receipt", "open", "error"}
_FIRST_BACKOFF = 1.0
_MAX_BACKOFF = 60.0


def ignored(dock: DockConfig, rel: bytes) -> bool:
    """True for paths (relative to the dock root) the watcher never offers (module docstring)."""
    parts = rel.split(b"/")
    name = parts[-1]
    if any(p == RELEASED or p.startswith(b".") for p in parts[:-1]) or name.startswith(b"."):
        return True
    if name.endswith(RECEIPT_SUFFIX):
        return True
    if dock.marker and name.endswith(os.fsencode(dock.marker)):
        return True
    if name.endswith(b".json"):
        stem_ext = name[:-5].rpartition(b".")[2].decode("ascii", "replace").lower()
        return b"." in name[:-5] and stem_ext in dock.extensions
    return False


class _Events(FileSystemEventHandler):
    """Watchdog callback (observer thread): forwards paths to the watcher's loop."""

    def __init__(self, watcher: DockWatcher, loop: asyncio.AbstractEventLoop) -> None:
        self._watcher = watcher
        self._loop = loop

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = [event.src_path, getattr(event, "dest_path", "")]
        for path in paths:
            if path:
                with contextlib.suppress(RuntimeError):  # loop closed at shutdown
                    self._loop.call_soon_threadsafe(
                        self._watcher.notice, os.fsencode(path), event.is_directory
                    )


class DockWatcher:
    """Watches one dock folder; see the module docstring."""

    def __init__(self, dock: DockConfig, acquirer: Acquirer, limit: asyncio.Semaphore) -> None:
        self.dock = dock
        self._root = os.fsencode(os.path.abspath(dock.path))  # noqa: PTH100 (links unresolved)
        self._acquirer = acquirer
        self._limit = limit
        self._tracker: StabilityTracker[bytes] = StabilityTracker(dock.settle_seconds)
        self._pending: set[bytes] = set()
        self._settled: dict[bytes, SourceState] = {}  # taken-and-kept or left in place
        self._retry: dict[bytes, tuple[float, int]] = {}  # path -> (not before, attempts)
        self._in_flight: dict[bytes, asyncio.Task[None]] = {}
        self._rescan_now = True
        self._observer: BaseObserver | None = None
        self._task: asyncio.Task[None] | None = None
        self.tick = min(max(dock.settle_seconds / 4, 0.05), 1.0)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        Path(self.dock.path).mkdir(parents=True, exist_ok=True, mode=0o700)
        observer = Observer()
        handler = _Events(self, asyncio.get_running_loop())
        observer.schedule(handler, str(self.dock.path), recursive=True, follow_symlink=False)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.dock.id}")

    async def stop(self, grace: float = 30.0) -> None:
        """Stop watching; let acquisitions in flight finish (cancelled after ``grace`` s: a
        cancelled one leaves its source in the dock)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._observer is not None:
            self._observer.stop()
            await asyncio.to_thread(self._observer.join, 10)
        tasks = list(self._in_flight.values())
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def alive(self) -> bool:
        observer_ok = self._observer is not None and self._observer.is_alive()
        return observer_ok and self._task is not None and not self._task.done()

    @property
    def backlog(self) -> int:
        return len(self._pending)

    # -- events and scans ---------------------------------------------------------------------

    def notice(self, path: bytes, is_directory: bool) -> None:
        """A file-system event for ``path`` (called on the loop)."""
        if is_directory:
            self._rescan_now = True  # a folder appeared or moved in: list it
        elif (rel := self._rel(path)) is not None and not ignored(self.dock, rel):
            self._pending.add(path)

    def _rel(self, path: bytes) -> bytes | None:
        prefix = self._root + b"/"
        return path[len(prefix) :] if path.startswith(prefix) else None

    def _scan(self) -> list[bytes]:
        out = []
        for path in walk(self._root):
            rel = self._rel(path)
            if rel is not None and not ignored(self.dock, rel):
                out.append(path)
        return out

    async def _run(self) -> None:
        next_scan = 0.0
        while True:
            try:
                now = time.monotonic()
                if self._rescan_now or now >= next_scan:
                    self._rescan_now = False
                    next_scan = now + self.dock.rescan_seconds
                    self._pending.update(await asyncio.to_thread(self._scan))
                for path in await self._ready():
                    self._in_flight[path] = asyncio.create_task(self._take(path))
            except Exception:
                # Loop boundary: log, count and keep watching. Nothing is deleted or moved here.
                log.exception("dock %s: watcher tick failed", self.dock.id)
                metrics.FAILURES.labels(self.dock.id, "watcher").inc()
            metrics.BACKLOG.labels(self.dock.id).set(len(self._pending))
            await asyncio.sleep(self.tick)

    # -- stability ----------------------------------------------------------------------------

    async def _ready(self) -> list[bytes]:
        """Observe every pending path; return those ready to acquire. File-system reads run in
        a worker thread; the watcher's state is only touched here, on the loop."""
        now = time.monotonic()
        paths = [
            p
            for p in self._pending
            if p not in self._in_flight and self._retry.get(p, (0.0, 0))[0] <= now
        ]
        stats = await asyncio.to_thread(_lstat_all, paths)
        now = time.monotonic()
        candidates: list[tuple[bytes, os.stat_result]] = []
        for path, st in stats.items():
            if st is None or stat.S_ISDIR(st.st_mode):
                self._forget(path)
                continue
            known = self._settled.get(path)
            if known is not None:
                if known == SourceState.of(st):
                    self._pending.discard(path)
                    self._tracker.forget(path)
                    continue
                del self._settled[path]
            if self._tracker.observe(path, Observation.of(st, now)):
                candidates.append((path, st))
        if not candidates:
            return []
        return await asyncio.to_thread(_gate, candidates, self.dock.marker)

    def _forget(self, path: bytes) -> None:
        self._pending.discard(path)
        self._tracker.forget(path)
        self._settled.pop(path, None)
        self._retry.pop(path, None)

    # -- acquisition --------------------------------------------------------------------------

    async def _take(self, path: bytes) -> None:
        try:
            async with self._limit:
                outcome: Outcome = await self._acquirer.acquire_path(self.dock, path)
        except Exception as exc:
            # Task boundary: the Acquirer already turns every expected failure into Deferred;
            # anything else is logged and counted, the source stays, it is retried later.
            log.exception("dock %s: acquisition failed", self.dock.id)
            outcome = Deferred("error", type(exc).__name__)
            metrics.FAILURES.labels(self.dock.id, "error").inc()
        finally:
            self._in_flight.pop(path, None)
        self._after(path, outcome)

    def _after(self, path: bytes, outcome: Outcome) -> None:
        try:
            self._settle_outcome(path, outcome)
        finally:
            metrics.BACKLOG.labels(self.dock.id).set(len(self._pending))

    def _settle_outcome(self, path: bytes, outcome: Outcome) -> None:
        self._tracker.forget(path)
        if isinstance(outcome, Deferred):
            if outcome.reason in _RETRY_REASONS:
                attempt = self._retry.get(path, (0.0, 0))[1] + 1
                delay = backoff(attempt, _FIRST_BACKOFF, _MAX_BACKOFF)
                self._retry[path] = (time.monotonic() + delay, attempt)
            log.info("dock %s: deferred (%s) %s", self.dock.id, outcome.reason, outcome.detail)
            return
        self._retry.pop(path, None)
        try:
            st = os.lstat(path)
        except OSError:
            self._forget(path)  # released (moved, deleted) or quarantined
            return
        if isinstance(outcome, Receipt) and outcome.source is not None:
            if outcome.source == SourceState.of(st):
                self._settled[path] = outcome.source
                self._pending.discard(path)
        elif isinstance(outcome, Quarantined) and outcome.stored_as is None:
            self._settled[path] = SourceState.of(st)
            self._pending.discard(path)


def _lstat_all(paths: list[bytes]) -> dict[bytes, os.stat_result | None]:
    out: dict[bytes, os.stat_result | None] = {}
    for path in paths:
        try:
            out[path] = os.lstat(path)
        except OSError:
            out[path] = None
    return out


def _gate(candidates: list[tuple[bytes, os.stat_result]], marker: str) -> list[bytes]:
    """The settled candidates that no visible process writes and whose marker exists (regular
    files only: links, FIFOs and devices go straight to the Acquirer, which refuses them)."""
    regular = any(stat.S_ISREG(st.st_mode) for _, st in candidates)
    writers = open_for_writing() if regular else set()
    ready = []
    for path, st in candidates:
        if stat.S_ISREG(st.st_mode):
            if (st.st_dev, st.st_ino) in writers:
                continue
            if marker and not marker_satisfied(path, marker):
                continue
        ready.append(path)
    return ready
