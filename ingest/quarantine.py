"""Quarantine: dock files that policy refuses, moved aside with a reason and a ledger entry.

Refused are: a disallowed extension, a file over the dock's size limit, a symlink, a hard link
(more than one name), anything that is not a regular file (FIFO, socket, device), and a file we
may not read. Each goes to ``<quarantine root>/<dock>/<UTC timestamp>-<safe name>``, where the
safe name keeps only ``[A-Za-z0-9._-]`` of the original (the exact name is in the reason file
and, committed, in the ledger).

Guarantees:

* Links are never followed: a symlink is moved as itself (``rename`` of the link, never its
  target), and nothing here ever opens a refused file except a regular file copied across file
  systems (opened ``O_NOFOLLOW``).
* Nothing is deleted unrecorded. Order: the reason file (``<stored>.reason.json``, naming the
  source and reason, ``ledger_index: null``) is written durably first; then the file is renamed
  (both directories fsynced); then the ``quarantined`` entry and the ``quarantine`` row are
  committed in one transaction; then the reason file is rewritten with the ledger index. A crash
  or database failure after the move leaves a pending reason file that ``recover`` records.
* Across file systems (EXDEV) a regular file or symlink is copied durably, then its source
  unlinked; anything else is left in place, still recorded, ``stored_as`` empty.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.dockfs import DockPath, atomic_write, display, ensure_dir, name_b64
from vault.db import Conn
from vault.evidence import quarantine as quarantine_log
from vault.ledger import Ledger, make_entry
from vault.ledger.entry import rfc3339

__all__ = ["REASONS", "Quarantine", "Quarantined"]

log = logging.getLogger("evault.ingest")

REASONS = (
    "extension",
    "too-large",
    "symlink",
    "hardlink",
    "not-regular",
    "unreadable",
    "replaced",
)
REASON_SUFFIX = b".reason.json"
_UNSAFE = re.compile(rb"[^A-Za-z0-9._-]")

# A refusal: (reason, detail).
_Verdict = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A refused file: why, its ledger entry, and where it now is (None: left in place)."""

    reason: str
    ledger_index: int
    stored_as: Path | None
    source_name: str


def safe_name(name: bytes) -> bytes:
    """A rendering of ``name`` that is harmless anywhere: ``[A-Za-z0-9._-]``, no leading dot,
    at most 100 bytes."""
    return _UNSAFE.sub(b"_", name)[:100].lstrip(b".") or b"file"


class Quarantine:
    """Moves refused dock files to ``root/<dock>/`` and records them (module docstring)."""

    def __init__(self, root: Path, ledger: Ledger) -> None:
        self.root = Path(root)
        self._ledger = ledger

    async def put(
        self,
        dock_id: str,
        dp: DockPath,
        reason: str,
        detail: str,
        *,
        move: bool = True,
        judged: os.stat_result | None = None,
        judge: Callable[[os.stat_result], _Verdict | None] | None = None,
    ) -> Quarantined:
        """Quarantine ``dp`` (moved when ``move``, else recorded and left in place).

        A name can be swapped between the decision and the move (rename works on names). When
        ``judged`` (the ``lstat`` the decision was made on) is not what was moved, the moved
        item is judged again with ``judge`` and the record says what was really moved: its own
        reason, or ``replaced`` if it would have been acceptable (take it by hand with
        ``evault ingest``). Either way the record is true and nothing is lost."""
        if reason not in REASONS:
            raise ValueError(f"unknown quarantine reason {reason!r}")
        record = {
            "v": 1,
            "reason": reason,
            "detail": detail,
            "dock_id": dock_id,
            "source_name": display(dp.rel),
            "source_name_b64": name_b64(dp.rel),
            "quarantined_at": rfc3339(),
            "ledger_index": None,
        }
        stored: Path | None = None
        if move:
            stored = await asyncio.to_thread(self._move, dock_id, dp, record, judged, judge)
        index = await self._record(record, stored)
        if stored is not None:
            record["ledger_index"] = index
            await asyncio.to_thread(self._write_reason, stored, record)
        return Quarantined(str(record["reason"]), index, stored, display(dp.rel))

    async def _record(self, record: dict[str, Any], stored: Path | None) -> int:
        stored_as = "" if stored is None else str(stored)
        secrets_ = {
            "file_name": record["source_name"],
            "dock_id": record["dock_id"],
            "stored_as": stored_as,
        }
        if record.get("source_name_b64"):
            secrets_["file_name_bytes"] = record["source_name_b64"]
        entry = make_entry("quarantined", {"reason": record["reason"]}, secrets_)

        async def effect(conn: Conn, indexes: list[int]) -> None:
            await quarantine_log.record(
                conn,
                indexes[0],
                record["dock_id"],
                record["source_name"],
                stored_as,
                f"{record['reason']}: {record['detail']}",
            )

        [index] = await self._ledger.append([entry], effect=effect)
        return index

    def _write_reason(self, stored: Path, record: dict[str, Any]) -> None:
        parent = os.open(stored.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            data = (json.dumps(record, ensure_ascii=False, indent=1) + "\n").encode()
            atomic_write(parent, os.fsencode(stored.name) + REASON_SUFFIX, data, 0o600)
        finally:
            os.close(parent)

    def _move(
        self,
        dock_id: str,
        dp: DockPath,
        record: dict[str, Any],
        judged: os.stat_result | None,
        judge: Callable[[os.stat_result], _Verdict | None] | None,
    ) -> Path | None:
        """Reason file, then rename (or cross-device copy); returns the new path or None."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            qfd = ensure_dir(root_fd, os.fsencode(dock_id), 0o700)
        finally:
            os.close(root_fd)
        try:
            while True:
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ").encode()
                dest = stamp + b"-" + safe_name(dp.name)
                try:
                    os.stat(dest, dir_fd=qfd, follow_symlinks=False)
                except FileNotFoundError:
                    break
            where = self.root / dock_id / os.fsdecode(dest)
            record["stored_as"] = str(where)
            data = (json.dumps(record, ensure_ascii=False, indent=1) + "\n").encode()
            atomic_write(qfd, dest + REASON_SUFFIX, data, 0o600)
            try:
                os.rename(dp.name, dest, src_dir_fd=dp.fd, dst_dir_fd=qfd)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    os.unlink(dest + REASON_SUFFIX, dir_fd=qfd)
                    raise
                if not _copy_across(dp, qfd, dest):
                    os.unlink(dest + REASON_SUFFIX, dir_fd=qfd)
                    return None
                judged = None  # a copy has its own inode
            os.fsync(qfd)
            os.fsync(dp.fd)
            moved = os.stat(dest, dir_fd=qfd, follow_symlinks=False)
            if judged is not None and _identity(moved) != _identity(judged):
                verdict = judge(moved) if judge is not None else None
                if verdict is None:
                    verdict = ("replaced", "replaced by an acceptable file while quarantined")
                record["reason"], record["detail"] = verdict[0], verdict[1] + " (name swapped)"
                data = (json.dumps(record, ensure_ascii=False, indent=1) + "\n").encode()
                atomic_write(qfd, dest + REASON_SUFFIX, data, 0o600)
            return where
        finally:
            os.close(qfd)

    async def recover(self) -> int:
        """Record every pending reason file (a move whose ledger entry never committed);
        returns how many were recorded."""
        pending = await asyncio.to_thread(self._pending)
        done = 0
        for path, record in pending:
            stored = path.with_name(path.name[: -len(REASON_SUFFIX)])
            known = await quarantine_log.recorded_index(self._ledger.pool, str(stored))
            index = known if known is not None else await self._record(record, stored)
            record["ledger_index"] = index
            await asyncio.to_thread(self._write_reason, stored, record)
            done += known is None
        return done

    def _pending(self) -> list[tuple[Path, dict[str, Any]]]:
        out: list[tuple[Path, dict[str, Any]]] = []
        if not self.root.is_dir():
            return out
        for path in self.root.glob("*/*.reason.json"):
            try:
                record = json.loads(path.read_bytes())
            except (OSError, ValueError):
                log.warning("quarantine: unreadable reason file %s", path)
                continue
            if isinstance(record, dict) and record.get("ledger_index") is None:
                out.append((path, record))
        return out


def _identity(st: os.stat_result) -> tuple[int, ...]:
    """Enough to tell a moved item from the one judged, inode reuse included (a name swapped
    for a new file can get the freed inode number of the old one)."""
    return (st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns)


def _copy_across(dp: DockPath, qfd: int, dest: bytes) -> bool:
    """Copy a symlink or readable regular file to ``dest`` durably, then unlink the source.
    False (nothing changed) for anything else."""
    st = dp.lstat()
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(dp.name, dir_fd=dp.fd), dest, dir_fd=qfd)
    elif stat.S_ISREG(st.st_mode):
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            src = os.open(dp.name, flags, dir_fd=dp.fd)
        except PermissionError:
            return False
        try:
            out = os.open(
                dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=qfd
            )
            try:
                while chunk := os.read(src, 1 << 20):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view) :]
                os.fsync(out)
            finally:
                os.close(out)
        finally:
            os.close(src)
    else:
        return False
    os.fsync(qfd)
    os.unlink(dp.name, dir_fd=dp.fd)
    return True
