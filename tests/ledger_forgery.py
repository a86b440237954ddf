"""What a database insider can do to the ledger without the host's keys, for the attack tests.

Each helper works on a connection as whichever role the test chose (``evault_app`` after
``SET ROLE``, or the superuser) and leaves the tree self-consistent: the tiles and the tree state
are rewritten with the project's own :class:`TreeEdge`, so only the host-keyed batch rows (and
signed checkpoints) can tell the forgery apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import asyncpg

from vault.db import Conn
from vault.keys.hostmac import HostMac
from vault.ledger.tiles import fetch_tiles, read_state
from vault.ledger.tree import TreeEdge
from verify.canonical import canonical_json
from verify.merkle import leaf_hash, leaf_hashes
from verify.tiles import right_edge_tiles


async def connect_as(dsn: str, role: str) -> asyncpg.Connection[asyncpg.Record]:
    """A connection as ``role``: "evault_app" (SET ROLE) or "superuser" (the DSN's own user)."""
    conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(dsn)
    if role == "evault_app":
        await conn.execute("SET ROLE evault_app")
    return conn


async def _write_tiles(conn: Conn, touched: Mapping[tuple[int, int], bytes]) -> None:
    for (level, index), hashes in touched.items():
        await conn.execute(
            "INSERT INTO ledger_tiles (level, idx, hashes) VALUES ($1, $2, $3)"
            " ON CONFLICT (level, idx) DO UPDATE SET hashes = EXCLUDED.hashes",
            level,
            index,
            hashes,
        )


def altered(data: bytes, change: Mapping[str, Any]) -> bytes:
    """``data`` (a canonical entry) with ``change`` applied to its top-level fields."""
    doc = json.loads(data)
    doc.update(change)
    return canonical_json(doc)


async def forge_appended_entry(
    conn: Conn,
    source: int,
    change: Mapping[str, Any],
    *,
    batch_tag: bytes | None = None,
    batch_mac: HostMac | None = None,
) -> int:
    """Append a copy of entry ``source`` with ``change`` (its commitments and openings copied),
    then rewrite the tiles and tree state to include it; with ``batch_tag``, also insert a
    batch row for it carrying that tag (say, a real batch's), with ``batch_mac`` one tagged the
    way the sequencer tags (under a key the insider has, not the host's). Returns the forged
    entry's index."""
    size, _root = await read_state(conn)
    data = altered(
        bytes(await conn.fetchval("SELECT data FROM ledger_entries WHERE idx=$1", source)), change
    )
    kind = json.loads(data)["kind"]
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO ledger_entries (idx, kind, data) VALUES ($1, $2, $3)", size, kind, data
        )
        await conn.execute(
            "INSERT INTO ledger_openings (idx, field, salt, value)"
            " SELECT $1, field, salt, value FROM ledger_openings WHERE idx = $2",
            size,
            source,
        )
        keys = [(level, index) for level, index, _w in right_edge_tiles(size)]
        edge = TreeEdge.from_tiles(size, await fetch_tiles(conn, keys))
        await _write_tiles(conn, edge.append([leaf_hash(data)]))
        await conn.execute("UPDATE ledger_state SET size = $1, root = $2", size + 1, edge.root())
        if batch_mac is not None:
            batch_tag = batch_mac.batch(size, leaf_hash(data), size + 1, edge.root())
        if batch_tag is not None:
            await conn.execute(
                "INSERT INTO ledger_batches (first, count, size, root, leaves, tag)"
                " VALUES ($1, 1, $2, $3, $4, $5)",
                size,
                size + 1,
                edge.root(),
                leaf_hash(data),
                batch_tag,
            )
    return size


async def rebuild_tree(conn: Conn) -> None:
    """Recompute every tile and the tree state from the entries as they are now."""
    datas = [
        bytes(r["data"]) for r in await conn.fetch("SELECT data FROM ledger_entries ORDER BY idx")
    ]
    edge = TreeEdge()
    touched: dict[tuple[int, int], bytes] = {}
    for start in range(0, len(datas), 256):
        touched.update(edge.append(leaf_hashes(datas[start : start + 256])))
    await _write_tiles(conn, touched)
    await conn.execute("UPDATE ledger_state SET size = $1, root = $2", edge.size, edge.root())


async def _enable(conn: Conn, table: str) -> None:
    """Triggers of ``table`` back as the migrations left them (ours ENABLE ALWAYS)."""
    await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER ALL")
    for name in ("append_only", "no_truncate"):
        await conn.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_{name}")


async def rewrite_entry(conn: Conn, idx: int, change: Mapping[str, Any]) -> None:
    """As the superuser: change entry ``idx``'s bytes (triggers disabled, then enabled again)
    and recompute every tile and the tree state to match."""
    data = altered(
        bytes(await conn.fetchval("SELECT data FROM ledger_entries WHERE idx=$1", idx)), change
    )
    await conn.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ALL")
    try:
        await conn.execute("UPDATE ledger_entries SET data = $2 WHERE idx = $1", idx, data)
    finally:
        await _enable(conn, "ledger_entries")
    await rebuild_tree(conn)


async def delete_batch_rows(conn: Conn, where: str, *args: object) -> int:
    """As the superuser: delete the ``ledger_batches`` rows matching ``where``."""
    await conn.execute("ALTER TABLE ledger_batches DISABLE TRIGGER ALL")
    try:
        status = await conn.execute(f"DELETE FROM ledger_batches WHERE {where}", *args)
    finally:
        await _enable(conn, "ledger_batches")
    return int(status.split()[-1])
