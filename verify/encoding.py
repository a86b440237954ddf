"""Strict text encodings shared by the note, checkpoint and proof formats.

Guarantees:

* :func:`b64decode_strict` accepts only the canonical standard base64 (RFC 4648 §4) encoding
  of its result: correct padding, no whitespace, no URL-safe alphabet, and zero unused trailing
  bits. Hence every byte string has exactly one accepted encoding and a verified document
  cannot be re-encoded into a different text that still verifies.
* :func:`parse_decimal` accepts only ASCII digits with no sign, no leading zeros (except ``0``
  itself), no underscores and no surrounding whitespace, within ``[0, 2**64 - 1]``.
"""

from __future__ import annotations

import base64
import binascii
import re

from verify.errors import MalformedError

__all__ = ["MAX_UINT64", "b64decode_strict", "b64encode", "parse_decimal"]

MAX_UINT64 = 2**64 - 1

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def b64encode(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 §4)."""
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(text: str, what: str) -> bytes:
    """Decode canonical standard base64, or raise :class:`MalformedError` naming ``what``."""
    if not _B64.fullmatch(text):
        raise MalformedError(f"{what}: not canonical standard base64: {_clip(text)!r}")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - regex already checked
        raise MalformedError(f"{what}: invalid base64: {exc}") from exc
    if b64encode(data) != text:
        raise MalformedError(f"{what}: non-canonical base64 (unused bits set): {_clip(text)!r}")
    return data


def parse_decimal(text: str, what: str, maximum: int = MAX_UINT64) -> int:
    """Parse a canonical non-negative ASCII decimal, or raise :class:`MalformedError`."""
    if not _DECIMAL.fullmatch(text):
        raise MalformedError(
            f"{what}: {_clip(text)!r} is not a decimal integer without sign or leading zeros"
        )
    if len(text) > len(str(maximum)) or int(text) > maximum:
        raise MalformedError(f"{what}: {_clip(text)!r} exceeds the maximum {maximum}")
    return int(text)


def _clip(text: str, limit: int = 80) -> str:
    """Shorten ``text`` for an error message."""
    return text if len(text) <= limit else text[:limit] + "…"
