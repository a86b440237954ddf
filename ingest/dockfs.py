"""File-system primitives for dock folders, safe against links, races and hostile names.

Every dock file is reached through an open directory descriptor: ``open_parent`` walks from the
dock root one component at a time with ``O_NOFOLLOW | O_DIRECTORY``, so a directory swapped for a
symlink between a scan and an open is refused (``ELOOP``/``ENOTDIR``) instead of followed out of
the dock; the last component is then only ever used with ``dir_fd`` and ``O_NOFOLLOW``. Names are
bytes end to end (any byte but ``/`` and NUL is a legal name); ``display`` renders them for people
and databases without losing which name it was.

Guarantees:

* Nothing here follows a symlink inside a dock, reads a file, or deletes one.
* ``atomic_write`` makes a file appear complete or not at all: temp file, fsync, rename,
  directory fsync. The temp name is hidden (``.evault-*.tmp``) so watchers skip it.
* ``walk`` lists every non-directory entry below the root (files, links, FIFOs, sockets,
  devices) without entering symlinked directories, ``.released`` or hidden directories.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = [
    "RELEASED",
    "DockPath",
    "atomic_write",
    "display",
    "ensure_dir",
    "fsync_fd",
    "limited_name",
    "name_b64",
    "open_parent",
    "walk",
]

RELEASED = b".released"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NAME_MAX = 255


def display(name: bytes) -> str:
    """A readable, valid-UTF-8 rendering of ``name``: exact when it is UTF-8, otherwise the
    undecodable bytes as ``\\xNN`` (then ``name_b64`` keeps the exact bytes)."""
    return name.decode("utf-8", "backslashreplace")


def name_b64(name: bytes) -> str | None:
    """Base64 of ``name`` when ``display`` is not exact (not UTF-8), else None."""
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(name).decode("ascii")
    return None


def limited_name(base: bytes, suffix: bytes) -> bytes:
    """``base + suffix``, or if that is over NAME_MAX, a shortened base that stays unique
    (a prefix plus 16 hex of its SHA-256)."""
    if len(base) + len(suffix) <= _NAME_MAX:
        return base + suffix
    tag = b"~" + hashlib.sha256(base).hexdigest()[:16].encode()
    return base[: _NAME_MAX - len(suffix) - len(tag)] + tag + suffix


def fsync_fd(fd: int) -> None:
    os.fsync(fd)


@dataclass
class DockPath:
    """An open parent directory and a final name inside it.

    ``rel`` is the path relative to the dock root (or the absolute path when ``inside`` is
    False: a file given by hand from outside the dock). ``root_fd`` is the dock root (-1 when
    outside). Close with ``close()`` or use as a context manager."""

    fd: int
    name: bytes
    rel: bytes
    inside: bool
    root_fd: int = -1
    _owned: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self._owned:
            os.close(fd)
        self._owned.clear()

    def __enter__(self) -> DockPath:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lstat(self, name: bytes | None = None) -> os.stat_result:
        return os.stat(self.name if name is None else name, dir_fd=self.fd, follow_symlinks=False)


def _under(root: bytes, path: bytes) -> bytes | None:
    """``path`` relative to ``root`` if it lies below it (lexically), else None."""
    prefix = root.rstrip(b"/") + b"/"
    return path[len(prefix) :] if path.startswith(prefix) and len(path) > len(prefix) else None


def open_parent(
    root: str | bytes | os.PathLike[str], path: str | bytes | os.PathLike[str]
) -> DockPath:
    """Open the directory holding ``path``. Inside the dock ``root`` every component is opened
    without following links (``OSError`` ``ELOOP``/``ENOTDIR`` if one is a link); outside it
    the parent is opened as given (an operator's choice) and ``inside`` is False."""
    # abspath, not resolve(): resolving would follow the very links this module refuses.
    broot = os.fsencode(os.path.abspath(root))  # noqa: PTH100
    bpath = os.fsencode(os.path.abspath(path))  # noqa: PTH100
    rel = _under(broot, bpath)
    if rel is None:
        parent, _, name = bpath.rpartition(b"/")
        fd = os.open(parent or b"/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return DockPath(fd, name, bpath, inside=False, _owned=[fd])
    parts = rel.split(b"/")
    owned = [os.open(broot, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        for part in parts[:-1]:
            if part in (b"", b".", b".."):
                raise OSError(errno.EINVAL, "unexpected path component")
            owned.append(os.open(part, _DIR_FLAGS, dir_fd=owned[-1]))
    except BaseException:
        for fd in owned:
            os.close(fd)
        raise
    return DockPath(owned[-1], parts[-1], rel, inside=True, root_fd=owned[0], _owned=owned)


def ensure_dir(parent_fd: int, name: bytes, mode: int) -> int:
    """Open (creating if needed, fsyncing the parent) the directory ``name`` under
    ``parent_fd`` without following a link; return its fd (the caller closes it)."""
    try:
        os.mkdir(name, mode, dir_fd=parent_fd)
        os.fsync(parent_fd)
    except FileExistsError:
        pass
    return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)


def atomic_write(dir_fd: int, name: bytes, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` as ``name`` in ``dir_fd`` atomically and durably (replacing any file of
    that name). ``OSError`` on failure, with the temp file removed."""
    tmp = f".evault-{secrets.token_hex(8)}.tmp".encode()
    fd = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        mode,
        dir_fd=dir_fd,
    )
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


def walk(root: str | bytes | os.PathLike[str]) -> Iterator[bytes]:
    """Absolute bytes paths of every non-directory entry below ``root`` (see module
    docstring). Directories that vanish or cannot be listed are skipped."""
    stack = [os.fsencode(os.path.abspath(root))]  # noqa: PTH100 (never resolve links)
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if not is_dir:
                yield entry.path
            elif entry.name != RELEASED and not entry.name.startswith(b"."):
                stack.append(entry.path)


def is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)
