"""C2SP tlog-checkpoint note bodies (https://c2sp.org/tlog-checkpoint).

Body format (the note text)::

    <origin>\\n
    <tree size, decimal, no leading zeros>\\n
    <base64 of the 32-byte RFC 6962 root hash>\\n
    <extension line>\\n        (zero or more, each non-empty)

Guarantees:

* :func:`parse_checkpoint` accepts exactly the texts :func:`format_checkpoint` produces
  (canonical decimal, canonical base64 of exactly 32 bytes, no empty lines, no control
  characters), so a checkpoint has exactly one text.
* :func:`open_checkpoint` returns only a checkpoint whose note carries a valid signature by
  the trusted verifier *and* whose origin equals the verifier's key name.
"""

from __future__ import annotations

from dataclasses import dataclass

from verify.encoding import MAX_UINT64, b64decode_strict, b64encode, parse_decimal
from verify.errors import MalformedError, WrongKeyError
from verify.merkle import HASH_SIZE
from verify.note import Verifier, verify_note

__all__ = ["Checkpoint", "format_checkpoint", "open_checkpoint", "parse_checkpoint"]


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, tree size, root hash and optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()


def _valid_line(line: str) -> bool:
    return bool(line) and not any(c < " " for c in line)


def format_checkpoint(cp: Checkpoint) -> str:
    """The checkpoint note text. Raises :class:`ValueError` for an unrepresentable value."""
    if not _valid_line(cp.origin):
        raise ValueError(f"checkpoint origin {cp.origin!r} is empty or has control characters")
    if not 0 <= cp.size <= MAX_UINT64:
        raise ValueError(f"checkpoint size {cp.size} is out of range")
    if len(cp.root_hash) != HASH_SIZE:
        raise ValueError(f"checkpoint root hash is {len(cp.root_hash)} bytes, want {HASH_SIZE}")
    for i, ext in enumerate(cp.extensions):
        if not _valid_line(ext):
            raise ValueError(f"checkpoint extension [{i}] is empty or has control characters")
    lines = [cp.origin, str(cp.size), b64encode(cp.root_hash), *cp.extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint note text strictly; raises :class:`MalformedError`."""
    if not text.endswith("\n"):
        raise MalformedError("checkpoint: text does not end with a newline")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedError(f"checkpoint: not valid UTF-8 ({exc.reason})") from exc
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedError(f"checkpoint: {len(lines)} lines, want at least 3")
    for lineno, line in enumerate(lines, start=1):
        if not line:
            raise MalformedError(f"checkpoint: line {lineno} is empty")
        if any(c < " " for c in line):
            raise MalformedError(f"checkpoint: control character in line {lineno}")
    size = parse_decimal(lines[1], "checkpoint line 2 (tree size)")
    root = b64decode_strict(lines[2], "checkpoint line 3 (root hash)")
    if len(root) != HASH_SIZE:
        raise MalformedError(f"checkpoint line 3: root hash is {len(root)} bytes, want 32")
    return Checkpoint(lines[0], size, root, tuple(lines[3:]))


def open_checkpoint(note: str | bytes, verifier: Verifier) -> Checkpoint:
    """Verify a signed checkpoint note against the trusted ``verifier`` and parse it.

    Raises :class:`MalformedError`, :class:`SignatureError`, or :class:`WrongKeyError` (no
    signature by the trusted key, or the origin line is not the trusted key's name).
    """
    opened = verify_note(note, verifier)
    cp = parse_checkpoint(opened.text)
    if cp.origin != verifier.name:
        raise WrongKeyError(
            f"checkpoint origin {cp.origin!r} does not match trusted key name {verifier.name!r}"
        )
    return cp
