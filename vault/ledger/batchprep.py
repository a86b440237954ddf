"""Prepared batches: everything one append batch writes, computed in Python before its
transaction (leaf hashes, the tree edge after it, touched tiles, binary COPY data for large
batches, openings, the indexes per call, and the batch authenticator).

Guarantees: ``prepare`` never changes the edge it is given (it works on a copy), so a batch
prepared on a tree that turns out not to be the committed one is simply prepared again; the
result depends only on the entries, the edge and the host key (the same inputs give the same
rows and tag in every process). ``prepare_yielding`` is the same computation, giving other tasks
a turn between slices of one tile each.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass

from vault.db import Conn
from vault.keys.hostmac import HostMac
from vault.ledger.entry import PreparedEntry
from vault.ledger.tree import TreeEdge
from verify.merkle import leaf_hashes
from verify.tiles import TILE_WIDTH

# Batches smaller than this are written with one INSERT statement (fewer round trips); larger
# ones by COPY, which PostgreSQL inserts faster per row.
COPY_MIN = 256
# Entries prepared between two chances for the event loop to serve the transaction in flight:
# one level-0 tile (slices are aligned to tiles).
PREPARE_SLICE = TILE_WIDTH


@dataclass
class Prepared:
    """A batch ready to write on top of the tree (base_size, base_root)."""

    base_size: int
    base_root: bytes
    edge: TreeEdge  # after the batch
    root: bytes
    kinds: list[str]
    datas: list[bytes]
    copy: bytes | None  # the entries as binary COPY data (for batches of COPY_MIN or more)
    openings: list[tuple[int, str, bytes, bytes]]
    tiles: tuple[list[int], list[int], list[bytes]]
    results: list[list[int]]
    leaves: bytes  # the batch's leaf hashes, concatenated
    tag: bytes  # HostMac.batch(base_size, leaves, edge.size, root)


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension
_COPY_TRAILER = b"\xff\xff"


def _copy_rows(start: int, kinds: Sequence[str], datas: Sequence[bytes]) -> list[bytes]:
    """Binary COPY tuples (idx bigint, kind text, data bytea) for entries from ``start``."""
    packers: dict[str, tuple[Callable[..., bytes], int, bytes]] = {}
    out: list[bytes] = []
    append = out.append
    idx = start
    for kind, data in zip(kinds, datas, strict=True):
        packer = packers.get(kind)
        if packer is None:
            name = kind.encode()
            fmt = struct.Struct(f">hiqi{len(name)}si")  # 3 fields; 8, idx; len, kind; len
            packer = packers[kind] = (fmt.pack, len(name), name)
        pack, size, name = packer
        append(pack(3, 8, idx, size, name, len(data)))
        append(data)
        idx += 1
    return out


def _prepare_steps(
    batch: Sequence[Sequence[PreparedEntry]], edge: TreeEdge, mac: HostMac
) -> Iterator[Prepared | None]:
    """Prepare ``batch`` on a copy of ``edge`` in slices: yields None between slices (so an
    event loop can serve the transaction in flight), then the result, tagged with ``mac``."""
    base_size = edge.size
    base_root = edge.root()
    kinds: list[str] = []
    datas: list[bytes] = []
    openings: list[tuple[int, str, bytes, bytes]] = []
    results = []
    idx = base_size
    for entries in batch:
        # Columns of the entries (named tuples) without a Python-level pass per field.
        req_kinds, req_datas, req_openings = zip(*entries, strict=True)
        kinds += req_kinds
        datas += req_datas
        if any(req_openings):
            openings += [
                (idx + i, o.field, o.salt, o.value)
                for i, entry_openings in enumerate(req_openings)
                for o in entry_openings
            ]
        results.append(list(range(idx, idx + len(entries))))
        idx += len(entries)
    after = edge.copy()
    touched: dict[tuple[int, int], bytes] = {}
    copy: list[bytes] | None = [_COPY_HEADER] if len(datas) >= COPY_MIN else None
    leaves: list[bytes] = []
    # Slices end on tile boundaries, so a tile is hashed in one piece wherever it can be.
    first = 0
    while first < len(datas):
        end = min(len(datas), first + PREPARE_SLICE - (base_size + first) % PREPARE_SLICE)
        part = datas[first:end]
        hashes = leaf_hashes(part)
        leaves.append(b"".join(hashes))  # a slice's hashes in one object, not 256 small ones
        touched.update(after.append(hashes))
        if copy is not None:
            copy += _copy_rows(base_size + first, kinds[first:end], part)
        first = end
        yield None
    if copy is not None:
        copy.append(_COPY_TRAILER)
    keys = sorted(touched)
    tiles = ([k[0] for k in keys], [k[1] for k in keys], [touched[k] for k in keys])
    root = after.root()
    joined = b"".join(leaves)
    yield Prepared(
        base_size,
        base_root,
        after,
        root,
        kinds,
        datas,
        None if copy is None else b"".join(copy),
        openings,
        tiles,
        results,
        joined,
        mac.batch(base_size, joined, after.size, root),
    )


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    """``data`` as COPY's source (bytes alone would be taken for a file name)."""
    yield data


async def copy_entries(conn: Conn, copy: bytes) -> None:
    """Write prepared entries (binary COPY data) into ``ledger_entries``."""
    await conn.copy_to_table(
        "ledger_entries", source=_chunks(copy), columns=["idx", "kind", "data"], format="binary"
    )


def prepare(batch: Sequence[Sequence[PreparedEntry]], edge: TreeEdge, mac: HostMac) -> Prepared:
    """Everything a batch writes, computed on a copy of ``edge`` (which is left unchanged)."""
    for step in _prepare_steps(batch, edge, mac):
        if step is not None:
            return step
    raise AssertionError("unreachable")


async def prepare_yielding(
    batch: Sequence[Sequence[PreparedEntry]], edge: TreeEdge, mac: HostMac
) -> Prepared:
    """:func:`prepare`, letting other tasks run between slices."""
    for step in _prepare_steps(batch, edge, mac):
        if step is not None:
            return step
        await asyncio.sleep(0)
    raise AssertionError("unreachable")
