"""The sequencer: appends entries by group commit behind one PostgreSQL advisory lock.

Guarantees:
- ``append`` returns only once its entries, their openings, the updated tiles and the tree state
  are committed in one transaction; it returns the indexes assigned, consecutive per call.
- Indexes have no gaps and no duplicates, whatever the number of processes appending: each batch
  takes the advisory lock, reads the committed size and root, and writes ``size .. size+n-1``.
- An ``effect`` passed with an append runs inside the same transaction, after the entries are
  written, with their indexes; if it fails, only that call fails (its batch is retried without it)
  and nothing of it is committed.
- Every committed batch leaves one ``ledger_batches`` row in its own transaction: its first index,
  its leaf hashes and the tree it leaves (size, root), with ``HostMac.batch`` over them (one HMAC
  per batch, computed where the batch is prepared, on the tree it is prepared on). Entries that
  did not come through a sequencer holding the host key lie outside every authenticated batch:
  the checkpointer never signs them and fsck names them (see checkpointer.py, fsck.py).
- An append ``within`` a time either returns its indexes or raises, and then nothing of it is
  ever committed: not yet in a transaction when the time is up, it is withdrawn (TimeoutError);
  in one, that transaction's outcome decides, and its statements are bounded by what remained of
  the time (a statement timeout, and the same bound in the client for a server that does not
  answer), so it aborts rather than committing long after the caller gave up. Only a COMMIT
  itself is waited for: its outcome is the answer.
- A COMMIT that fails (the connection lost, the server killed: its outcome unknown) fails every
  call of its batch, never retried (it may have committed): before the callers get the error,
  the batch's entries (index, leaf hash, kind) are handed to ``on_doubt``, which records them
  durably for the resolver (vault/ledger/indoubt.py), except those of calls appended with
  ``doubt=False`` (the resolver's own). A call whose caller gives up while its transaction runs
  (cancelled) is never retried, and its entries are handed over too if that transaction
  commits.

Pipelining: while one batch's transaction is in PostgreSQL, the next batch is prepared in
Python (leaf hashes, tree edge, tiles, rows) on a *speculative* edge: the edge the previous
batch will leave if it commits. A prepared batch is used only if, under the lock, the committed
(size, root) is exactly the one it was prepared on; otherwise (a failed commit, another process
appended) it is prepared again inside the transaction from the committed edge. A failed
transaction discards the committed and the speculative edge alike: the next batch reloads the
edge from the stored tiles under the lock.

Overlapping commits: while one batch's transaction is committing (its WAL flushed to disk), the
next prepared batch of COPY size already runs its COPY of entries on another connection, before
it asks for the lock; it then waits for the lock, which the first releases at its commit. If the
tree under the lock is not the one that batch was prepared on, the transaction is rolled back
(its entries carry the wrong indexes) and the batch is written again, lock first. At most
:data:`COMMITS_IN_FLIGHT` transactions are open at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import asyncpg

from vault.db import Conn
from vault.errors import LedgerCorrupt
from vault.keys.hostmac import HostMac
from vault.ledger.batchprep import Prepared, copy_entries, prepare, prepare_yielding
from vault.ledger.entry import PreparedEntry
from vault.ledger.indoubt import InDoubt, in_doubt
from vault.ledger.tiles import fetch_tiles
from vault.ledger.tree import TreeEdge
from vault.metrics import (
    LEDGER_BATCH,
    LEDGER_COMMIT_SECONDS,
    LEDGER_EARLY_WRITES,
    LEDGER_ENTRIES,
    LEDGER_SIZE,
)
from verify.tiles import right_edge_tiles

log = logging.getLogger("evault.ledger")

LEDGER_LOCK = 0x65766C67  # "evlg"

# Batches prepared ahead of the one committing (each holds its rows, tiles and edge).
PIPE_DEPTH = 4
# Append transactions open at once: one committing, the next one writing its entries.
COMMITS_IN_FLIGHT = 2

Effect = Callable[[Conn, list[int]], Awaitable[None]]

# Locks, checks the base the batch was prepared on, writes tiles, state, the batch row and
# (small batches) entries: see migrations 007 and 009.
_ADVANCE_SQL = (
    "SELECT applied, size, root"
    " FROM evault_ledger_advance($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
)
_OPENINGS_SQL = (
    "INSERT INTO ledger_openings (idx, field, salt, value)"
    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::bytea[])"
)


class _Stale(Exception):
    """A batch whose entries were written before the lock was prepared on another tree."""


class _InDoubt(Exception):
    """The COMMIT of a written batch failed: it may have committed (``__cause__``: why)."""

    def __init__(self, written: Prepared) -> None:
        super().__init__("the ledger append's COMMIT failed: its outcome is unknown")
        self.written = written


# Attempts after a rolled-back early write or a deadlock, before the callers get the error.
_RETRIES = 3


@dataclass
class _Order:
    """Where a transaction stands among ours: ``after`` resolves with what the previous one
    writes once it holds the lock (None if it failed or is not in flight); ``advanced`` is this
    one's, for the next."""

    after: asyncio.Future[Prepared | None] | None
    advanced: asyncio.Future[Prepared | None]

    def advanced_with(self, written: Prepared | None) -> None:
        if not self.advanced.done():
            self.advanced.set_result(written)

    async def early(self, prepared: Prepared | None) -> bool:
        """Whether ``prepared``'s entries may be written before the lock: the transaction
        before it holds the lock and writes exactly the tree it was prepared on."""
        if self.after is None or prepared is None or prepared.copy is None:
            return False
        before = await asyncio.shield(self.after)
        return (
            before is not None
            and before.edge.size == prepared.base_size
            and before.root == prepared.base_root
        )


@dataclass
class _Request:
    entries: Sequence[PreparedEntry]
    effect: Effect | None
    deadline: float | None = None  # event loop time; None: no limit
    future: asyncio.Future[list[int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    doubt: bool = True  # a failed COMMIT of it is recorded as a doubt
    claimed: bool = False  # taken into a transaction: its outcome is the answer
    withdrawn: bool = False  # the caller gave up before that: never written
    abandoned: bool = False  # ... or after that, unanswered: its commit is a doubt
    written: Prepared | None = None  # the batch that committed it

    def fail(self, exc: BaseException) -> None:
        if not self.future.done() and not self.withdrawn:
            self.future.set_exception(exc)


# Beyond a batch's deadline, the client-side bound on its statements (the server's own statement
# timeout normally ends them first).
_CLIENT_SLACK = 1.0


def _claim(
    batch: list[_Request], prepared: Prepared | None, now: float
) -> tuple[list[_Request], Prepared | None]:
    """The requests of ``batch`` still wanted, now claimed for a transaction; the others are
    withdrawn or past their deadline (TimeoutError) and dropped, and with them ``prepared``,
    which holds their entries."""
    live = []
    for req in batch:
        if req.withdrawn or req.abandoned or req.future.done():
            continue
        if req.deadline is not None and req.deadline <= now:
            req.fail(TimeoutError("the ledger append was not written in time"))
            continue
        req.claimed = True
        live.append(req)
    return live, (prepared if len(live) == len(batch) else None)


def _deadline(batch: Sequence[_Request]) -> float | None:
    return min((r.deadline for r in batch if r.deadline is not None), default=None)


class Sequencer:
    """Group-commit appender; see the module docstring for its guarantees."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        *,
        mac: HostMac,
        batch_max: int = 16384,
        batch_wait: float = 0.002,
        on_commit: Callable[[int], None] | None = None,
        on_doubt: Callable[[list[InDoubt]], None] | None = None,
    ) -> None:
        self._pool = pool
        self._mac = mac
        self._batch_max = batch_max
        self._batch_wait = batch_wait
        self._on_commit = on_commit
        self._on_doubt = on_doubt
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        # Collected batches on their way to the committer, prepared when an edge was known.
        self._pipe: asyncio.Queue[tuple[list[_Request], Prepared | None]] = asyncio.Queue(
            PIPE_DEPTH
        )
        self._edge: TreeEdge | None = None  # the committed edge, when known
        self._spec: TreeEdge | None = None  # the edge after the last batch put in the pipe
        self._inflight = 0  # batches put in the pipe and not yet committed or failed
        self._generation = 0  # bumped whenever the speculative edge is dropped
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []

    async def append(
        self,
        entries: Sequence[PreparedEntry],
        effect: Effect | None = None,
        *,
        within: float | None = None,
        doubt: bool = True,
    ) -> list[int]:
        """Append ``entries`` durably; return their indexes. ``within`` seconds: TimeoutError,
        and nothing of it committed, if not written by then (see the module docstring).
        ``doubt=False``: a failed COMMIT of them is not recorded as a doubt."""
        if not entries:
            return []
        if not self._tasks or any(t.done() for t in self._tasks):
            # (Re)start without awaiting, so that concurrent callers start one pair only.
            for task in self._tasks:
                task.cancel()
            self._reset()
            self._tasks = [
                asyncio.create_task(self._prepare_loop(), name="ledger-preparer"),
                asyncio.create_task(self._commit_loop(), name="ledger-sequencer"),
            ]
        loop = asyncio.get_running_loop()
        req = _Request(
            entries, effect, None if within is None else loop.time() + within, doubt=doubt
        )
        self._queue.put_nowait(req)
        delivered = False
        try:
            async with asyncio.timeout_at(req.deadline):
                indexes = await asyncio.shield(req.future)
                delivered = True
            return indexes
        except TimeoutError:
            if not req.claimed:
                raise
            # In a transaction bounded by the same deadline: its outcome is the answer.
            indexes = await req.future
            delivered = True
            return indexes
        finally:
            if not req.claimed:
                req.withdrawn = True  # never to be written
            elif not delivered:  # the caller gave up during its transaction: if it committed,
                req.abandoned = True  # that is a doubt (recorded here, or by the committer)
                f = req.future
                if f.done() and not f.cancelled() and not f.exception() and req.written:
                    self._doubted([(req, f.result())], req.written)

    async def close(self) -> None:
        await self._stop()
        closed = RuntimeError("ledger closed before the entry was appended")
        while not self._pipe.empty():
            for req in self._pipe.get_nowait()[0]:
                req.fail(closed)
        while not self._queue.empty():
            self._queue.get_nowait().fail(closed)
        self._inflight = 0
        self._idle.set()

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._reset()

    def _reset(self) -> None:
        """Forget the speculative edge; count only what the pipe holds as in flight."""
        self._drop_speculation()
        self._inflight = self._pipe.qsize()
        if not self._inflight:
            self._idle.set()

    async def _collect(self) -> list[_Request]:
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
        return batch

    async def _prepare_loop(self) -> None:
        while True:
            batch = await self._collect()
            try:
                if self._spec is None and self._inflight:
                    # Nothing to speculate on (start, or after a failure or another process's
                    # append): let the pipe drain so the committed edge is current.
                    await self._idle.wait()
                base = self._spec if self._spec is not None else self._edge
                generation = self._generation
                prepared = None
                if base is not None:
                    try:
                        prepared = await prepare_yielding(
                            [r.entries for r in batch], base, self._mac
                        )
                    except Exception:  # prepared again in the transaction, failing there
                        log.exception("preparing a ledger batch failed")
                if generation != self._generation:
                    prepared = None  # the committer dropped the edge it was built on
                self._spec = None if prepared is None else prepared.edge
                self._inflight += 1
                self._idle.clear()
                await self._pipe.put((batch, prepared))
            except asyncio.CancelledError:
                for req in batch:
                    req.fail(RuntimeError("ledger closed during the append"))
                raise

    async def _commit_loop(self) -> None:
        slots = asyncio.Semaphore(COMMITS_IN_FLIGHT)
        running: set[asyncio.Task[None]] = set()
        previous: asyncio.Future[Prepared | None] | None = None
        try:
            while True:
                await slots.acquire()
                try:
                    batch, prepared = await self._pipe.get()
                except BaseException:
                    slots.release()
                    raise
                # Entries go in before the lock only behind a transaction of ours in flight,
                # once that one holds the lock and writes exactly what this was prepared on.
                after = previous if running and previous is not None else None
                advanced: asyncio.Future[Prepared | None] = (
                    asyncio.get_running_loop().create_future()
                )
                previous = advanced
                task = asyncio.create_task(
                    self._committer(batch, prepared, _Order(after, advanced), slots)
                )
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _committer(
        self,
        batch: list[_Request],
        prepared: Prepared | None,
        order: _Order,
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            await self._commit_or_split(batch, prepared, order)
        finally:
            order.advanced_with(None)
            slots.release()
            self._inflight = max(0, self._inflight - 1)
            if not self._inflight:
                self._idle.set()

    async def _commit_or_split(
        self, batch: list[_Request], prepared: Prepared | None, order: _Order | None = None
    ) -> None:
        try:
            attempt = 0
            while True:
                batch, prepared = _claim(batch, prepared, asyncio.get_running_loop().time())
                if not batch:
                    return
                try:
                    done = await self._commit(batch, prepared, order)
                    break
                except (_Stale, asyncpg.DeadlockDetectedError):
                    # Rolled back, nothing of it written (entries written early on another
                    # tree, or a deadlock with another process's early entries): again, lock
                    # first, a few times.
                    if order is not None:
                        order.advanced_with(None)  # the next one does not wait for the retry
                    attempt += 1
                    if attempt > _RETRIES:
                        raise
                    prepared, order = None, None
        except asyncio.CancelledError:
            for req in batch:
                req.fail(RuntimeError("ledger closed during the append"))
            raise
        except _InDoubt as doubt:
            # Perhaps committed: never retried; recorded before the callers get the error.
            self._edge = None
            self._drop_speculation()
            log.error("ledger COMMIT of %d calls failed, outcome unknown: %s", len(batch),
                      doubt.__cause__)  # fmt: skip
            try:
                pairs = zip(batch, doubt.written.results, strict=True)
                await asyncio.to_thread(self._doubted, pairs, doubt.written)
            finally:
                for req in batch:
                    req.fail(doubt.__cause__ or doubt)
            return
        except Exception as exc:  # noqa: BLE001  (handed to its callers: none dropped or hanging)
            # State unknown: forget both edges; the next batch reloads under the lock.
            self._edge = None
            self._drop_speculation()
            if len(batch) == 1:
                batch[0].fail(exc)
                return
            log.warning(
                "ledger batch of %d calls failed (%s); retrying one by one", len(batch), exc
            )
            for req in batch:
                await self._commit_or_split([req], None)
            return
        for req, indexes in zip(batch, done.results, strict=True):
            req.written = done
            if not req.future.done():
                req.future.set_result(indexes)
        gone = [(r, i) for r, i in zip(batch, done.results, strict=True) if r.abandoned]
        if gone:  # committed for callers already answered with an error
            await asyncio.to_thread(self._doubted, gone, done)

    def _doubted(self, pairs: Iterable[tuple[_Request, list[int]]], written: Prepared) -> None:
        """Hand the entries of the requests of ``pairs`` (with their indexes, written as
        ``written``) to ``on_doubt``."""
        entries = [e for req, ixs in pairs if req.doubt for e in in_doubt(written, ixs)]
        if entries and self._on_doubt is not None:
            try:
                self._on_doubt(entries)
            except Exception:  # the callers are answered all the same; the log says what is lost
                log.exception("in-doubt ledger entries %s could not be recorded", entries)

    def _drop_speculation(self) -> None:
        self._spec = None
        self._generation += 1

    async def _load_edge(self, conn: Conn, size: int, root: bytes) -> TreeEdge:
        if self._edge is not None and self._edge.size == size and self._edge.root() == root:
            return self._edge
        keys = [(lv, ix) for lv, ix, _w in right_edge_tiles(size)]
        edge = TreeEdge.from_tiles(size, await fetch_tiles(conn, keys))
        if edge.root() != root:
            raise LedgerCorrupt(
                f"stored tiles do not give the stored root at size {size}: run fsck"
            )
        return edge

    async def _commit(
        self, batch: list[_Request], prepared: Prepared | None, order: _Order | None = None
    ) -> Prepared:
        with LEDGER_COMMIT_SECONDS.time():
            try:
                done = await self._transaction(batch, prepared, order)
            except _Stale:
                self._edge = None
                self._drop_speculation()
                raise
        if done is not prepared:
            # Not what was speculated on: whatever the pipe holds was prepared on another edge
            # (it will be prepared again in its transaction); speculate afresh once it drains.
            self._drop_speculation()
        if self._edge is None or done.edge.size > self._edge.size:
            self._edge = done.edge
        appended = len(done.datas)
        LEDGER_ENTRIES.observe(done.edge.size)
        LEDGER_BATCH.observe(appended)
        LEDGER_SIZE.set(done.edge.size)
        if self._on_commit is not None:
            self._on_commit(done.edge.size)
        return done

    async def _advance(
        self,
        conn: Conn,
        batch: list[_Request],
        prepared: Prepared | None,
        copied: bool = False,
    ) -> Prepared:
        """Take the lock; write the tiles, the state and (small batches) the entries of
        ``prepared`` if it was prepared on the committed tree, else prepare the batch on that
        tree and write it. Returns what was written. With ``copied`` (its entries are already
        written), a batch prepared on another tree raises :class:`_Stale` instead."""
        p = prepared
        for _attempt in range(2):
            if p is None:
                args: tuple[object, ...] = (-1, b"", 0, b"", [], [], [], None, None, None, b"", b"")
            else:
                end = p.edge.size
                small = p.copy is None
                args = (
                    p.base_size,
                    p.base_root,
                    end,
                    p.root,
                    *p.tiles,
                    list(range(p.base_size, end)) if small else None,
                    p.kinds if small else None,
                    p.datas if small else None,
                    p.leaves,
                    p.tag,
                )
            row = await conn.fetchrow(_ADVANCE_SQL, LEDGER_LOCK, *args)
            if row is None or row["size"] is None:
                raise LedgerCorrupt("the ledger_state row is missing: run `evault ledger fsck`")
            if row["applied"] and p is not None:
                return p
            if copied:
                raise _Stale
            edge = await self._load_edge(conn, int(row["size"]), bytes(row["root"]))
            p = prepare([r.entries for r in batch], edge, self._mac)
        raise LedgerCorrupt("the ledger state changed while the sequencer held its lock")

    async def _transaction(
        self, batch: list[_Request], prepared: Prepared | None, order: _Order | None = None
    ) -> Prepared:
        copied = order is not None and await order.early(prepared)
        deadline = _deadline(batch)
        loop = asyncio.get_running_loop()
        wait = None if deadline is None else deadline - loop.time()
        if wait is not None and wait <= 0:  # spent waiting for the transaction before
            raise TimeoutError("the ledger append was not written in time")
        # The statements (not the COMMIT, whose outcome is the answer) end by the deadline.
        bound = None if deadline is None else deadline + _CLIENT_SLACK
        written: Prepared | None = None
        try:
            async with self._pool.acquire(timeout=wait) as conn, conn.transaction():
                async with asyncio.timeout_at(bound):
                    written = await self._write(conn, batch, prepared, order, copied, wait)
            return written
        except BaseException as exc:
            if written is None:
                raise
            # The COMMIT (or the release after it) failed: perhaps committed.
            if not isinstance(exc, Exception):  # closing: recorded here and now
                self._doubted(zip(batch, written.results, strict=True), written)
                raise
            raise _InDoubt(written) from exc

    async def _write(
        self,
        conn: Conn,
        batch: list[_Request],
        prepared: Prepared | None,
        order: _Order | None,
        copied: bool,
        wait: float | None,
    ) -> Prepared:
        """The statements of one append transaction (see ``_transaction``)."""
        if wait is not None:
            limit = f"{max(1, int(wait * 1000))}ms"
            await conn.execute("SELECT set_config('statement_timeout', $1, true)", limit)
        if copied:
            assert prepared is not None and prepared.copy is not None
            try:
                await copy_entries(conn, prepared.copy)
                p = await self._advance(conn, batch, prepared, copied=True)
            except (_Stale, asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError) as e:
                # Prepared on a tree that is not the committed one (another process appended,
                # or the transaction before failed): the early entries are rolled back.
                LEDGER_EARLY_WRITES.labels("stale").inc()
                raise _Stale from e
            LEDGER_EARLY_WRITES.labels("applied").inc()
        else:
            p = await self._advance(conn, batch, prepared)
        if order is not None:
            order.advanced_with(p)
        if p.copy is not None and not copied:
            await copy_entries(conn, p.copy)
        if p.openings:
            await conn.execute(_OPENINGS_SQL, *map(list, zip(*p.openings, strict=True)))
        for req, indexes in zip(batch, p.results, strict=True):
            if req.effect is not None:
                await req.effect(conn, indexes)
        return p
