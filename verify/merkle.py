"""RFC 6962 / RFC 9162 §2.1 Merkle tree hashing and proofs (SHA-256).

Tree shape and hashing are exactly RFC 6962 §2.1: ``MTH({}) = SHA-256()``, a leaf hashes to
``SHA-256(0x00 || d)``, and a tree of ``n > 1`` leaves splits at ``k``, the largest power of two
strictly smaller than ``n``, into ``SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))``.

Guarantees:

* :func:`verify_inclusion` and :func:`verify_consistency` return ``None`` only when the proof
  has exactly the length RFC 9162 prescribes, every hash is 32 bytes, and the recomputed
  root(s) equal the given root(s) byte for byte. Anything else raises :class:`ProofError`.
* :func:`inclusion_ranges` and :func:`consistency_ranges` name, for a prover, the leaf ranges
  whose MTHs make up the RFC 9162 proofs ``PATH`` and ``PROOF`` in the order the verifier
  consumes them. Each such range is a complete, aligned subtree or a right edge of one, so
  its MTH is :func:`fold_right` of the node hashes of :func:`range_nodes`.

Node coordinates ``(level, index)`` name the complete subtree covering leaves
``[index << level, (index + 1) << level)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from verify.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "consistency_ranges",
    "fold_right",
    "inclusion_ranges",
    "leaf_hash",
    "leaf_hashes",
    "node_hash",
    "perfect_root",
    "range_nodes",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
# Copied, never updated: the hash states after the leaf and node prefixes (a copy is cheaper
# than a new hash object and a concatenation).
_LEAF_PREFIX = hashlib.sha256(b"\x00")
_NODE_PREFIX = hashlib.sha256(b"\x01")


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: ``SHA-256(0x00 || data)``."""
    h = _LEAF_PREFIX.copy()
    h.update(data)
    return h.digest()


def leaf_hashes(datas: Iterable[bytes]) -> list[bytes]:
    """:func:`leaf_hash` of each of ``datas``, in bulk (what an append hashes most)."""
    fresh = _LEAF_PREFIX.copy  # cheaper than a new hash object (and a concatenation) per leaf
    out = []
    for d in datas:
        h = fresh()
        h.update(d)
        out.append(h.digest())
    return out


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: ``SHA-256(0x01 || left || right)``."""
    h = _NODE_PREFIX.copy()
    h.update(left + right)
    return h.digest()


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """MTH of a power-of-two number (at least one) of leaf hashes, one level at a time.

    The same result as :func:`root_from_leaf_hashes` for such counts, with the pairs hashed in
    bulk: what tiles are made of, and what proofs from tiles compute most.
    """
    if not hashes or len(hashes) & (len(hashes) - 1):
        raise ValueError(f"perfect_root needs a power-of-two number of hashes, got {len(hashes)}")
    level = list(hashes)
    fresh = _NODE_PREFIX.copy
    while len(level) > 1:
        pairs = iter(level)
        parents = []
        for left, right in zip(pairs, pairs, strict=True):
            h = fresh()
            h.update(left + right)
            parents.append(h.digest())
        level = parents
    return level[0]


def _split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaves whose leaf hashes are ``hashes``; :data:`EMPTY_ROOT` for none.

    Iterative, O(n) hashing and O(log n) extra memory (a stack of perfect subtree roots).
    """
    if not hashes:
        return EMPTY_ROOT
    # stack[i] is the root of a perfect subtree; sizes strictly decrease along the stack.
    stack: list[tuple[int, bytes]] = []
    for h in hashes:
        level, node = 0, h
        while stack and stack[-1][0] == level:
            _, left = stack.pop()
            node = node_hash(left, node)
            level += 1
        stack.append((level, node))
    # The perfect subtrees left to right are exactly the range_nodes(0, n) decomposition.
    return fold_right([node for _, node in stack])


def range_nodes(begin: int, end: int) -> list[tuple[int, int]]:
    """Decompose leaves ``[begin, end)`` into maximal aligned complete subtrees, left to right.

    Returns ``(level, index)`` pairs; ``[]`` for an empty range.
    """
    if not 0 <= begin <= end:
        raise ValueError(f"invalid leaf range [{begin}, {end})")
    out: list[tuple[int, int]] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        out.append((level, begin >> level))
        begin += 1 << level
    return out


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """``H(h0, H(h1, ... H(h_{k-1}, h_k)))``: a range MTH from its :func:`range_nodes` hashes.

    Correct whenever the range begins at 0 or at a multiple of a power of two at least its
    length, which holds for every range of an RFC 6962 proof.
    """
    if not hashes:
        raise ValueError("fold_right needs at least one hash")
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges ``[a, b)`` whose MTHs form ``PATH(index, D[size])``, bottom-up.

    This is the proof order of RFC 9162 §2.1.3.1: the leaf's sibling first, the root's child
    last.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    out: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split_point(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()
    return out


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """Leaf ranges ``[a, b)`` whose MTHs form ``PROOF(size1, D[size2])``, in proof order.

    ``[]`` when ``size1 == size2`` or ``size1 == 0`` (RFC 9162 §2.1.4.1).
    """
    if not 0 <= size1 <= size2:
        raise ValueError(f"invalid consistency sizes {size1} -> {size2}")
    if size1 in (0, size2):
        return []
    out: list[tuple[int, int]] = []
    lo, hi, whole = 0, size2, True
    while size1 != hi:
        k = _split_point(hi - lo)
        if size1 - lo <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
            whole = False
    if not whole:
        out.append((lo, hi))
    out.reverse()
    return out


def _check_hash(h: bytes, what: str) -> None:
    if len(h) != HASH_SIZE:
        raise ProofError(f"{what} is {len(h)} bytes, want {HASH_SIZE}")


def _check_proof_hashes(proof: Sequence[bytes], what: str) -> None:
    for i, h in enumerate(proof):
        _check_hash(h, f"{what} hash [{i}]")


def _inclusion_shape(index: int, size: int) -> tuple[int, int]:
    """(inner, border): proof hashes below and on the right border where paths diverge."""
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        seed = node_hash(h, seed) if (index >> i) & 1 else node_hash(seed, h)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        if (index >> i) & 1:
            seed = node_hash(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = node_hash(h, seed)
    return seed


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root implied by an inclusion proof for ``leaf_hash`` at ``index`` in ``size``.

    Raises :class:`ProofError` if ``index`` is not in ``[0, size)``, a hash is not 32 bytes or
    the proof does not have exactly the RFC 9162 length for ``(index, size)``.
    """
    if index < 0 or size < 0:
        raise ProofError(f"negative index {index} or size {size}")
    if index >= size:
        raise ProofError(f"leaf index {index} is beyond tree size {size}")
    _check_hash(leaf_hash, "leaf hash")
    _check_proof_hashes(proof, "inclusion proof")
    inner, border = _inclusion_shape(index, size)
    if len(proof) != inner + border:
        raise ProofError(
            f"inclusion proof for leaf {index} in tree of size {size} has {len(proof)} "
            f"hashes, want {inner + border}"
        )
    res = _chain_inner(leaf_hash, proof[:inner], index)
    return _chain_border_right(res, proof[inner:])


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Verify that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    Returns only if the proof verifies; raises :class:`ProofError` otherwise.
    """
    _check_hash(root, f"root of tree size {size}")
    calculated = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if calculated != root:
        raise ProofError(
            f"inclusion proof for leaf {index} in tree of size {size} leads to root "
            f"{calculated.hex()}, want {root.hex()}"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Verify that the tree (``size1``, ``root1``) is a prefix of (``size2``, ``root2``).

    RFC 9162 §2.1.4.2 with its edge cases made explicit:

    * ``size1 > size2`` (or a negative size) is an error;
    * ``size1 == size2`` requires an empty proof and ``root1 == root2`` (and both equal to
      :data:`EMPTY_ROOT` when the size is 0); the roots are compared, not length-checked;
    * ``size1 == 0 < size2`` requires an empty proof and ``root1 == EMPTY_ROOT``: the empty
      tree is a prefix of every tree, so nothing more can be checked about ``root2``;
    * otherwise the proof must have exactly the prescribed length and reproduce both roots.

    When the sizes differ, every root and proof hash must be 32 bytes. Raises
    :class:`ProofError` on any failure.
    """
    if size1 < 0 or size2 < 0:
        raise ProofError(f"negative tree size {size1} or {size2}")
    if size1 > size2:
        raise ProofError(f"size1 {size1} is greater than size2 {size2}")
    if size1 == size2:
        # Nothing to recompute: the roots are only compared. (The shared transparency-dev
        # vectors accept equal roots of any length here.)
        if proof:
            raise ProofError(
                f"sizes are equal ({size1}) but consistency proof has {len(proof)} hashes, want 0"
            )
        if root1 != root2:
            raise ProofError(
                f"sizes are equal ({size1}) but root1 {root1.hex()} != root2 {root2.hex()}"
            )
        if size1 == 0 and root1 != EMPTY_ROOT:
            raise ProofError(f"root of the empty tree is {root1.hex()}, want {EMPTY_ROOT.hex()}")
        return
    _check_hash(root1, f"root1 (tree size {size1})")
    _check_hash(root2, f"root2 (tree size {size2})")
    _check_proof_hashes(proof, "consistency proof")
    if size1 == 0:
        if proof:
            raise ProofError(
                f"consistency proof from the empty tree has {len(proof)} hashes, want 0"
            )
        if root1 != EMPTY_ROOT:
            raise ProofError(f"root1 of the empty tree is {root1.hex()}, want {EMPTY_ROOT.hex()}")
        return
    if not proof:
        raise ProofError(f"empty consistency proof from size {size1} to {size2}")

    inner, border = _inclusion_shape(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    # The proof starts with the root of the size-2**shift subtree ending at size1, unless
    # size1 is that power of two itself, in which case that subtree root is root1.
    if size1 == 1 << shift:
        seed, start = root1, 0
    else:
        seed, start = proof[0], 1
    if len(proof) != start + inner + border:
        raise ProofError(
            f"consistency proof from size {size1} to {size2} has {len(proof)} hashes, "
            f"want {start + inner + border}"
        )
    rest = proof[start:]
    mask = (size1 - 1) >> shift
    hash1 = _chain_border_right(_chain_inner_right(seed, rest[:inner], mask), rest[inner:])
    if hash1 != root1:
        raise ProofError(
            f"consistency proof from size {size1} to {size2} leads to root1 {hash1.hex()}, "
            f"want {root1.hex()}"
        )
    hash2 = _chain_border_right(_chain_inner(seed, rest[:inner], mask), rest[inner:])
    if hash2 != root2:
        raise ProofError(
            f"consistency proof from size {size1} to {size2} leads to root2 {hash2.hex()}, "
            f"want {root2.hex()}"
        )
