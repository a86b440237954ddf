"""Secret key files: created once, never replaced.

Guarantee of :func:`create_once`: the file is written 0600 in a 0700 folder, to a temporary
file that is fsynced and linked into place without replacing anything, then the folder is
fsynced; if a file appeared meanwhile (another process), it is kept and False is returned.
"""

from __future__ import annotations

import os
from pathlib import Path


def create_once(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless a file is there; True if this call created it."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if a key appeared meanwhile: never replace one
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return True
