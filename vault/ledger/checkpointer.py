"""The checkpointer: signs C2SP checkpoints of the tree after re-deriving the root from tiles.

Guarantees:
- A checkpoint of (size N, root R) is signed only if every entry since the newest checkpoint
  this key signed (or since 0) lies in contiguous ``ledger_batches`` rows whose tags verify
  with the host's MAC key, the last of them leaving exactly (N, R) (vault/ledger/batches.py).
  Entries appended outside the sequencer — by the app role or a superuser, however consistent
  the tiles and tree state they rewrite — are therefore never signed. Entries a signed
  checkpoint already covers are authentic by its signature (so a ledger created before batch
  rows existed carries on from its last checkpoint).
- It is also signed only after the root is recomputed from the stored tiles and equals the
  sequencer's recorded root, and after a consistency proof (also from the tiles) from the
  previous checkpoint verifies. Otherwise nothing is signed and LedgerCorrupt is raised.
- A refusal raises the integrity alarm until a checkpoint is signed again: an error log line
  naming the first entry not authenticated, ``evault_integrity_failures{source="checkpointer"}``
  and one ``integrity.failure`` event per new finding, the ``evault_ledger_checkpoints_stopped``
  gauge at 1, and :meth:`Checkpointer.health` (``/readyz``) saying why.
- Every checkpoint signed is first appended (and fsynced) to ``checkpoints.log`` outside the
  database, then kept in ``ledger_checkpoints``. A line in the file without a row is benign (a
  crash between the two); a row without a line is what an insider's forgery looks like.
- Cosigners (the optional SM2 key of ``[anchors]``) each add a signature line to the note
  before it is written anywhere; one that fails is logged and its line left out: a cosigner
  never stops checkpoints.
- One signer at a time across processes (an advisory lock); a size already checkpointed by this
  key is not signed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import asyncpg

from vault.db import Conn
from vault.errors import LedgerCorrupt, LedgerUnauthenticated
from vault.events import emit
from vault.keys.hostmac import HostMac
from vault.ledger.batches import authenticate
from vault.ledger.entry import rfc3339
from vault.ledger.tiles import consistency_proof, read_state, root_at
from vault.metrics import (
    CHECKPOINT_FAILURES,
    CHECKPOINT_SIZE,
    CHECKPOINT_TIME,
    CHECKPOINTS_STOPPED,
    INTEGRITY_FAILURES,
)
from verify.checkpoint import Checkpoint, format_checkpoint, open_checkpoint
from verify.errors import ProofError, VerificationError
from verify.merkle import verify_consistency
from verify.note import Signer, sign_note

CHECKPOINT_LOCK = 0x6576636B  # "evck"
# Newest checkpoint rows looked at for one this key signed (the base batches are checked from).
BASE_CANDIDATES = 16

log = logging.getLogger("evault.ledger")


class Cosigner(Protocol):
    """Adds its own signature line to a signed note (``vault.anchors.sm2``)."""

    @property
    def name(self) -> str:
        """The key name on its line."""
        ...

    def cosign(self, note: str) -> str:
        """The note with one more signature line; RuntimeError if it cannot sign."""
        ...


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
        *,
        mac: HostMac,
        cosigners: Sequence[Cosigner] = (),
    ) -> None:
        self._pool = pool
        self._signer = signer
        self._cosigners = tuple(cosigners)
        self._mac = mac
        self._origin = origin
        self._log_path = log_path
        self._interval = interval
        self._grown = asyncio.Event()
        self._signed = asyncio.Condition()
        self._latest_size = -1
        self._alarm: str | None = None  # why checkpoints stopped, while they are

    def health(self) -> str:
        """``"ok"``, or why checkpoints stopped (for ``/readyz``)."""
        return "ok" if self._alarm is None else self._alarm

    def tree_grew(self, size: int) -> None:
        """Called by the sequencer after each commit."""
        del size
        self._grown.set()

    async def checkpoint(self) -> SignedCheckpoint:
        """Sign a checkpoint of the current tree (or return the latest if the size is unchanged)."""
        # The lock is taken before the repeatable-read snapshot: a snapshot taken while waiting
        # for it would miss what the previous holder signed, and sign an older size after it.
        try:
            async with self._pool.acquire() as conn:
                await conn.execute("SELECT pg_advisory_lock($1)", CHECKPOINT_LOCK)
                try:
                    async with conn.transaction(isolation="repeatable_read"):
                        result = await self._sign(conn)
                finally:
                    await conn.execute("SELECT pg_advisory_unlock($1)", CHECKPOINT_LOCK)
        except LedgerCorrupt as exc:
            await self._raise_alarm(exc)
            raise
        if self._alarm is not None:
            log.warning("checkpoints signed again at size %d (was: %s)", result.size, self._alarm)
            self._alarm = None
            CHECKPOINTS_STOPPED.set(0)
        async with self._signed:
            self._latest_size = max(self._latest_size, result.size)
            self._signed.notify_all()
        return result

    async def _raise_alarm(self, exc: LedgerCorrupt) -> None:
        """Nothing was signed because the tree is not authentic: make it loud (once per finding
        for the counter and the event; every time in the log)."""
        if isinstance(exc, LedgerUnauthenticated):
            reason = f"checkpoints stopped: entry {exc.index} not authenticated"
        else:
            reason = f"checkpoints stopped: {exc.detail}"
        log.error("%s: %s; run `evault ledger fsck`", reason, exc.detail)
        CHECKPOINTS_STOPPED.set(1)
        if reason == self._alarm:
            return
        self._alarm = reason
        INTEGRITY_FAILURES.labels(source="checkpointer").inc()
        payload = {
            "source": "checkpointer",
            "first_bad_index": getattr(exc, "index", None),
            "reason": reason,
        }
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await emit(conn, "integrity.failure", payload)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as err:
            log.error("the integrity.failure event for %r was not recorded: %s", reason, err)

    async def _base(self, conn: Conn) -> SignedCheckpoint | None:
        """The newest checkpoint row signed by this key and agreeing with its note (among the
        newest :data:`BASE_CANDIDATES`): what is already authentic by signature."""
        rows = await conn.fetch(
            "SELECT size, root, note FROM ledger_checkpoints ORDER BY id DESC LIMIT $1",
            BASE_CANDIDATES,
        )
        for row in rows:
            try:
                cp = open_checkpoint(row["note"], self._signer.verifier)
            except VerificationError:
                continue
            if cp.size == row["size"] and cp.root_hash == bytes(row["root"]):
                return SignedCheckpoint(cp.size, cp.root_hash, row["note"])
        return None

    async def _sign(self, conn: Conn) -> SignedCheckpoint:
        """Under the lock, in one snapshot: the latest checkpoint, or a new one of the tree."""
        size, root = await read_state(conn)
        last = await self._base(conn)
        if last is not None and last.size > size:
            raise LedgerCorrupt(
                f"the tree state (size {size}) is behind the signed checkpoint of size "
                f"{last.size}: refusing to sign; run `evault ledger fsck`"
            )
        if last is not None and last.size == size:
            if last.root != root:
                raise LedgerCorrupt(
                    f"the tree state's root at size {size} differs from the signed checkpoint "
                    "of that size: refusing to sign; run `evault ledger fsck`"
                )
            result = last
        else:
            await authenticate(conn, self._mac, 0 if last is None else last.size, size, root)
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
            for cosigner in self._cosigners:
                try:
                    note = await asyncio.to_thread(cosigner.cosign, note)
                except RuntimeError as exc:
                    log.error("checkpoint %d not cosigned by %s: %s", size, cosigner.name, exc)
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
        """Sign after growth, at most once per interval, until cancelled; at the start, sign
        the tree if entries were appended since the last checkpoint (by a process that stopped
        before signing them, or by anyone else: that is where the alarm is raised at a start)."""
        try:
            unsigned = await self._pool.fetchval(
                "SELECT (SELECT size FROM ledger_state)"
                " > coalesce((SELECT max(size) FROM ledger_checkpoints), 0)"
            )
        except (asyncpg.PostgresError, OSError) as exc:
            log.error("cannot read the ledger state: %s", exc)
            unsigned = True  # try (and report) in the loop
        if unsigned:
            self._grown.set()
        while True:
            await self._grown.wait()
            self._grown.clear()
            try:
                await self.checkpoint()
            except (LedgerCorrupt, asyncpg.PostgresError, OSError) as exc:
                # Nothing was signed; keep the alarm visible and try again later (a LedgerCorrupt
                # was logged, naming the entry, when the alarm was raised).
                if not isinstance(exc, LedgerCorrupt):
                    log.error("checkpoint not signed: %s", exc)
                CHECKPOINT_FAILURES.inc()
                self._grown.set()
                await asyncio.sleep(max(self._interval, 1.0))
                continue
            if self._interval > 0:
                await asyncio.sleep(self._interval)
