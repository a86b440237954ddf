"""Receipt, then release: the last two steps of acquiring a dock file (DESIGN §4).

``release_source`` writes the receipt durably and only then applies the dock's policy:

* ``keep``: the receipt goes beside the source; the source stays (a later scan sees the
  matching receipt and does not take it again).
* ``delete``: the receipt goes beside the source, then the source is unlinked and its folder
  fsynced. The receipt stays in the dock as the record of what was taken.
* ``move``: the receipt goes to ``<dock>/.released/<same subfolders>/<name>.evault-receipt.json``
  first, then the source is renamed beside it (``<name>``, or ``<name>~<ledger index>`` if that
  name is taken: a released file is never replaced), and both folders are fsynced.

Guarantees: no source is released without a durable receipt next to where it ends up; a source
whose size, times, inode or device differ from the receipt's (rewritten after it was recorded)
is never released: it is left for a later acquisition. Nothing is followed through a link: every
step works on directory descriptors opened without following links.
"""

from __future__ import annotations

import os
import stat

from ingest.dockfs import RELEASED, DockPath, ensure_dir, limited_name
from ingest.receipts import Receipt, SourceState, write_receipt

__all__ = ["release_source"]


def _unchanged(dp: DockPath, receipt: Receipt) -> bool:
    try:
        return receipt.source is not None and SourceState.of(dp.lstat()) == receipt.source
    except FileNotFoundError:
        return False


def release_source(dp: DockPath, policy: str, receipt: Receipt) -> None:
    """Write the receipt and release per ``policy`` (keep, move, delete). ``OSError`` if the
    receipt cannot be written (then nothing was released)."""
    if policy == "keep" or (policy == "move" and dp.root_fd < 0):
        write_receipt(dp.fd, dp.name, receipt)
    elif policy == "delete":
        write_receipt(dp.fd, dp.name, receipt)
        if _unchanged(dp, receipt):
            os.unlink(dp.name, dir_fd=dp.fd)
            os.fsync(dp.fd)
    elif policy == "move":
        if _unchanged(dp, receipt):
            _move(dp, receipt)
        else:  # rewritten since it was recorded: not released, taken again later
            write_receipt(dp.fd, dp.name, receipt)
    else:
        raise ValueError(f"unknown release policy {policy!r}")


def _move(dp: DockPath, receipt: Receipt) -> None:
    mode = stat.S_IMODE(os.fstat(dp.root_fd).st_mode)
    opened = [ensure_dir(dp.root_fd, RELEASED, mode)]
    try:
        for part in dp.rel.split(b"/")[:-1]:
            opened.append(ensure_dir(opened[-1], part, mode))
        target_dir = opened[-1]
        target = dp.name
        n = 0
        while _exists(target_dir, target):
            n += 1
            tag = f"~{receipt.ledger_index}" + (f"-{n}" if n > 1 else "")
            target = limited_name(dp.name, tag.encode())
        write_receipt(target_dir, target, receipt)
        if _unchanged(dp, receipt):
            os.rename(dp.name, target, src_dir_fd=dp.fd, dst_dir_fd=target_dir)
            os.fsync(target_dir)
            os.fsync(dp.fd)
    finally:
        for fd in opened:
            os.close(fd)


def _exists(dir_fd: int, name: bytes) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True
