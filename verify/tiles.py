"""C2SP tlog-tiles layout math (https://c2sp.org/tlog-tiles). Pure functions, no I/O.

A tile at tile level ``L`` and index ``N`` holds up to 256 consecutive Merkle tree hashes at
tree level ``8 * L``: hash ``i`` is ``MTH(D[(N*256 + i) * 256**L : (N*256 + i + 1) * 256**L])``.
Full tiles hold 256 hashes (8,192 bytes); the partial tile at level ``L`` for a tree of size
``s`` holds ``floor(s / 256**L) mod 256`` hashes and is omitted when that is zero. Entry bundles
hold the entries of a level-0 tile as big-endian uint16 length-prefixed byte strings.

Guarantees:

* :func:`tile_path` / :func:`entries_path` produce the one canonical path for a tile, and
  :func:`parse_tile_path` accepts exactly those paths (after ``tile/``) and nothing else.
* :func:`node_location` names where any tree node's hash can be recomputed from one tile,
  and :func:`hash_in_tile` recomputes it, raising :class:`MalformedError` on short tiles.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence

from verify.errors import MalformedError
from verify.merkle import HASH_SIZE, perfect_root, root_from_leaf_hashes

__all__ = [
    "MAX_TILE_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "entries_path",
    "full_tile_hash",
    "hash_in_tile",
    "node_location",
    "parse_tile_path",
    "right_edge_tiles",
    "tile_path",
    "tile_width",
    "tiles_for_nodes",
]

TILE_HEIGHT = 8
TILE_WIDTH = 256
MAX_TILE_LEVEL = 63
MAX_ENTRY_SIZE = 0xFFFF

_PATH = re.compile(
    r"(?P<level>entries|0|[1-9][0-9]*)/(?P<index>(?:x[0-9]{3}/)*[0-9]{3})"
    r"(?:\.p/(?P<width>[1-9][0-9]*))?"
)


def _encode_index(index: int) -> str:
    if index < 0:
        raise ValueError(f"tile index {index} is negative")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index > 0:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def _width_suffix(width: int | None) -> str:
    if width is None or width == TILE_WIDTH:
        return ""
    if not 1 <= width < TILE_WIDTH:
        raise ValueError(f"tile width {width} is not in 1..{TILE_WIDTH}")
    return f".p/{width}"


def tile_path(level: int, index: int, width: int | None = None) -> str:
    """``tile/<L>/<N>[.p/<W>]``; ``width`` of ``None`` or 256 means a full tile."""
    if not 0 <= level <= MAX_TILE_LEVEL:
        raise ValueError(f"tile level {level} is not in 0..{MAX_TILE_LEVEL}")
    return f"tile/{level}/{_encode_index(index)}{_width_suffix(width)}"


def entries_path(index: int, width: int | None = None) -> str:
    """``tile/entries/<N>[.p/<W>]``; ``width`` of ``None`` or 256 means a full bundle."""
    return f"tile/entries/{_encode_index(index)}{_width_suffix(width)}"


def parse_tile_path(path: str) -> tuple[int | None, int, int | None]:
    """Parse the part of a tile path after ``tile/``: ``(level or None for entries, index,
    width or None for full)``.

    Only canonical paths are accepted: level 0..63 without leading zeros, index in 3-digit
    groups with every non-final group prefixed ``x`` and no superfluous leading ``x000``
    group, width 1..255 without leading zeros. Anything else raises :class:`MalformedError`.
    """
    m = _PATH.fullmatch(path)
    if m is None:
        raise MalformedError(f"tile path {path!r} is not <L>/<N>[.p/<W>] or entries/<N>[.p/<W>]")
    groups = m["index"].split("/")
    if len(groups) > 1 and groups[0] == "x000":
        raise MalformedError(f"tile path {path!r}: index has a leading zero group")
    index = int("".join(g.removeprefix("x") for g in groups))
    level: int | None = None
    if m["level"] != "entries":
        if len(m["level"]) > 2 or int(m["level"]) > MAX_TILE_LEVEL:
            raise MalformedError(f"tile path {path!r}: level exceeds {MAX_TILE_LEVEL}")
        level = int(m["level"])
    width: int | None = None
    if m["width"] is not None:
        if len(m["width"]) > 3 or int(m["width"]) >= TILE_WIDTH:
            raise MalformedError(f"tile path {path!r}: partial width must be 1..255")
        width = int(m["width"])
    return level, index, width


def node_location(level: int, index: int) -> tuple[int, int, int, int]:
    """Where tree node ``(level, index)`` lives: ``(tile_level, tile_index, start, count)``.

    The node's hash is the MTH of the ``count = 2**(level % 8)`` hashes at positions
    ``[start, start + count)`` of tile ``(tile_level, tile_index)``, where
    ``tile_level = level // 8``. The range never crosses a tile boundary.
    """
    if level < 0 or index < 0:
        raise ValueError(f"invalid node ({level}, {index})")
    tile_level, rem = divmod(level, TILE_HEIGHT)
    first = index << rem  # index of the first covered hash at tree level 8 * tile_level
    tile_index, start = divmod(first, TILE_WIDTH)
    return tile_level, tile_index, start, 1 << rem


def hash_in_tile(tile: bytes, start: int, count: int) -> bytes:
    """MTH of hashes ``[start, start + count)`` of ``tile`` (concatenated 32-byte hashes).

    Raises :class:`MalformedError` if the tile is not a whole number of hashes or too short.
    """
    if start < 0 or count < 1:
        raise ValueError(f"invalid hash range start={start} count={count}")
    if len(tile) % HASH_SIZE:
        raise MalformedError(f"tile is {len(tile)} bytes, not a multiple of {HASH_SIZE}")
    have = len(tile) // HASH_SIZE
    if start + count > have:
        raise MalformedError(f"tile has {have} hashes, need positions {start}..{start + count - 1}")
    hashes = [tile[i * HASH_SIZE : (i + 1) * HASH_SIZE] for i in range(start, start + count)]
    if count & (count - 1) == 0:  # every tree node (node_location) covers a power of two
        return perfect_root(hashes)
    return root_from_leaf_hashes(hashes)


def full_tile_hash(tile: bytes) -> bytes:
    """MTH of a full 256-hash tile: the hash it contributes to the tile level above."""
    if len(tile) != TILE_WIDTH * HASH_SIZE:
        raise MalformedError(f"full tile is {len(tile)} bytes, want {TILE_WIDTH * HASH_SIZE}")
    return hash_in_tile(tile, 0, TILE_WIDTH)


def tile_width(tile_level: int, tile_index: int, size: int) -> int:
    """Number of hashes tile ``(tile_level, tile_index)`` holds in a tree of ``size``.

    256 for a full tile, 1..255 for the partial right-edge tile, 0 if the tile does not
    exist (yet) at that size.
    """
    if tile_level < 0 or tile_index < 0 or size < 0:
        raise ValueError(f"invalid tile ({tile_level}, {tile_index}) or size {size}")
    hashes_at_level = size >> (TILE_HEIGHT * tile_level)
    return max(0, min(TILE_WIDTH, hashes_at_level - tile_index * TILE_WIDTH))


def right_edge_tiles(size: int) -> list[tuple[int, int, int]]:
    """The partial tiles ``(tile_level, tile_index, width)`` of a tree of ``size``.

    Ordered by level; levels whose partial width would be 0 are omitted.
    """
    if size < 0:
        raise ValueError(f"negative tree size {size}")
    out: list[tuple[int, int, int]] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        hashes_at_level = size >> (TILE_HEIGHT * level)
        width = hashes_at_level % TILE_WIDTH
        if width:
            out.append((level, hashes_at_level // TILE_WIDTH, width))
        level += 1
    return out


def tiles_for_nodes(nodes: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """The ``(tile_level, tile_index)`` tiles needed to recompute all of ``nodes``."""
    out: set[tuple[int, int]] = set()
    for level, index in nodes:
        tile_level, tile_index, _, _ = node_location(level, index)
        out.add((tile_level, tile_index))
    return out


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Concatenate entries, each prefixed with its big-endian uint16 length.

    Raises :class:`ValueError` for an entry longer than 65,535 bytes or more than 256 entries.
    """
    if len(entries) > TILE_WIDTH:
        raise ValueError(f"entry bundle holds at most {TILE_WIDTH} entries, got {len(entries)}")
    parts: list[bytes] = []
    for i, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY_SIZE:
            raise ValueError(f"entry [{i}] is {len(entry)} bytes, more than {MAX_ENTRY_SIZE}")
        parts.append(struct.pack(">H", len(entry)))
        parts.append(bytes(entry))
    return b"".join(parts)


def decode_entry_bundle(data: bytes) -> list[bytes]:
    """Split an entry bundle into its entries; :class:`MalformedError` on truncation."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise MalformedError(f"entry bundle truncated in the length of entry [{len(out)}]")
        (length,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if pos + length > len(data):
            raise MalformedError(
                f"entry bundle truncated in entry [{len(out)}]: want {length} bytes, "
                f"{len(data) - pos} left"
            )
        if len(out) == TILE_WIDTH:
            raise MalformedError(f"entry bundle holds more than {TILE_WIDTH} entries")
        out.append(bytes(data[pos : pos + length]))
        pos += length
    return out
