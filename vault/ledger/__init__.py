"""The Merkle ledger: the public contract and its PostgreSQL implementation.

Other layers depend on :class:`LedgerWriter` / :class:`LedgerReader`, not on the tables.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import asyncpg

from vault.config import LedgerConfig
from vault.errors import BadRequest, NotFound
from vault.keys.hostmac import HostMac
from vault.ledger.checkpointer import (
    Checkpointer,
    Connect,
    Cosigner,
    SignedCheckpoint,
    latest_checkpoint,
)
from vault.ledger.entry import Opening, PreparedEntry, make_entry
from vault.ledger.indoubt import DoubtStore, InDoubt, Resolver
from vault.ledger.sequencer import LEDGER_LOCK, Effect, Sequencer
from vault.ledger.tiles import consistency_proof, inclusion_proof
from verify.note import Signer, Verifier
from verify.tiles import encode_entry_bundle
from verify.tlogproof import TlogProof, format_tlog_proof

__all__ = [
    "Cosigner",
    "Ledger",
    "LedgerReader",
    "LedgerWriter",
    "Opening",
    "PreparedEntry",
    "SignedCheckpoint",
    "make_entry",
]


class LedgerWriter(Protocol):
    """Appending to the ledger."""

    mac: HostMac
    """The host's MAC key: row tags bind state to the entries appended here."""

    async def append(
        self,
        entries: Sequence[PreparedEntry],
        *,
        effect: Effect | None = None,
        wait_checkpoint: bool = False,
        within: float | None = None,
    ) -> list[int]:
        """Append entries; return their consecutive indexes.

        Returns only once the entries are durable in PostgreSQL, with ``effect`` (if any) run in
        the same transaction; with ``wait_checkpoint``, only once a signed checkpoint covers them.
        Raises and commits nothing if the effect or the database fails. With ``within`` (seconds):
        TimeoutError, and nothing ever committed, if the entries are not written by then (a
        transaction already writing them is waited for until it commits or aborts, which it does
        by that time but for its COMMIT).
        """
        ...


class LedgerReader(Protocol):
    """Reading the ledger and proving things about it."""

    async def entry(self, index: int) -> bytes:
        """The exact logged bytes of entry ``index``; NotFound if there is none."""
        ...

    async def latest(self) -> SignedCheckpoint | None:
        """The newest signed checkpoint, if any."""
        ...

    async def tlog_proof(self, index: int) -> str:
        """A C2SP tlog-proof@v1 of entry ``index`` against a checkpoint that includes it."""
        ...

    async def consistency(self, old: int, new: int) -> list[bytes]:
        """RFC 9162 consistency proof between two tree sizes: BadRequest unless
        1 ≤ old ≤ new; NotFound if new exceeds the current size."""
        ...


class Ledger:
    """The ledger on a pool: a sequencer for appends and a checkpointer for signing."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        signer: Signer,
        cfg: LedgerConfig,
        log_path: Path,
        *,
        mac: HostMac,
        cosigners: Sequence[Cosigner] = (),
        connect: Connect | None = None,
        follow: bool = False,
        doubt_dir: Path | None = None,
    ) -> None:
        self.pool = pool
        self.signer = signer
        self.mac = mac
        self.log_path = log_path
        self.cosigners = tuple(cosigners)
        # With ``connect`` (sessions of its own on the same database), the checkpointer signs
        # what every process appends, one process at a time (vault/ledger/checkpointer.py).
        self.checkpointer = Checkpointer(
            pool,
            signer,
            cfg.origin,
            log_path,
            cfg.checkpoint_interval,
            mac=mac,
            cosigners=self.cosigners,
            connect=connect,
            follow=follow,  # never signs: another process on this database does
        )
        self.sequencer = Sequencer(
            pool,
            mac=mac,
            batch_max=cfg.batch_max,
            batch_wait=cfg.batch_wait,
            on_commit=self._committed,
            on_doubt=self._doubted,
        )
        # Appends whose COMMIT failed, recorded on this host (default: beside the checkpoints
        # log) and resolved in the background: vault/ledger/indoubt.py.
        self.doubts = DoubtStore(doubt_dir or log_path.parent / "ledger-in-doubt")
        self.resolver = Resolver(pool, self.doubts, self._append_unserved, LEDGER_LOCK)
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._resolver_task: asyncio.Task[None] | None = None
        self._resolver_loop: asyncio.AbstractEventLoop | None = None
        self._commit_watchers: list[Callable[[int], None]] = []

    def on_commit(self, watcher: Callable[[int], None]) -> None:
        """Have ``watcher(size)`` called after each append this process commits, before the
        append returns (other processes' appends are announced by ``NOTIFY evault_ledger``)."""
        self._commit_watchers.append(watcher)

    def _committed(self, size: int) -> None:
        self.checkpointer.tree_grew(size)
        for watcher in self._commit_watchers:
            watcher(size)

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier

    def start(self) -> None:
        """Start signing checkpoints in the background as the tree grows, and resolving the
        appends whose COMMIT failed (those recorded before too)."""
        if self._checkpoint_task is None:
            self._checkpoint_task = asyncio.create_task(
                self.checkpointer.run(), name="checkpointer"
            )
        if self._resolver_task is None:
            self._resolver_loop = asyncio.get_running_loop()
            self._resolver_task = asyncio.create_task(self.resolver.run(), name="ledger-in-doubt")

    def _doubted(self, entries: list[InDoubt]) -> None:
        # In a worker thread (or the loop, when closing): durable before the callers' error.
        self.doubts.record(entries)
        if self._resolver_loop is not None:
            self._resolver_loop.call_soon_threadsafe(self.resolver.wake)

    async def _append_unserved(self, entries: list[PreparedEntry], effect: Effect) -> object:
        return await self.sequencer.append(entries, effect, doubt=False)

    async def close(self) -> None:
        await self.sequencer.close()
        for task in (self._checkpoint_task, self._resolver_task):
            if task is not None:
                # Cancelled again until done: on Python 3.11 ``asyncio.wait_for`` can swallow a
                # cancellation that arrives as the awaited event fires, and the loop goes on.
                while not task.done():
                    task.cancel()
                    await asyncio.wait({task}, timeout=1.0)
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._checkpoint_task = self._resolver_task = None
        self._resolver_loop = None

    async def append(
        self,
        entries: Sequence[PreparedEntry],
        *,
        effect: Effect | None = None,
        wait_checkpoint: bool = False,
        within: float | None = None,
    ) -> list[int]:
        indexes = await self.sequencer.append(entries, effect, within=within)
        if wait_checkpoint and indexes:
            if self._checkpoint_task is None:
                await self.checkpointer.checkpoint()
            await self.checkpointer.wait_for(indexes[-1] + 1)
        return indexes

    async def checkpoint(self) -> SignedCheckpoint:
        return await self.checkpointer.checkpoint()

    async def latest(self) -> SignedCheckpoint | None:
        return await latest_checkpoint(self.pool)

    async def size(self) -> int:
        size: int = await self.pool.fetchval("SELECT size FROM ledger_state")
        return size

    async def entry(self, index: int) -> bytes:
        data = await self.pool.fetchval("SELECT data FROM ledger_entries WHERE idx = $1", index)
        if data is None:
            raise NotFound(f"no ledger entry {index}")
        return bytes(data)

    async def openings(self, index: int) -> list[Opening]:
        rows = await self.pool.fetch(
            "SELECT field, salt, value FROM ledger_openings WHERE idx = $1 ORDER BY field", index
        )
        return [Opening(r["field"], bytes(r["salt"]), bytes(r["value"])) for r in rows]

    async def checkpoint_covering(self, index: int) -> SignedCheckpoint:
        """The latest checkpoint if it includes ``index``, else a newly signed one."""
        cp = await self.latest()
        if cp is None or cp.size <= index:
            cp = await self.checkpointer.checkpoint()
        if cp.size <= index:
            raise NotFound(f"no ledger entry {index}")
        return cp

    async def tlog_proof(self, index: int) -> str:
        await self.entry(index)
        cp = await self.checkpoint_covering(index)
        async with self.pool.acquire() as conn:
            proof = await inclusion_proof(conn, index, cp.size)
        return format_tlog_proof(TlogProof(index=index, proof=tuple(proof), checkpoint=cp.note))

    async def consistency(self, old: int, new: int) -> list[bytes]:
        if old < 1:
            raise BadRequest(
                f"no consistency proof from tree size {old}: RFC 9162 defines none for an "
                "empty tree (every tree extends it); the older size must be at least 1"
            )
        if old > new:
            raise BadRequest(
                f"no consistency proof from {old} to {new}: the older size must not exceed "
                "the newer one"
            )
        current = await self.size()
        if new > current:
            raise NotFound(f"no consistency proof from {old} to {new} (tree size {current})")
        async with self.pool.acquire() as conn:
            return await consistency_proof(conn, old, new)

    async def tile(self, level: int, index: int, width: int | None) -> bytes:
        """Tile bytes for the read path: a full tile once full, a partial one up to its width."""
        data = await self.pool.fetchval(
            "SELECT hashes FROM ledger_tiles WHERE level = $1 AND idx = $2", level, index
        )
        want = 256 if width is None else width
        if data is None or len(data) < want * 32:
            raise NotFound("no such tile")
        return bytes(data[: want * 32])

    async def entry_bundle(self, index: int, width: int | None) -> bytes:
        want = 256 if width is None else width
        rows = await self.pool.fetch(
            "SELECT data FROM ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            index * 256,
            index * 256 + want,
        )
        if len(rows) < want:
            raise NotFound("no such entry bundle")
        return encode_entry_bundle([bytes(r["data"]) for r in rows])
