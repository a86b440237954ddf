"""verify.tiles: C2SP tlog-tiles paths, layout math cross-checked against a brute-force tile
layout, and entry bundles."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verify.errors import MalformedError
from verify.merkle import inclusion_ranges, leaf_hash, range_nodes, root_from_leaf_hashes
from verify.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    decode_entry_bundle,
    encode_entry_bundle,
    entries_path,
    full_tile_hash,
    hash_in_tile,
    node_location,
    parse_tile_path,
    right_edge_tiles,
    tile_path,
    tile_width,
    tiles_for_nodes,
)

MAX_N = 70_000

# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------


def test_tile_path_examples_from_spec() -> None:
    assert TILE_HEIGHT == 8
    assert TILE_WIDTH == 256
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(0, 0) == "tile/0/000"
    assert tile_path(1, 999) == "tile/1/999"
    assert tile_path(1, 1000) == "tile/1/x001/000"
    assert tile_path(2, 1_000_000) == "tile/2/x001/x000/000"
    assert tile_path(0, 273, 112) == "tile/0/273.p/112"
    assert tile_path(0, 273, 256) == "tile/0/273"
    assert tile_path(63, 5, 1) == "tile/63/005.p/1"
    assert entries_path(1234067) == "tile/entries/x001/x234/067"
    assert entries_path(273, 112) == "tile/entries/273.p/112"


def test_tile_path_rejects_out_of_range_arguments() -> None:
    for args in [(64, 0, None), (-1, 0, None), (0, -1, None), (0, 0, 0), (0, 0, 257)]:
        with pytest.raises(ValueError):
            tile_path(*args)


@given(
    st.one_of(st.none(), st.integers(min_value=0, max_value=63)),
    st.integers(min_value=0, max_value=2**64),
    st.one_of(st.none(), st.integers(min_value=1, max_value=255)),
)
def test_tile_paths_round_trip(level: int | None, index: int, width: int | None) -> None:
    path = entries_path(index, width) if level is None else tile_path(level, index, width)
    assert path.startswith("tile/")
    assert parse_tile_path(path.removeprefix("tile/")) == (level, index, width)


def test_parse_tile_path_examples() -> None:
    assert parse_tile_path("0/x001/x234/067") == (0, 1234067, None)
    assert parse_tile_path("entries/x001/x234/067.p/5") == (None, 1234067, 5)
    assert parse_tile_path("63/000.p/255") == (63, 0, 255)


@pytest.mark.parametrize(
    "path",
    [
        "0/1234067",  # index not in 3-digit groups
        "0/x001/234/067",  # non-final group without x
        "0/x001/x234/x067",  # final group with x
        "0/x000/001",  # superfluous leading zero group
        "0/01",  # short group
        "0/0001",  # long group
        "00/000",  # level with leading zero
        "64/000",  # level above 63
        "100/000",
        "-1/000",
        "0/000.p/0",  # width 0
        "0/000.p/256",  # a full tile is never .p/256
        "0/000.p/05",  # width with leading zero
        "0/000.p/",
        "0/000.p5",
        "0/000/",
        "/0/000",
        "tile/0/000",  # caller must strip "tile/"
        "entries/000.p/1x",
        "entry/000",
        "0/\u0660\u0660\u0660",  # Arabic-Indic digits
        "0/000\n",
        "",
    ],
)
def test_parse_tile_path_rejects_non_canonical(path: str) -> None:
    with pytest.raises(MalformedError):
        parse_tile_path(path)


# ---------------------------------------------------------------------------------------------
# Brute-force layout: the hashes at tree level 8*L for size n are a prefix of those for MAX_N
# ---------------------------------------------------------------------------------------------


@cache
def level_hashes() -> tuple[tuple[bytes, ...], ...]:
    levels = [tuple(leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_N))]
    while len(levels[-1]) >= TILE_WIDTH:
        below = levels[-1]
        full = len(below) // TILE_WIDTH
        levels.append(
            tuple(
                root_from_leaf_hashes(below[j * TILE_WIDTH : (j + 1) * TILE_WIDTH])
                for j in range(full)
            )
        )
    return tuple(levels)


def brute_tiles(n: int) -> dict[tuple[int, int], bytes]:
    """Every tile (full and partial) of the tree of size n, by brute force."""
    out: dict[tuple[int, int], bytes] = {}
    for level, hashes in enumerate(level_hashes()):
        count = n // (TILE_WIDTH**level)
        row = hashes[:count]
        for j in range(0, len(row), TILE_WIDTH):
            out[(level, j // TILE_WIDTH)] = b"".join(row[j : j + TILE_WIDTH])
    return out


def test_right_edge_tiles_spec_examples() -> None:
    assert right_edge_tiles(70_000) == [(0, 273, 112), (1, 1, 17), (2, 0, 1)]
    assert right_edge_tiles(256) == [(1, 0, 1)]
    assert right_edge_tiles(0) == []
    assert right_edge_tiles(1) == [(0, 0, 1)]
    assert right_edge_tiles(65536) == [(2, 0, 1)]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_N))
def test_right_edge_tiles_and_widths_match_brute_force(n: int) -> None:
    tiles = brute_tiles(n)
    partial = sorted(
        (lv, idx, len(data) // 32) for (lv, idx), data in tiles.items() if len(data) < 8192
    )
    assert right_edge_tiles(n) == partial
    for (lv, idx), data in tiles.items():
        assert tile_width(lv, idx, n) == len(data) // 32
    for lv, idx, _ in partial:
        assert tile_width(lv, idx + 1, n) == 0


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=MAX_N), st.data())
def test_node_location_matches_brute_force(n: int, data: st.DataObject) -> None:
    tiles = brute_tiles(n)
    leaves = level_hashes()[0]
    m = data.draw(st.integers(min_value=0, max_value=n - 1))
    begin = data.draw(st.integers(min_value=0, max_value=n - 1))
    # Every node of an inclusion proof, plus the decomposition of a random range.
    nodes = [node for a, b in inclusion_ranges(m, n) for node in range_nodes(a, b)]
    nodes += range_nodes(begin, n)
    for level, index in nodes:
        tl, ti, start, count = node_location(level, index)
        assert count == 1 << (level % 8)
        assert tl == level // 8
        tile = tiles[(tl, ti)]
        want = root_from_leaf_hashes(leaves[index << level : (index + 1) << level])
        assert hash_in_tile(tile, start, count) == want
    assert tiles_for_nodes(nodes) <= set(tiles)


def test_node_location_examples() -> None:
    assert node_location(0, 0) == (0, 0, 0, 1)
    assert node_location(0, 257) == (0, 1, 1, 1)
    assert node_location(3, 33) == (0, 1, 8, 8)
    assert node_location(8, 0) == (1, 0, 0, 1)
    assert node_location(9, 5) == (1, 0, 10, 2)
    assert node_location(16, 1) == (2, 0, 1, 1)
    assert tiles_for_nodes([(0, 0), (7, 0), (8, 0), (3, 33)]) == {(0, 0), (1, 0), (0, 1)}


def test_full_tile_hash_is_the_hash_one_level_up() -> None:
    tiles = brute_tiles(MAX_N)
    assert full_tile_hash(tiles[(0, 5)]) == level_hashes()[1][5]
    assert full_tile_hash(tiles[(1, 0)]) == level_hashes()[2][0]
    with pytest.raises(MalformedError, match="want 8192"):
        full_tile_hash(tiles[(0, 273)])


def test_hash_in_tile_rejects_short_or_ragged_tiles() -> None:
    tile = brute_tiles(MAX_N)[(0, 0)]
    with pytest.raises(MalformedError, match="tile has 4 hashes"):
        hash_in_tile(tile[: 4 * 32], 4, 1)
    with pytest.raises(MalformedError, match="not a multiple of 32"):
        hash_in_tile(tile[:100], 0, 1)


# ---------------------------------------------------------------------------------------------
# Entry bundles
# ---------------------------------------------------------------------------------------------


@given(st.lists(st.binary(max_size=300), max_size=40))
def test_entry_bundle_round_trip(entries: list[bytes]) -> None:
    assert decode_entry_bundle(encode_entry_bundle(entries)) == entries


def test_entry_bundle_layout_and_limits() -> None:
    assert encode_entry_bundle([b"ab", b""]) == b"\x00\x02ab\x00\x00"
    big = b"x" * 65535
    assert decode_entry_bundle(encode_entry_bundle([big])) == [big]
    with pytest.raises(ValueError, match="65536 bytes"):
        encode_entry_bundle([big + b"x"])
    with pytest.raises(ValueError, match="at most 256"):
        encode_entry_bundle([b""] * 257)
    assert decode_entry_bundle(b"") == []


def test_truncated_entry_bundle_is_malformed() -> None:
    data = encode_entry_bundle([b"hello", b"world"])
    with pytest.raises(MalformedError, match=r"truncated in entry \[1\]"):
        decode_entry_bundle(data[:-1])
    with pytest.raises(MalformedError, match=r"length of entry \[1\]"):
        decode_entry_bundle(data[:8])
    with pytest.raises(MalformedError, match="more than 256"):
        decode_entry_bundle(b"\x00\x00" * 257)
