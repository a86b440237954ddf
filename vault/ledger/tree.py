"""The right edge of the tiled Merkle tree, in memory: what the sequencer needs to append.

Pure: no I/O. For a tree of ``size`` leaves it holds, per tile level L, the hashes of the
current partial tile (those level-8L nodes that are not yet part of a full tile). That is enough
to append leaves, to emit every tile an append touches, and to compute the root.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from verify.merkle import EMPTY_ROOT, HASH_SIZE, fold_right, root_from_leaf_hashes
from verify.tiles import TILE_HEIGHT, TILE_WIDTH, full_tile_hash, right_edge_tiles

_FULL = TILE_WIDTH * HASH_SIZE


class TreeEdge:
    """Partial tiles of a tree of ``size`` leaves; see the module docstring."""

    def __init__(self) -> None:
        self.size = 0
        self._partial: list[bytearray] = []
        self._counts: list[int] = []  # hashes ever pushed at each tile level

    @classmethod
    def from_tiles(cls, size: int, tiles: Mapping[tuple[int, int], bytes]) -> TreeEdge:
        """Rebuild from stored tiles; ``tiles`` must hold every tile of right_edge_tiles(size)."""
        edge = cls()
        edge.size = size
        level = 0
        while (size >> (TILE_HEIGHT * level)) > 0:
            edge._counts.append(size >> (TILE_HEIGHT * level))
            edge._partial.append(bytearray())
            level += 1
        for tile_level, tile_index, width in right_edge_tiles(size):
            stored = tiles.get((tile_level, tile_index))
            if stored is None or len(stored) < width * HASH_SIZE:
                raise KeyError(f"tile {tile_level}/{tile_index} missing or shorter than {width}")
            edge._partial[tile_level] = bytearray(stored[: width * HASH_SIZE])
        return edge

    def copy(self) -> TreeEdge:
        other = TreeEdge()
        other.size = self.size
        other._partial = [bytearray(p) for p in self._partial]
        other._counts = list(self._counts)
        return other

    def append(self, leaf_hashes: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
        """Append leaves; return every tile touched, (level, index) -> its hashes now."""
        touched: dict[tuple[int, int], bytes] = {}
        data = b"".join(leaf_hashes)
        level = 0
        while data:
            data = self._extend(level, data, touched)
            level += 1
        self.size += len(leaf_hashes)
        return touched

    def _extend(self, level: int, data: bytes, touched: dict[tuple[int, int], bytes]) -> bytes:
        """Add hashes at tile level ``level``; return the hashes of the tiles it completed."""
        if len(self._partial) <= level:
            self._partial.append(bytearray())
            self._counts.append(0)
        tile = self._partial[level]
        parents = []
        view = memoryview(data)
        while view:
            take = min(len(view), _FULL - len(tile))
            index = self._counts[level] // TILE_WIDTH
            tile += view[:take]
            view = view[take:]
            self._counts[level] += take // HASH_SIZE
            if len(tile) == _FULL:
                content = bytes(tile)
                touched[(level, index)] = content
                tile.clear()
                parents.append(full_tile_hash(content))
            else:
                touched[(level, index)] = bytes(tile)
        return b"".join(parents)

    def root(self) -> bytes:
        """The RFC 6962 root of the current tree."""
        if self.size == 0:
            return EMPTY_ROOT
        parts: list[bytes] = []
        for level in range(len(self._partial) - 1, -1, -1):
            tile = self._partial[level]
            width = len(tile) // HASH_SIZE
            offset = 0
            for bit in range(TILE_HEIGHT - 1, -1, -1):
                n = 1 << bit
                if width & n:
                    chunk = tile[offset * HASH_SIZE : (offset + n) * HASH_SIZE]
                    parts.append(
                        root_from_leaf_hashes(
                            [
                                bytes(chunk[i : i + HASH_SIZE])
                                for i in range(0, len(chunk), HASH_SIZE)
                            ]
                        )
                    )
                    offset += n
        return fold_right(parts)
