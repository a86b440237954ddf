"""The sequencer: appends entries by group commit behind one PostgreSQL advisory lock.

Guarantees:
- ``append`` returns only once its entries, their openings, the updated tiles and the tree state
  are committed in one transaction; it returns the indexes assigned, consecutive per call.
- Indexes have no gaps and no duplicates, whatever the number of processes appending: each batch
  takes the advisory lock, reads the committed size, and writes ``size .. size+n-1``.
- An ``effect`` passed with an append runs inside the same transaction, after the entries are
  written, with their indexes; if it fails, only that call fails (its batch is retried without it)
  and nothing of it is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from vault.db import Conn
from vault.errors import LedgerCorrupt
from vault.ledger.entry import PreparedEntry
from vault.ledger.tiles import fetch_tiles, read_state
from vault.ledger.tree import TreeEdge
from vault.metrics import LEDGER_BATCH, LEDGER_COMMIT_SECONDS, LEDGER_ENTRIES, LEDGER_SIZE
from verify.merkle import leaf_hash
from verify.tiles import right_edge_tiles

log = logging.getLogger("evault.ledger")

LEDGER_LOCK = 0x65766C67  # "evlg"

Effect = Callable[[Conn, list[int]], Awaitable[None]]


@dataclass
class _Request:
    entries: Sequence[PreparedEntry]
    effect: Effect | None
    future: asyncio.Future[list[int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Sequencer:
    """Group-commit appender; see the module docstring for its guarantees."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        *,
        batch_max: int = 4096,
        batch_wait: float = 0.002,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._pool = pool
        self._batch_max = batch_max
        self._batch_wait = batch_wait
        self._on_commit = on_commit
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._edge: TreeEdge | None = None
        self._task: asyncio.Task[None] | None = None

    async def append(
        self, entries: Sequence[PreparedEntry], effect: Effect | None = None
    ) -> list[int]:
        """Append ``entries`` durably; return their indexes."""
        if not entries:
            return []
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="ledger-sequencer")
        req = _Request(entries, effect)
        await self._queue.put(req)
        return await req.future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            req = self._queue.get_nowait()
            if not req.future.done():
                req.future.set_exception(
                    RuntimeError("ledger closed before the entry was appended")
                )

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            count = len(batch[0].entries)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._batch_wait
            while count < self._batch_max:
                try:
                    req = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        req = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                batch.append(req)
                count += len(req.entries)
            await self._commit_or_split(batch)

    async def _commit_or_split(self, batch: list[_Request]) -> None:
        try:
            results = await self._commit(batch)
        except asyncio.CancelledError:
            for req in batch:
                if not req.future.done():
                    req.future.set_exception(RuntimeError("ledger closed during the append"))
            raise
        except Exception as exc:  # noqa: BLE001  (handed to its callers: none dropped or hanging)
            self._edge = None  # state unknown: reload under the lock next time
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            log.warning(
                "ledger batch of %d calls failed (%s); retrying one by one", len(batch), exc
            )
            for req in batch:
                await self._commit_or_split([req])
            return
        for req, indexes in zip(batch, results, strict=True):
            if not req.future.done():
                req.future.set_result(indexes)

    async def _load_edge(self, conn: Conn, size: int, root: bytes) -> TreeEdge:
        if self._edge is not None and self._edge.size == size:
            return self._edge
        keys = [(lv, ix) for lv, ix, _w in right_edge_tiles(size)]
        edge = TreeEdge.from_tiles(size, await fetch_tiles(conn, keys))
        if edge.root() != root:
            raise LedgerCorrupt(
                f"stored tiles do not give the stored root at size {size}: run fsck"
            )
        return edge

    async def _commit(self, batch: list[_Request]) -> list[list[int]]:
        with LEDGER_COMMIT_SECONDS.time():
            results, edge = await self._transaction(batch)
        self._edge = edge
        appended = sum(len(r) for r in results)
        LEDGER_ENTRIES.inc(appended)
        LEDGER_BATCH.observe(appended)
        LEDGER_SIZE.set(edge.size)
        if self._on_commit is not None:
            self._on_commit(edge.size)
        return results

    async def _transaction(self, batch: list[_Request]) -> tuple[list[list[int]], TreeEdge]:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LEDGER_LOCK)
            size, root = await read_state(conn)
            edge = (await self._load_edge(conn, size, root)).copy()
            records: list[tuple[int, str, bytes]] = []
            openings: list[tuple[int, str, bytes, bytes]] = []
            results: list[list[int]] = []
            idx = size
            for req in batch:
                indexes = []
                for e in req.entries:
                    records.append((idx, e.kind, e.data))
                    openings.extend((idx, o.field, o.salt, o.value) for o in e.openings)
                    indexes.append(idx)
                    idx += 1
                results.append(indexes)
            await conn.copy_records_to_table(
                "ledger_entries", records=records, columns=["idx", "kind", "data"]
            )
            if openings:
                await conn.copy_records_to_table(
                    "ledger_openings", records=openings, columns=["idx", "field", "salt", "value"]
                )
            touched = edge.append([leaf_hash(r[2]) for r in records])
            keys = sorted(touched)
            await conn.execute(
                "INSERT INTO ledger_tiles (level, idx, hashes)"
                " SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])"
                " ON CONFLICT (level, idx) DO UPDATE SET hashes = EXCLUDED.hashes",
                [k[0] for k in keys],
                [k[1] for k in keys],
                [touched[k] for k in keys],
            )
            await conn.execute(
                "UPDATE ledger_state SET size = $1, root = $2", edge.size, edge.root()
            )
            for req, indexes in zip(batch, results, strict=True):
                if req.effect is not None:
                    await req.effect(conn, indexes)
        return results, edge
