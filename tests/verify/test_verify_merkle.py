"""verify.merkle against a naive reference written straight from RFC 6962 §2.1, and against
known roots. These tests prove the Merkle code without the shared vectors."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verify.errors import ProofError
from verify.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    consistency_ranges,
    fold_right,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    perfect_root,
    range_nodes,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# ---------------------------------------------------------------------------------------------
# Naive reference, transcribed from RFC 6962 §2.1 (recursive, slicing, no cleverness).
# ---------------------------------------------------------------------------------------------


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf *hashes* d."""
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return d[0]
    k = _k(n)
    return hashlib.sha256(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:])).digest()


def naive_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n])."""
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*naive_path(m, d[:k]), naive_mth(d[k:])]
    return [*naive_path(m - k, d[k:]), naive_mth(d[:k])]


def naive_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b)."""
    n = len(d)
    if m == n:
        return [] if b else [naive_mth(d)]
    k = _k(n)
    if m <= k:
        return [*naive_subproof(m, d[:k], b), naive_mth(d[k:])]
    return [*naive_subproof(m - k, d[k:], False), naive_mth(d[:k])]


def naive_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]); empty for m == 0 (nothing to prove) as in RFC 9162."""
    return [] if m == 0 else naive_subproof(m, d, True)


# ---------------------------------------------------------------------------------------------


MAX_LEAVES = 65537


@cache
def _all_leaves() -> tuple[bytes, ...]:
    return tuple(leaf_hash(i.to_bytes(8, "big")) for i in range(MAX_LEAVES))


def leaves(n: int) -> tuple[bytes, ...]:
    """Leaf hashes of a tree of n distinct entries (each tree is a prefix of the largest)."""
    assert n <= MAX_LEAVES
    return _all_leaves()[:n]


def range_hash(d: Sequence[bytes], begin: int, end: int) -> bytes:
    """MTH of d[begin:end] computed via range_nodes + fold_right."""
    nodes = range_nodes(begin, end)
    return fold_right([root_from_leaf_hashes(d[i << lv : (i + 1) << lv]) for lv, i in nodes])


def flip(b: bytes, bit: int) -> bytes:
    arr = bytearray(b)
    arr[bit // 8] ^= 1 << (bit % 8)
    return bytes(arr)


sizes = st.integers(min_value=1, max_value=600)
LARGE = [255, 256, 257, 511, 512, 513, 65535, 65536, 65537]

# ---------------------------------------------------------------------------------------------
# Known roots
# ---------------------------------------------------------------------------------------------


def test_empty_root_is_sha256_of_nothing() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert HASH_SIZE == 32


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert node_hash(a, b) != leaf_hash(a + b)


def test_small_tree_roots_computed_by_hand() -> None:
    lh = [leaf_hash(bytes([i])) for i in range(7)]
    h = node_hash
    assert root_from_leaf_hashes(lh[:1]) == lh[0]
    assert root_from_leaf_hashes(lh[:2]) == h(lh[0], lh[1])
    assert root_from_leaf_hashes(lh[:3]) == h(h(lh[0], lh[1]), lh[2])
    assert root_from_leaf_hashes(lh[:4]) == h(h(lh[0], lh[1]), h(lh[2], lh[3]))
    assert root_from_leaf_hashes(lh[:5]) == h(h(h(lh[0], lh[1]), h(lh[2], lh[3])), lh[4])
    assert root_from_leaf_hashes(lh[:6]) == h(h(h(lh[0], lh[1]), h(lh[2], lh[3])), h(lh[4], lh[5]))
    assert root_from_leaf_hashes(lh[:7]) == h(
        h(h(lh[0], lh[1]), h(lh[2], lh[3])), h(h(lh[4], lh[5]), lh[6])
    )


# The RFC 6962 reference leaves used by Certificate Transparency implementations and their
# published roots for sizes 1..8.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("size", range(1, 9))
def test_rfc6962_reference_roots(size: int) -> None:
    hashes = [leaf_hash(x) for x in CT_LEAVES[:size]]
    assert root_from_leaf_hashes(hashes).hex() == CT_ROOTS[size - 1]


def test_rfc6962_example_proof_shapes() -> None:
    # RFC 6962 §2.1.3: the tree of 7 leaves a..g (leaves 0..6).
    assert inclusion_ranges(0, 7) == [(1, 2), (2, 4), (4, 7)]  # PATH(0) = [b, h, l]
    assert inclusion_ranges(3, 7) == [(2, 3), (0, 2), (4, 7)]  # PATH(3) = [c, g, l]
    assert inclusion_ranges(4, 7) == [(5, 6), (6, 7), (0, 4)]  # PATH(4) = [f, j, k]
    assert inclusion_ranges(6, 7) == [(4, 6), (0, 4)]  # PATH(6) = [i, k]
    assert consistency_ranges(3, 7) == [(2, 3), (3, 4), (0, 2), (4, 7)]  # [c, d, g, l]
    assert consistency_ranges(4, 7) == [(4, 7)]  # [l]
    assert consistency_ranges(6, 7) == [(4, 6), (6, 7), (0, 4)]  # [i, j, k]
    assert consistency_ranges(7, 7) == []
    assert consistency_ranges(0, 7) == []


# ---------------------------------------------------------------------------------------------
# Fast versus naive
# ---------------------------------------------------------------------------------------------


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=700))
def test_root_from_leaf_hashes_matches_naive(n: int) -> None:
    assert root_from_leaf_hashes(leaves(n)) == naive_mth(leaves(n))


@pytest.mark.parametrize("n", LARGE)
def test_root_from_leaf_hashes_matches_naive_large(n: int) -> None:
    assert root_from_leaf_hashes(leaves(n)) == naive_mth(leaves(n))


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=5000), st.integers(min_value=0, max_value=5000))
def test_range_nodes_are_maximal_aligned_cover(a: int, b: int) -> None:
    begin, end = min(a, b), max(a, b)
    nodes = range_nodes(begin, end)
    pos = begin
    for level, index in nodes:
        assert index << level == pos  # contiguous, left to right, aligned
        pos = (index + 1) << level
    assert pos == end
    for (l1, i1), (l2, i2) in itertools.pairwise(nodes):
        # Maximal: two equal siblings that could be merged never appear side by side.
        assert not (l1 == l2 and i1 % 2 == 0 and i2 == i1 + 1)


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=9), st.integers(min_value=0, max_value=40), sizes)
def test_fold_right_gives_mth_of_proof_shaped_ranges(shift: int, block: int, n: int) -> None:
    # A range that begins at a multiple of a power of two at least its length.
    length = min(n, 1 << shift)
    begin = block << shift
    d = leaves(begin + length)
    assert range_hash(d, begin, begin + length) == naive_mth(d[begin : begin + length])


@settings(max_examples=200, deadline=None)
@given(sizes, st.data())
def test_inclusion_ranges_equal_naive_path(n: int, data: st.DataObject) -> None:
    m = data.draw(st.integers(min_value=0, max_value=n - 1))
    d = leaves(n)
    proof = [range_hash(d, a, b) for a, b in inclusion_ranges(m, n)]
    assert proof == naive_path(m, d)
    root = naive_mth(d)
    verify_inclusion(d[m], m, n, proof, root)
    assert root_from_inclusion_proof(d[m], m, n, proof) == root


@pytest.mark.parametrize("n", LARGE)
def test_inclusion_ranges_equal_naive_path_large(n: int) -> None:
    d = leaves(n)
    root = root_from_leaf_hashes(d)
    for m in sorted({0, 1, n // 2, n - 2, n - 1}):
        proof = [range_hash(d, a, b) for a, b in inclusion_ranges(m, n)]
        assert proof == naive_path(m, d)
        verify_inclusion(d[m], m, n, proof, root)


@settings(max_examples=200, deadline=None)
@given(sizes, st.data())
def test_consistency_ranges_equal_naive_proof(n: int, data: st.DataObject) -> None:
    m = data.draw(st.integers(min_value=0, max_value=n))
    d = leaves(n)
    proof = [range_hash(d, a, b) for a, b in consistency_ranges(m, n)]
    assert proof == naive_proof(m, d)
    verify_consistency(m, n, proof, naive_mth(d[:m]), naive_mth(d))


@pytest.mark.parametrize("n", LARGE)
def test_consistency_ranges_equal_naive_proof_large(n: int) -> None:
    d = leaves(n)
    root = root_from_leaf_hashes(d)
    for m in sorted({1, 2, 3, 255, 256, 257, n // 2, n - 1, n} & set(range(1, n + 1))):
        proof = [range_hash(d, a, b) for a, b in consistency_ranges(m, n)]
        assert proof == naive_proof(m, d)
        verify_consistency(m, n, proof, root_from_leaf_hashes(d[:m]), root)


# ---------------------------------------------------------------------------------------------
# Every single-bit flip is rejected
# ---------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(sizes, st.data())
def test_inclusion_rejects_any_single_bit_flip(n: int, data: st.DataObject) -> None:
    m = data.draw(st.integers(min_value=0, max_value=n - 1))
    d = leaves(n)
    proof = naive_path(m, d)
    root = naive_mth(d)
    parts = [d[m], *proof, root]
    which = data.draw(st.integers(min_value=0, max_value=len(parts) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=HASH_SIZE * 8 - 1))
    parts[which] = flip(parts[which], bit)
    with pytest.raises(ProofError):
        verify_inclusion(parts[0], m, n, parts[1:-1], parts[-1])


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=2, max_value=600), st.data())
def test_consistency_rejects_any_single_bit_flip(n: int, data: st.DataObject) -> None:
    m = data.draw(st.integers(min_value=1, max_value=n - 1))
    d = leaves(n)
    proof = naive_proof(m, d)
    parts = [naive_mth(d[:m]), *proof, naive_mth(d)]
    which = data.draw(st.integers(min_value=0, max_value=len(parts) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=HASH_SIZE * 8 - 1))
    parts[which] = flip(parts[which], bit)
    with pytest.raises(ProofError):
        verify_consistency(m, n, parts[1:-1], parts[0], parts[-1])


# ---------------------------------------------------------------------------------------------
# Shape and edge cases
# ---------------------------------------------------------------------------------------------


def test_inclusion_rejects_index_at_or_beyond_size() -> None:
    d = leaves(4)
    with pytest.raises(ProofError, match="beyond tree size"):
        verify_inclusion(d[0], 4, 4, naive_path(0, d), naive_mth(d))
    with pytest.raises(ProofError, match="beyond tree size"):
        verify_inclusion(EMPTY_ROOT, 0, 0, [], EMPTY_ROOT)


def test_inclusion_rejects_extra_or_missing_proof_hash() -> None:
    d = leaves(10)
    proof = naive_path(3, d)
    root = naive_mth(d)
    with pytest.raises(ProofError, match="has 5 hashes, want 4"):
        verify_inclusion(d[3], 3, 10, [*proof, proof[0]], root)
    with pytest.raises(ProofError, match="has 3 hashes, want 4"):
        verify_inclusion(d[3], 3, 10, proof[:-1], root)


def test_inclusion_rejects_wrong_length_hashes() -> None:
    d = leaves(2)
    with pytest.raises(ProofError, match="leaf hash is 0 bytes"):
        verify_inclusion(b"", 0, 2, [d[1]], naive_mth(d))
    with pytest.raises(ProofError, match=r"inclusion proof hash \[0\] is 31 bytes"):
        verify_inclusion(d[0], 0, 2, [d[1][:31]], naive_mth(d))
    with pytest.raises(ProofError, match="root of tree size 2 is 33 bytes"):
        verify_inclusion(d[0], 0, 2, [d[1]], naive_mth(d) + b"\x00")


def test_single_leaf_tree_root_is_the_leaf_hash() -> None:
    d = leaves(1)
    verify_inclusion(d[0], 0, 1, [], d[0])
    with pytest.raises(ProofError):
        verify_inclusion(d[0], 0, 1, [], EMPTY_ROOT)


def test_consistency_edge_cases() -> None:
    d = leaves(8)
    r4, r8 = naive_mth(d[:4]), naive_mth(d)
    verify_consistency(8, 8, [], r8, r8)
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(0, 8, [], EMPTY_ROOT, r8)
    with pytest.raises(ProofError, match="greater than size2"):
        verify_consistency(8, 4, [], r8, r4)
    with pytest.raises(ProofError, match="want 0"):
        verify_consistency(8, 8, [r4], r8, r8)
    with pytest.raises(ProofError, match=r"root1 .* != root2"):
        verify_consistency(8, 8, [], r4, r8)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 0, [], r4, r4)
    with pytest.raises(ProofError, match="from the empty tree has 1 hashes"):
        verify_consistency(0, 8, [r4], EMPTY_ROOT, r8)
    with pytest.raises(ProofError, match="root1 of the empty tree"):
        verify_consistency(0, 8, [], r4, r8)
    with pytest.raises(ProofError, match="empty consistency proof"):
        verify_consistency(4, 8, [], r4, r8)
    with pytest.raises(ProofError, match="root2"):
        verify_consistency(4, 8, naive_proof(4, d), r4, r4)


def test_fold_right_and_ranges_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="at least one"):
        fold_right([])
    with pytest.raises(ValueError, match="invalid leaf range"):
        range_nodes(5, 4)
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_ranges(3, 3)
    with pytest.raises(ValueError, match="invalid consistency"):
        consistency_ranges(4, 3)
    assert range_nodes(7, 7) == []


@pytest.mark.parametrize("count", [1, 2, 4, 8, 64, 256])
def test_perfect_root_is_the_naive_root_of_a_power_of_two(count: int) -> None:
    hashes = [leaf_hash(f"leaf {i}".encode()) for i in range(count)]
    assert perfect_root(hashes) == naive_mth(hashes) == root_from_leaf_hashes(hashes)


@pytest.mark.parametrize("count", [0, 3, 6, 255])
def test_perfect_root_refuses_a_count_that_is_not_a_power_of_two(count: int) -> None:
    with pytest.raises(ValueError, match="power-of-two"):
        perfect_root([bytes(32)] * count)
