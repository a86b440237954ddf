"""The in-memory tree edge (pure) against the naive RFC 6962 reference."""

from __future__ import annotations

import hashlib
import random

from tests.merkle_reference import leaf, mth
from vault.ledger import tiles as tiles_mod
from vault.ledger.tree import TreeEdge
from verify.merkle import leaf_hashes, perfect_root
from verify.tiles import TILE_WIDTH, hash_in_tile, node_location


def _tile(leaves: list[bytes], level: int, index: int) -> bytes:
    """Tile (level, index) of the tree of ``leaves``, recomputed naively."""
    span = TILE_WIDTH**level
    nodes = [mth(leaves[i : i + span]) for i in range(0, len(leaves) - span + 1, span)]
    return b"".join(nodes[index * TILE_WIDTH : (index + 1) * TILE_WIDTH])


def test_leaf_hashes_and_perfect_root_match_the_reference() -> None:
    datas = [b"x%d" % i for i in range(64)]
    assert leaf_hashes(datas) == [leaf(d) for d in datas]
    assert perfect_root(leaf_hashes(datas)) == mth([leaf(d) for d in datas])


def test_edge_roots_and_touched_tiles_agree_with_the_reference() -> None:
    """Random append sizes across the 256 and 65,536 boundaries, with copies and a rebuild
    from the touched tiles: every root and every touched tile equals the naive one."""
    rng = random.Random(2)
    leaves: list[bytes] = []
    edge = TreeEdge()
    stored: dict[tuple[int, int], bytes] = {}
    sizes = [1, 1, 2, 250, 3, 1, 255, 256, 257, 4096, 7, 60000, 700, 1, 300]
    sizes += [rng.randrange(1, 600) for _ in range(10)]
    for step, n in enumerate(sizes):
        datas = [b"e%d" % (len(leaves) + i) for i in range(n)]
        if step % 3 == 0:
            edge = edge.copy()
        if step % 4 == 1:
            touched = edge.append([leaf(d) for d in datas])
        else:
            touched = edge.append(leaf_hashes(datas))
        leaves.extend(leaf(d) for d in datas)
        stored.update(touched)
        assert edge.size == len(leaves)
        if len(leaves) < 70000 or step == len(sizes) - 1:
            assert edge.root() == mth(leaves), len(leaves)
        for (level, index), content in touched.items():
            if level > 0 or rng.random() < 0.2:
                assert content == _tile(leaves, level, index), (level, index)
        rebuilt = TreeEdge.from_tiles(edge.size, stored)
        assert rebuilt.root() == edge.root()


def test_upper_tile_nodes_are_cached_by_content_not_by_position() -> None:
    """A node of a full upper tile is remembered by the tile's bytes: the same position in a
    tile with other bytes (a rewritten or forged tile) is hashed afresh, never served stale."""
    tile = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(256))
    node = (8 + 7, 1)  # level 15: the right half (128 hashes) of level-1 tile 0
    tl, ti, start, count = node_location(*node)
    assert (tl, ti, start, count) == (1, 0, 128, 128)
    first = tiles_mod._node_hash({(1, 0): tile}, node)
    assert first == hash_in_tile(tile, start, count)
    assert (tile, start, count) in tiles_mod._NODE_CACHE
    forged = tile[:-1] + bytes([tile[-1] ^ 1])
    again = tiles_mod._node_hash({(1, 0): forged}, node)
    assert again == hash_in_tile(forged, start, count) != first
