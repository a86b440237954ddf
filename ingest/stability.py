"""Is a dock file finished? (DESIGN §4: a file still being written is not taken.)

Three independent signals, all of which acquisition requires:

* ``StabilityTracker`` (pure): size, mtime and inode unchanged over ``settle_s`` seconds across
  successive observations. A state seen once is never ready; any change restarts the clock.
* ``has_writer`` (Linux, best effort): some process we can see holds the file open for writing.
  Returns False where /proc is unavailable or another user's processes are hidden from us, so
  it can only delay acquisition, never be relied on alone.
* ``marker_satisfied``: for docks that write a completion marker, the marker exists.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

__all__ = [
    "Observation",
    "StabilityTracker",
    "has_writer",
    "marker_satisfied",
    "open_for_writing",
    "settled",
]

K = TypeVar("K", bound=Hashable)
PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Observation:
    """One look at a file: its size, mtime (ns) and inode, and when we looked (a monotonic
    clock, in seconds)."""

    size: int
    mtime_ns: int
    inode: int
    seen_at: float

    @classmethod
    def of(cls, st: os.stat_result, seen_at: float) -> Observation:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, seen_at)

    def same_state(self, other: Observation) -> bool:
        """Same size, mtime and inode (when it was seen does not matter)."""
        return (self.size, self.mtime_ns, self.inode) == (other.size, other.mtime_ns, other.inode)


def settled(first: Observation, last: Observation, settle_s: float) -> bool:
    """True iff ``first`` and ``last`` show the same state and ``last`` is at least
    ``settle_s`` seconds after ``first``."""
    return first.same_state(last) and last.seen_at - first.seen_at >= settle_s


class StabilityTracker(Generic[K]):
    """Remembers, per key (usually a path), the first observation of the file's current state.

    ``observe`` returns True (ready) only when the new observation shows the same state as one
    made at least ``settle_s`` earlier with no change seen in between. A first sighting, any
    change of size, mtime or inode, or a clock that went backwards, restarts the wait. Memory
    is one observation per key: call ``forget`` when a file is taken or disappears."""

    def __init__(self, settle_s: float) -> None:
        if not settle_s >= 0:
            raise ValueError("settle_s must be >= 0")
        self.settle_s = settle_s
        self._since: dict[K, tuple[Observation, float]] = {}  # first of the run, last seen_at

    def observe(self, key: K, obs: Observation) -> bool:
        since, last_seen = self._since.get(key, (None, 0.0))
        if since is None or not since.same_state(obs) or obs.seen_at < last_seen:
            self._since[key] = (obs, obs.seen_at)
            return False
        self._since[key] = (since, obs.seen_at)
        return settled(since, obs, self.settle_s)

    def forget(self, key: K) -> None:
        self._since.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._since

    def __len__(self) -> int:
        return len(self._since)


def _write_mode(flags: int) -> bool:
    return flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)


def _fd_flags(fdinfo: Path) -> int:
    for line in fdinfo.read_text().splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8)
    return 0


def _writers(proc: Path, target: tuple[int, int] | None) -> Iterator[tuple[int, int]]:
    """Yield (st_dev, st_ino) of regular files open for writing by processes we can inspect
    (only ``target``, if given). Processes and fds that vanish or are hidden are skipped."""
    try:
        pids = [entry.name for entry in os.scandir(proc) if entry.name.isdigit()]
    except OSError:
        return
    for pid in pids:
        fd_dir = proc / pid / "fd"
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue  # exited, or another user's process
        for link in fds:
            try:
                if not str(link.readlink()).startswith("/"):
                    continue  # socket:, pipe:, anon_inode: ...
                st = link.stat()  # the open file itself, even if renamed since
                key = (st.st_dev, st.st_ino)
                if not stat.S_ISREG(st.st_mode) or (target is not None and key != target):
                    continue
                if _write_mode(_fd_flags(proc / pid / "fdinfo" / link.name)):
                    yield key
            except (OSError, ValueError, IndexError):
                continue  # closed meanwhile, hidden, or an fdinfo we cannot read


def open_for_writing(proc: Path = PROC) -> set[tuple[int, int]]:
    """(st_dev, st_ino) of every regular file a visible process holds open for writing.

    One scan of /proc for a whole dock rescan; empty where /proc is unavailable."""
    return set(_writers(proc, None))


def has_writer(path: str | bytes | os.PathLike[str], *, proc: Path = PROC) -> bool:
    """True if a process we can see holds ``path``'s file open with O_WRONLY or O_RDWR.

    Best effort (see module docstring): False if /proc is unavailable or ``path`` is gone.
    A symlink is not followed (dock links are never taken anyway)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return any(True for _ in _writers(proc, (st.st_dev, st.st_ino)))


def marker_satisfied(path: str | bytes | os.PathLike[str], marker_suffix: str | None) -> bool:
    """True if no marker is required (``marker_suffix`` is None), or the regular file
    ``<path><marker_suffix>`` (e.g. ``VID0001.MP4`` + ``.done``) exists. The marker must not
    be a symlink. ``ValueError`` for an empty suffix or one containing '/'."""
    if marker_suffix is None:
        return True
    if not marker_suffix or "/" in marker_suffix or "\0" in marker_suffix:
        raise ValueError("marker suffix must be a non-empty file name suffix")
    marker = os.fsencode(path) + os.fsencode(marker_suffix)
    try:
        return stat.S_ISREG(os.lstat(marker).st_mode)
    except OSError:
        return False
