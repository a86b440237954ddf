"""Reading the tiled tree from PostgreSQL: node hashes, roots and proofs in O(log n) tile reads.

Every function takes a connection (or pool) and reads only ``ledger_tiles``; each proof needs a
single query for all the tiles it touches. Tiles only ever grow by appending hashes, so a tile
row read for a larger tree still answers correctly for a smaller size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from vault.db import Conn
from vault.errors import LedgerCorrupt
from verify.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    consistency_ranges,
    fold_right,
    inclusion_ranges,
    range_nodes,
)
from verify.tiles import TILE_WIDTH, hash_in_tile, node_location, tiles_for_nodes

TileKey = tuple[int, int]


async def read_state(conn: Conn) -> tuple[int, bytes]:
    """The sequencer's committed (size, root)."""
    row = await conn.fetchrow("SELECT size, root FROM ledger_state")
    if row is None:
        raise LedgerCorrupt("the ledger_state row is missing: run `evault ledger fsck`")
    return int(row["size"]), bytes(row["root"])


async def fetch_tiles(conn: Conn, keys: Iterable[TileKey]) -> dict[TileKey, bytes]:
    """The stored tiles for ``keys`` (absent ones are simply missing from the result)."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    rows = await conn.fetch(
        "SELECT t.level, t.idx, t.hashes FROM ledger_tiles t"
        " JOIN unnest($1::smallint[], $2::bigint[]) AS k(level, idx)"
        " ON t.level = k.level AND t.idx = k.idx",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(r[0], r[1]): bytes(r[2]) for r in rows}


# Nodes computed from full tiles above level 0, keyed by the tile's bytes: a full tile never
# changes, and every proof crosses the same few upper tiles (at 1M entries, 16 at level 1 and
# one at level 2), so their nodes are hashed once instead of in every proof. Keyed by content,
# a cached node is exactly what hashing the same bytes again would give. Bounded: cleared when
# it reaches _NODE_CACHE_MAX entries (a few MB of tiles at most).
_NODE_CACHE: dict[tuple[bytes, int, int], bytes] = {}
_NODE_CACHE_MAX = 512
_FULL_TILE = TILE_WIDTH * HASH_SIZE


def _node_hash(tiles: dict[TileKey, bytes], node: tuple[int, int]) -> bytes:
    tile_level, tile_index, start, count = node_location(*node)
    tile = tiles.get((tile_level, tile_index))
    if tile is None:
        raise LedgerCorrupt(f"tile {tile_level}/{tile_index} is missing for node {node}")
    if tile_level == 0 or count < 16 or len(tile) != _FULL_TILE:
        return hash_in_tile(tile, start, count)
    key = (tile, start, count)
    found = _NODE_CACHE.get(key)
    if found is None:
        if len(_NODE_CACHE) >= _NODE_CACHE_MAX:
            _NODE_CACHE.clear()
        found = _NODE_CACHE[key] = hash_in_tile(tile, start, count)
    return found


async def range_hashes(conn: Conn, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """MTH of each leaf range (each starting at 0 or aligned, as every proof range is)."""
    per_range = [range_nodes(a, b) for a, b in ranges]
    tiles = await fetch_tiles(conn, tiles_for_nodes(n for nodes in per_range for n in nodes))
    return [fold_right([_node_hash(tiles, n) for n in nodes]) for nodes in per_range]


async def root_at(conn: Conn, size: int) -> bytes:
    """The root of the tree's first ``size`` leaves, from the stored tiles."""
    if size == 0:
        return EMPTY_ROOT
    (root,) = await range_hashes(conn, [(0, size)])
    return root


async def inclusion_proof(conn: Conn, index: int, size: int) -> list[bytes]:
    """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size``."""
    return await range_hashes(conn, inclusion_ranges(index, size))


async def consistency_proof(conn: Conn, size1: int, size2: int) -> list[bytes]:
    """RFC 9162 consistency proof from ``size1`` to ``size2``."""
    return await range_hashes(conn, consistency_ranges(size1, size2))
