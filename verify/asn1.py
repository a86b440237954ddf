"""A minimal, strict DER reader and writer: just what RFC 3161 time-stamp tokens need.

Guarantees:

* :func:`parse` accepts only DER: definite lengths in their shortest form, single-byte tags
  (tag numbers < 31), no trailing bytes; anything else raises
  :class:`~verify.errors.MalformedError` naming the offset. Nesting is bounded by
  :data:`MAX_DEPTH` when walking with :meth:`Node.children`.
* A :class:`Node` keeps its exact encoded bytes (``raw``), so a signature can be checked over
  the bytes that were signed, not over a re-encoding.
* The writers (:func:`tlv`, :func:`der_int`, ...) produce DER for the few types a
  time-stamp request needs.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from verify.errors import MalformedError

__all__ = [
    "BOOLEAN",
    "GENERALIZED_TIME",
    "INTEGER",
    "NULL",
    "OCTET_STRING",
    "OID",
    "SEQUENCE",
    "SET",
    "Node",
    "context",
    "der_int",
    "der_oid",
    "parse",
    "tlv",
]

BOOLEAN, INTEGER, BIT_STRING, OCTET_STRING, NULL, OID = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
UTF8_STRING, GENERALIZED_TIME, SEQUENCE, SET = 0x0C, 0x18, 0x30, 0x31
MAX_DEPTH = 32


def context(n: int, constructed: bool = True) -> int:
    """The tag byte of context-specific ``[n]`` (constructed by default)."""
    return 0x80 | (0x20 if constructed else 0) | n


@dataclass(frozen=True)
class Node:
    """One DER element: its tag byte, its content octets and its whole encoding."""

    tag: int
    value: bytes
    raw: bytes
    offset: int = 0
    depth: int = 0

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)

    def children(self) -> list[Node]:
        """The elements inside a constructed node."""
        if not self.constructed:
            raise MalformedError(f"DER element at {self.offset} is not constructed")
        if self.depth >= MAX_DEPTH:
            raise MalformedError(f"DER nested deeper than {MAX_DEPTH} at {self.offset}")
        out, pos, start = [], 0, self.offset + len(self.raw) - len(self.value)
        while pos < len(self.value):
            node, pos = _read(self.value, pos, start, self.depth + 1)
            out.append(node)
        return out

    def expect(self, tag: int, what: str) -> Node:
        if self.tag != tag:
            raise MalformedError(
                f"{what}: DER tag 0x{self.tag:02x} at {self.offset}, want 0x{tag:02x}"
            )
        return self

    def seq(self, what: str, tag: int = SEQUENCE) -> list[Node]:
        """The children of this node, which must have tag ``tag`` (SEQUENCE by default)."""
        return self.expect(tag, what).children()

    def integer(self, what: str) -> int:
        v = self.expect(INTEGER, what).value
        if not v or (
            len(v) > 1 and ((v[0] == 0 and v[1] < 0x80) or (v[0] == 0xFF and v[1] >= 0x80))
        ):
            raise MalformedError(f"{what}: not a DER INTEGER at {self.offset}")
        return int.from_bytes(v, "big", signed=True)

    def oid(self, what: str) -> str:
        v = self.expect(OID, what).value
        if not v or v[-1] & 0x80:
            raise MalformedError(f"{what}: not a DER OBJECT IDENTIFIER at {self.offset}")
        arcs, n = [], 0
        for i, b in enumerate(v):
            if n == 0 and b == 0x80 and (i == 0 or not v[i - 1] & 0x80):
                raise MalformedError(f"{what}: OID arc with a leading zero at {self.offset}")
            n = (n << 7) | (b & 0x7F)
            if not b & 0x80:
                arcs.append(n)
                n = 0
        first = min(arcs[0] // 40, 2)
        return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])

    def octets(self, what: str) -> bytes:
        return self.expect(OCTET_STRING, what).value

    def generalized_time(self, what: str) -> dt.datetime:
        """A DER GeneralizedTime (UTC, ``Z``, fraction without trailing zeros) as a datetime."""
        text = self.expect(GENERALIZED_TIME, what).value.decode("ascii", "replace")
        m = re.fullmatch(r"(\d{14})(?:\.(\d*[1-9]))?Z", text)
        if m is None:
            raise MalformedError(f"{what}: {text!r} is not a DER GeneralizedTime")
        try:
            t = dt.datetime.strptime(m.group(1), "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
        except ValueError as exc:
            raise MalformedError(f"{what}: {text!r}: {exc}") from exc
        frac = m.group(2) or ""
        return t + dt.timedelta(microseconds=int((frac + "000000")[:6])) if frac else t


def _read(data: bytes, pos: int, base: int, depth: int) -> tuple[Node, int]:
    start = pos
    if len(data) - pos < 2:
        raise MalformedError(f"DER truncated at {base + pos}")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise MalformedError(f"DER multi-byte tag at {base + pos}: not used here")
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or len(data) - pos < n:
            raise MalformedError(f"DER length form not allowed at {base + start}")
        length = int.from_bytes(data[pos : pos + n], "big")
        if length < 0x80 or data[pos] == 0:
            raise MalformedError(f"DER length not in shortest form at {base + start}")
        pos += n
    if len(data) - pos < length:
        raise MalformedError(f"DER element at {base + start} runs past the end of its container")
    end = pos + length
    return Node(tag, data[pos:end], data[start:end], base + start, depth), end


def parse(data: bytes, what: str = "DER") -> Node:
    """The single DER element that is exactly ``data``."""
    try:
        node, end = _read(bytes(data), 0, 0, 0)
    except MalformedError as exc:
        raise MalformedError(f"{what}: {exc}") from exc
    if end != len(data):
        raise MalformedError(f"{what}: {len(data) - end} bytes after the DER element")
    return node


def tlv(tag: int, value: bytes) -> bytes:
    """DER encoding of one element with tag byte ``tag`` and content ``value``."""
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + value


def der_int(v: int) -> bytes:
    return tlv(INTEGER, v.to_bytes(v.bit_length() // 8 + 1, "big", signed=True))


def der_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for a in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [a & 0x7F]
        while a > 0x7F:
            a >>= 7
            chunk.append(0x80 | (a & 0x7F))
        out.extend(reversed(chunk))
    return tlv(OID, bytes(out))
