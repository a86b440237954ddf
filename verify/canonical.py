"""Canonical JSON for ledger entries, and salted commitments to sensitive fields.

Canonical JSON here means: UTF-8; object keys sorted by Unicode code point; separators
``,`` and ``:`` with no other whitespace; non-ASCII characters written as themselves (only
``"``, ``\\`` and control characters are escaped, the latter as ``\\n``-style or ``\\u00xx``
lowercase escapes, exactly as Python's :mod:`json` writes them); values limited to objects
with string keys, arrays, strings, integers in the signed 64-bit range, ``true``, ``false``
and ``null``. No floats: a float has no single obvious text, so it is refused outright.

Guarantees:

* :func:`canonical_json` is deterministic and injective on the values it accepts; it raises
  :class:`TypeError` (wrong type) or :class:`ValueError` (out-of-range integer, unpaired
  surrogate, cycle) naming the JSONPath of the offending field, e.g. ``$.media[2].fps``.
* :func:`parse_canonical` accepts a byte string only if it is exactly the canonical encoding
  of a JSON object, so each accepted entry has exactly one byte representation.
* A commitment binds the field name, the 32-byte salt and the canonical value together:
  the same value and salt under a different field name give an unrelated commitment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from typing import Any

from verify.errors import CommitmentError, MalformedError

__all__ = [
    "COMMITMENT_DOMAIN",
    "MAX_ENTRY_BYTES",
    "SALT_SIZE",
    "canonical_json",
    "check_opening",
    "commitment",
    "new_salt",
    "parse_canonical",
]

MAX_ENTRY_BYTES = 65535
SALT_SIZE = 32
COMMITMENT_DOMAIN = b"evault-commitment-v1\x00"
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _key_path(path: str, key: str) -> str:
    if _IDENT.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


def _check_str(s: str, path: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{path}: string contains an unpaired surrogate") from exc


def _check_value(obj: object, path: str, active: set[int]) -> None:
    """Raise TypeError/ValueError naming ``path`` unless ``obj`` is canonical-JSON-able."""
    if obj is None or isinstance(obj, bool):
        return
    if isinstance(obj, int):
        if not INT_MIN <= obj <= INT_MAX:
            raise ValueError(f"{path}: integer {obj} is outside the signed 64-bit range")
        return
    if isinstance(obj, str):
        _check_str(obj, path)
        return
    if isinstance(obj, dict | list):
        if id(obj) in active:
            raise ValueError(f"{path}: circular reference")
        active.add(id(obj))
        if isinstance(obj, dict):
            for key, value in obj.items():
                if not isinstance(key, str):
                    raise TypeError(f"{path}: object key {key!r} is {type(key).__name__}, not str")
                sub = _key_path(path, key)
                _check_str(key, sub)
                _check_value(value, sub, active)
        else:
            for i, value in enumerate(obj):
                _check_value(value, f"{path}[{i}]", active)
        active.discard(id(obj))
        return
    kind = type(obj).__name__
    hint = " (floats are not allowed; use an integer or a string)" if kind == "float" else ""
    raise TypeError(f"{path}: {kind} is not allowed in canonical JSON{hint}")


def canonical_json(obj: object) -> bytes:
    """The canonical JSON encoding of ``obj`` (see module docstring)."""
    _check_value(obj, "$", set())
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def parse_canonical(data: bytes, *, max_bytes: int | None = MAX_ENTRY_BYTES) -> dict[str, Any]:
    """Parse ``data`` if and only if it is the canonical JSON of an object.

    Rejects (with :class:`MalformedError`) anything longer than ``max_bytes``, invalid UTF-8,
    invalid JSON, floats, duplicate keys, unsorted keys, whitespace, unnecessary escapes and
    any other non-canonical spelling.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise MalformedError(f"JSON is {len(data)} bytes, more than {max_bytes}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError(f"JSON is not valid UTF-8 at byte {exc.start}") from exc
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedError(f"invalid JSON at byte {exc.pos}: {exc.msg}") from exc
    except (ValueError, RecursionError) as exc:
        raise MalformedError(f"unacceptable JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise MalformedError(f"JSON is a {type(obj).__name__}, not an object")
    try:
        canon = canonical_json(obj)
    except (TypeError, ValueError, RecursionError) as exc:
        raise MalformedError(f"JSON value not allowed: {exc}") from exc
    if canon != data:
        at = next(
            (i for i, (a, b) in enumerate(zip(canon, data, strict=False)) if a != b),
            min(len(canon), len(data)),
        )
        raise MalformedError(f"JSON is not in canonical form (first difference at byte {at})")
    return obj


def new_salt() -> bytes:
    """32 fresh random bytes from the OS CSPRNG."""
    return secrets.token_bytes(SALT_SIZE)


def commitment(field: str, value: object, salt: bytes) -> str:
    """Lowercase hex ``SHA-256("evault-commitment-v1\\0" || field || "\\0" || salt ||
    canonical_json(value))``.

    Raises :class:`ValueError` for a salt that is not 32 bytes or a field name that is empty
    or contains NUL, and :class:`TypeError`/:class:`ValueError` for a non-canonical value.
    """
    if len(salt) != SALT_SIZE:
        raise ValueError(f"commitment salt for {field!r} is {len(salt)} bytes, want {SALT_SIZE}")
    if not field or "\x00" in field:
        raise ValueError(f"invalid commitment field name {field!r}")
    _check_str(field, f"field name {field!r}")
    h = hashlib.sha256(COMMITMENT_DOMAIN)
    h.update(field.encode("utf-8"))
    h.update(b"\x00")
    h.update(salt)
    h.update(canonical_json(value))
    return h.hexdigest()


def check_opening(field: str, value: object, salt: bytes, expected: str) -> None:
    """Check that (``value``, ``salt``) opens commitment ``expected`` for ``field``.

    Returns only on an exact match; raises :class:`CommitmentError` naming the field for a
    mismatch, a malformed commitment, a wrong-size salt or a value that cannot be encoded.
    """
    if not _HEX64.fullmatch(expected):
        raise CommitmentError(f"commitment for field {field!r} is not 64 lowercase hex digits")
    try:
        got = commitment(field, value, salt)
    except (TypeError, ValueError) as exc:
        raise CommitmentError(f"opening of field {field!r} is invalid: {exc}") from exc
    if not hmac.compare_digest(got, expected):
        raise CommitmentError(
            f"opening of field {field!r} does not match its commitment {expected}"
        )
