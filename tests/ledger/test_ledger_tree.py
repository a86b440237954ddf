"""The in-memory tree edge (pure) against the naive RFC 6962 reference."""

from __future__ import annotations

import random

from merkle_reference import leaf, mth

from vault.ledger.tree import TreeEdge, leaf_hashes
from verify.merkle import perfect_root
from verify.tiles import TILE_WIDTH


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
