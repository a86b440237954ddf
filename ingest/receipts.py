"""Receipts: what the vault tells a dock it took (DESIGN §4).

A receipt is ``<name>.evault-receipt.json`` beside the source (in ``.released/`` when the dock
moves released files): the file's SHA-256 and size, the evidence id, the ledger index of the
``acquired`` or ``reoffered`` entry, the signed checkpoint note that includes that entry, the
dock id, the time, and the source's state when it was taken (size, mtime, ctime, inode, device).

Guarantees:

* ``write_receipt`` is atomic and durable (``dockfs.atomic_write``): a receipt is complete or
  absent, never torn. It is written before the source is released, so a released source always
  has one.
* ``matching_receipt`` returns a receipt only if it parses, its recorded source state equals the
  file's current state exactly, and (given the log's verifier) its checkpoint is signed by the
  log key and covers its ledger index. A file replaced or rewritten under the same name no
  longer matches and is taken again. Residual risk, stated: a forger who can write the dock
  folder, knows the file's inode, times and size and copies a genuine signed checkpoint can make
  a kept file look taken; checking content would need a second read of the source.
* Receipt names never exceed NAME_MAX (long names are shortened uniquely).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass
from typing import Any

from ingest.dockfs import atomic_write, limited_name
from verify.checkpoint import open_checkpoint
from verify.errors import VerificationError
from verify.note import Verifier

__all__ = [
    "RECEIPT_SUFFIX",
    "Receipt",
    "SourceState",
    "matching_receipt",
    "read_receipt",
    "receipt_name",
    "write_receipt",
]

RECEIPT_SUFFIX = b".evault-receipt.json"
RECEIPT_VERSION = 1
_MAX_RECEIPT = 64 << 10


@dataclass(frozen=True, slots=True)
class SourceState:
    """A source file's identity and state: equal states mean the same, unchanged file."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    dev: int

    @classmethod
    def of(cls, st: os.stat_result) -> SourceState:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


@dataclass(frozen=True, slots=True)
class Receipt:
    """One acquisition or re-offer, as reported to the dock (also the HTTP push response)."""

    sha256: str
    size: int
    evidence_id: str
    ledger_index: int
    kind: str  # "acquired" or "reoffered"
    checkpoint: str  # the signed checkpoint note covering ledger_index
    dock_id: str
    time: str  # RFC 3339 UTC
    source_name: str  # display form of the name as offered
    source: SourceState | None = None  # None for HTTP pushes

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["v"] = RECEIPT_VERSION
        return body

    def encode(self) -> bytes:
        return (json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n").encode()

    @classmethod
    def from_json(cls, data: object) -> Receipt:
        """Parse a receipt object; ``ValueError`` if anything is missing or mistyped."""
        if not isinstance(data, dict) or data.get("v") != RECEIPT_VERSION:
            raise ValueError("not a version-1 receipt")
        try:
            src = data.get("source")
            source = None if src is None else SourceState(**{k: int(src[k]) for k in _STATE})
            receipt = cls(
                sha256=str(data["sha256"]),
                size=int(data["size"]),
                evidence_id=str(data["evidence_id"]),
                ledger_index=int(data["ledger_index"]),
                kind=str(data["kind"]),
                checkpoint=str(data["checkpoint"]),
                dock_id=str(data["dock_id"]),
                time=str(data["time"]),
                source_name=str(data["source_name"]),
                source=source,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"receipt field missing or mistyped: {exc}") from exc
        if receipt.kind not in ("acquired", "reoffered"):
            raise ValueError("receipt kind must be acquired or reoffered")
        return receipt


_STATE = ("size", "mtime_ns", "ctime_ns", "inode", "dev")


def receipt_name(name: bytes) -> bytes:
    """The receipt's file name for a source named ``name`` (bytes, no '/')."""
    return limited_name(name, RECEIPT_SUFFIX)


def write_receipt(dir_fd: int, name: bytes, receipt: Receipt) -> bytes:
    """Write ``receipt`` for the source ``name`` into the directory ``dir_fd``, atomically and
    durably; returns the receipt's file name. ``OSError`` on failure."""
    rname = receipt_name(name)
    atomic_write(dir_fd, rname, receipt.encode())
    return rname


def read_receipt(dir_fd: int, name: bytes) -> Receipt | None:
    """The receipt for source ``name`` in ``dir_fd``, or None if absent or not a valid receipt
    (a link, not a regular file, too big, not JSON, missing fields)."""
    try:
        fd = os.open(
            receipt_name(name),
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
            dir_fd=dir_fd,
        )
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_RECEIPT:
            return None
        raw = os.read(fd, _MAX_RECEIPT + 1)
        return Receipt.from_json(json.loads(raw))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def matching_receipt(
    dir_fd: int, name: bytes, st: os.stat_result, verifier: Verifier | None = None
) -> Receipt | None:
    """The receipt for ``name`` if it describes the file whose current ``lstat`` is ``st``
    (see module docstring), else None."""
    receipt = read_receipt(dir_fd, name)
    if receipt is None or receipt.source != SourceState.of(st):
        return None
    if verifier is not None:
        try:
            if open_checkpoint(receipt.checkpoint, verifier).size <= receipt.ledger_index:
                return None
        except VerificationError:
            return None
    return receipt
