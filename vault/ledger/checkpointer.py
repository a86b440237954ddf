"""The checkpointer: signs C2SP checkpoints of the tree after re-deriving the root from tiles.

Guarantees:
- A checkpoint is signed only after the root is recomputed from the stored tiles and equals the
  sequencer's recorded root, and after a consistency proof (also from the tiles) from the
  previous checkpoint verifies. Otherwise nothing is signed and LedgerCorrupt is raised.
- Every checkpoint signed is first appended (and fsynced) to ``checkpoints.log`` outside the
  database, then kept in ``ledger_checkpoints``. A line in the file without a row is benign (a
  crash between the two); a row without a line is what an insider's forgery looks like.
- One signer at a time across processes (an advisory lock); a size already checkpointed is not
  signed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from vault.db import Conn
from vault.errors import LedgerCorrupt
from vault.ledger.entry import rfc3339
from vault.ledger.tiles import consistency_proof, read_state, root_at
from vault.metrics import CHECKPOINT_FAILURES, CHECKPOINT_SIZE, CHECKPOINT_TIME
from verify.checkpoint import Checkpoint, format_checkpoint
from verify.errors import ProofError
from verify.merkle import verify_consistency
from verify.note import Signer, sign_note

CHECKPOINT_LOCK = 0x6576636B  # "evck"

log = logging.getLogger("evault.ledger")


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint as stored: its size, root and the full signed note."""

    size: int
    root: bytes
    note: str


def append_checkpoint_log(path: Path, note: str) -> None:
    """Append one JSON line with ``note`` to ``path`` and fsync it (created 0600)."""
    line = json.dumps({"time": rfc3339(datetime.now(UTC)), "note": note}, ensure_ascii=False)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


async def latest_checkpoint(conn: Conn | asyncpg.Pool[asyncpg.Record]) -> SignedCheckpoint | None:
    row = await conn.fetchrow(
        "SELECT size, root, note FROM ledger_checkpoints ORDER BY id DESC LIMIT 1"
    )
    return None if row is None else SignedCheckpoint(row["size"], bytes(row["root"]), row["note"])


class Checkpointer:
    """Signs checkpoints; ``run`` does so at an interval while the tree grows."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        signer: Signer,
        origin: str,
        log_path: Path,
        interval: float,
    ) -> None:
        self._pool = pool
        self._signer = signer
        self._origin = origin
        self._log_path = log_path
        self._interval = interval
        self._grown = asyncio.Event()
        self._signed = asyncio.Condition()
        self._latest_size = -1

    def tree_grew(self, size: int) -> None:
        """Called by the sequencer after each commit."""
        del size
        self._grown.set()

    async def checkpoint(self) -> SignedCheckpoint:
        """Sign a checkpoint of the current tree (or return the latest if the size is unchanged)."""
        # The lock is taken before the repeatable-read snapshot: a snapshot taken while waiting
        # for it would miss what the previous holder signed, and sign an older size after it.
        async with self._pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", CHECKPOINT_LOCK)
            try:
                async with conn.transaction(isolation="repeatable_read"):
                    result = await self._sign(conn)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", CHECKPOINT_LOCK)
        async with self._signed:
            self._latest_size = max(self._latest_size, result.size)
            self._signed.notify_all()
        return result

    async def _sign(self, conn: Conn) -> SignedCheckpoint:
        """Under the lock, in one snapshot: the latest checkpoint, or a new one of the tree."""
        size, root = await read_state(conn)
        last = await latest_checkpoint(conn)
        if last is not None and last.size == size:
            result = last
        else:
            derived = await root_at(conn, size)
            if derived != root:
                raise LedgerCorrupt(
                    f"root re-derived from stored tiles at size {size} differs from the "
                    "sequencer's root: refusing to sign; run `evault ledger fsck`"
                )
            if last is not None:
                proof = await consistency_proof(conn, last.size, size)
                try:
                    verify_consistency(last.size, size, proof, last.root, root)
                except ProofError as exc:
                    raise LedgerCorrupt(
                        f"tree at size {size} is not consistent with checkpoint {last.size}: "
                        f"{exc}; refusing to sign"
                    ) from exc
            body = format_checkpoint(Checkpoint(self._origin, size, root))
            note = sign_note(body, self._signer)
            await asyncio.to_thread(append_checkpoint_log, self._log_path, note)
            await conn.execute(
                "INSERT INTO ledger_checkpoints (size, root, note) VALUES ($1, $2, $3)",
                size,
                root,
                note,
            )
            result = SignedCheckpoint(size, root, note)
            CHECKPOINT_SIZE.set(size)
            CHECKPOINT_TIME.set(time.time())
        return result

    async def wait_for(self, size: int, limit: float = 30.0) -> SignedCheckpoint:
        """Wait until a checkpoint covers ``size`` leaves (signed here or by another process)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            cp = await latest_checkpoint(self._pool)
            if cp is not None and cp.size >= size:
                return cp
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no checkpoint covering size {size} within {limit} s")
            async with self._signed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._signed.wait_for(lambda: self._latest_size >= size),
                        min(remaining, max(self._interval, 0.05) * 4),
                    )

    async def run(self) -> None:
        """Sign after growth, at most once per interval, until cancelled."""
        while True:
            await self._grown.wait()
            self._grown.clear()
            try:
                await self.checkpoint()
            except (LedgerCorrupt, asyncpg.PostgresError, OSError) as exc:
                # Nothing was signed; keep the alarm visible and try again later.
                log.error("checkpoint not signed: %s", exc)
                CHECKPOINT_FAILURES.inc()
                self._grown.set()
                await asyncio.sleep(max(self._interval, 1.0))
                continue
            if self._interval > 0:
                await asyncio.sleep(self._interval)
