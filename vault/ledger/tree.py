"""The right edge of the tiled Merkle tree, in memory: what the sequencer needs to append.

Pure: no I/O. For a tree of ``size`` leaves it holds, per tile level L, the hashes of the
current partial tile (those level-8L nodes that are not yet part of a full tile) and the roots
of the perfect subtrees those hashes form (one per set bit of the tile's width, largest first).
That is enough to append leaves, to emit every tile an append touches, and to compute the root
in O(log n) hashes.

Hashing is most of the sequencer's CPU time, so it is done in bulk, a tile at a time, by
``verify.merkle`` (``leaf_hashes``, ``perfect_root``): the one implementation of RFC 6962
hashing, checked against the naive reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from verify.merkle import EMPTY_ROOT, HASH_SIZE, fold_right, node_hash, perfect_root
from verify.tiles import TILE_HEIGHT, TILE_WIDTH, right_edge_tiles


def _subtree_roots(tile: list[bytes]) -> list[bytes]:
    """Roots of the perfect subtrees of a partial tile's hashes, largest first."""
    roots = []
    offset = 0
    for bit in range(TILE_HEIGHT - 1, -1, -1):
        n = 1 << bit
        if len(tile) & n:
            roots.append(perfect_root(tile[offset : offset + n]))
            offset += n
    return roots


class TreeEdge:
    """Partial tiles of a tree of ``size`` leaves; see the module docstring."""

    def __init__(self) -> None:
        self.size = 0
        self._partial: list[list[bytes]] = []  # the hashes of each level's partial tile
        self._roots: list[list[bytes]] = []  # perfect-subtree roots of each partial tile
        self._counts: list[int] = []  # hashes ever pushed at each tile level

    @classmethod
    def from_tiles(cls, size: int, tiles: Mapping[tuple[int, int], bytes]) -> TreeEdge:
        """Rebuild from stored tiles; ``tiles`` must hold every tile of right_edge_tiles(size)."""
        edge = cls()
        edge.size = size
        level = 0
        while (size >> (TILE_HEIGHT * level)) > 0:
            edge._counts.append(size >> (TILE_HEIGHT * level))
            edge._partial.append([])
            edge._roots.append([])
            level += 1
        for tile_level, tile_index, width in right_edge_tiles(size):
            stored = tiles.get((tile_level, tile_index))
            if stored is None or len(stored) < width * HASH_SIZE:
                raise KeyError(f"tile {tile_level}/{tile_index} missing or shorter than {width}")
            hashes = [bytes(stored[i : i + HASH_SIZE]) for i in range(0, width * HASH_SIZE, 32)]
            edge._partial[tile_level] = hashes
            edge._roots[tile_level] = _subtree_roots(hashes)
        return edge

    def copy(self) -> TreeEdge:
        other = TreeEdge()
        other.size = self.size
        other._partial = [list(p) for p in self._partial]
        other._roots = [list(r) for r in self._roots]
        other._counts = list(self._counts)
        return other

    def append(self, leaf_hashes: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
        """Append leaves by their leaf hashes; return every tile touched, (level, index) -> its
        hashes now (concatenated)."""
        touched: dict[tuple[int, int], bytes] = {}
        hashes = list(leaf_hashes)
        level = 0
        while hashes:
            hashes = self._extend(level, hashes, touched)
            level += 1
        self.size += len(leaf_hashes)
        return touched

    def _extend(
        self, level: int, hashes: list[bytes], touched: dict[tuple[int, int], bytes]
    ) -> list[bytes]:
        """Add hashes at tile level ``level``; return the hashes of the tiles it completed."""
        if len(self._partial) <= level:
            self._partial.append([])
            self._roots.append([])
            self._counts.append(0)
        tile = self._partial[level]
        parents = []
        pos = 0
        while pos < len(hashes):
            take = min(len(hashes) - pos, TILE_WIDTH - len(tile))
            chunk = hashes[pos : pos + take]
            pos += take
            index = self._counts[level] // TILE_WIDTH
            self._counts[level] += take
            if len(tile) + take == TILE_WIDTH:
                if tile:  # the first part is already folded into subtree roots: finish those
                    self._push(level, len(tile), chunk)
                    (parent,) = self._roots[level]
                    touched[(level, index)] = b"".join(tile + chunk)
                else:
                    parent = perfect_root(chunk)
                    touched[(level, index)] = b"".join(chunk)
                tile.clear()
                self._roots[level] = []
                parents.append(parent)
            else:
                self._push(level, len(tile), chunk)
                tile.extend(chunk)
                touched[(level, index)] = b"".join(tile)
        return parents

    def _push(self, level: int, width: int, chunk: list[bytes]) -> None:
        """Fold ``chunk`` into the subtree roots of the level's partial tile of ``width``."""
        roots = self._roots[level]
        for node in chunk:
            w = width
            while w & 1:
                node = node_hash(roots.pop(), node)
                w >>= 1
            roots.append(node)
            width += 1

    def root(self) -> bytes:
        """The RFC 6962 root of the current tree."""
        if self.size == 0:
            return EMPTY_ROOT
        parts = [h for level in range(len(self._roots) - 1, -1, -1) for h in self._roots[level]]
        return fold_right(parts)
