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

Several processes, one log (``run`` with ``connect``):
- Whatever process appended (another ``evault serve``, a CLI command), the entries are signed:
  every append commits a ``NOTIFY evault_ledger`` (migration 014), every process listens on a
  connection of its own, and the leader also polls every :data:`POLL_SECONDS` (a notification
  lost while a connection was down, or suppressed in the database, costs latency only).
- One process leads: it holds the session-level advisory lock :data:`LEADER_LOCK` on a
  connection of its own and signs on that same connection. The others wait for the lock inside
  PostgreSQL, so when the leader dies (its connection closes, which releases the lock) the next
  one takes over at once and signs what was left unsigned; a leader cut off by the network
  keeps the lock until PostgreSQL notices (TCP keepalives set on that session).
- Fencing: a signing transaction first checks, in its own snapshot, that its session still
  holds the leader lock, and stores the checkpoint only if no stored checkpoint is at least as
  large; a leader that lost its lock (or its connection) stores nothing, so the latest
  checkpoint never goes back to an older tree. A note it signed meanwhile is only a line in its
  ``checkpoints.log`` without a row (benign, see above).
- Every process wakes its callers waiting for a checkpoint on ``NOTIFY evault_checkpoint``
  (sent when a checkpoint row is stored), whoever signed it, and appends each checkpoint another
  process stored to its own ``checkpoints.log`` once its signature verifies with the log key
  (``"copied": true``; at start it catches up on those stored meanwhile): every host keeps a
  witness of the whole log outside the database, and fsck on any node finds every row there.
- A follower (``follow=True``: the API worker processes of ``evault serve --workers``, on the
  data directory of a main process that runs the checkpointer) never leads, never signs and
  never writes ``checkpoints.log``: it only listens, so its callers waiting for a covering
  checkpoint wake when the leader stores one; :meth:`Checkpointer.checkpoint` waits for a
  checkpoint of the current tree instead of signing it.
- Every node signs with the same log key and authenticates with the same MAC key (copied to
  each host at deployment; neither is ever in the database): a checkpoint signed by one node
  extends the tree another signed, and the batches one appended verify on every other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
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
    CHECKPOINT_LEADER,
    CHECKPOINT_SIZE,
    CHECKPOINT_TIME,
    CHECKPOINTS_STOPPED,
    INTEGRITY_FAILURES,
)
from vault.retry import backoff
from verify.checkpoint import Checkpoint, format_checkpoint, open_checkpoint
from verify.errors import ProofError, VerificationError
from verify.merkle import verify_consistency
from verify.note import Signer, Verifier, sign_note

CHECKPOINT_LOCK = 0x6576636B  # "evck"
LEADER_LOCK = 0x65766C64  # "evld": held, for as long as it leads, by the process that signs
LEDGER_CHANNEL = "evault_ledger"  # NOTIFY at every committed append (payload: the new size)
CHECKPOINT_CHANNEL = "evault_checkpoint"  # NOTIFY at every stored checkpoint (its size)
# The leader looks for unsigned entries this often even when no notification came.
POLL_SECONDS = 1.0
# Bytes of checkpoints.log read at a time from its end, looking for its last checkpoint.
LOG_TAIL = 65536
# Checkpoints copied from the database into checkpoints.log per query.
COPY_BATCH = 1000
# A connection of the checkpointer is probed this often while it is quiet.
PROBE_SECONDS = 5.0
# Server-side settings of the checkpointer's own sessions: never time out waiting for the leader
# lock; notice a leader host that vanished from the network in about 25 s.
SESSION_SETTINGS = {
    "statement_timeout": "0",
    "lock_timeout": "0",
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}

Connect = Callable[[], Awaitable["asyncpg.Connection[asyncpg.Record]"]]
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


def append_checkpoint_log(path: Path, note: str, *, copied: bool = False) -> None:
    """Append one JSON line with ``note`` to ``path`` and fsync it (created 0600); ``copied``
    marks a checkpoint another process signed (read from the database and verified)."""
    record: dict[str, object] = {"time": rfc3339(datetime.now(UTC)), "note": note}
    if copied:
        record["copied"] = True
    line = json.dumps(record, ensure_ascii=False)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def last_logged_size(path: Path, verifier: Verifier) -> int:
    """The size of the last checkpoint in ``path`` that verifies (-1 if none): read from the
    end, so a long log is not read whole."""
    try:
        with path.open("rb") as f:
            end = f.seek(0, os.SEEK_END)
            tail = b""
            pos = end
            while pos > 0:
                step = min(LOG_TAIL, pos)
                pos -= step
                f.seek(pos)
                tail = f.read(step) + tail
                for line in reversed(tail.splitlines()[1 if pos else 0 :]):
                    try:
                        return open_checkpoint(json.loads(line)["note"], verifier).size
                    except (ValueError, KeyError, TypeError, VerificationError):
                        continue
                tail = tail.splitlines()[0] if pos and tail else b""
    except FileNotFoundError:
        pass
    return -1


async def latest_checkpoint(conn: Conn | asyncpg.Pool[asyncpg.Record]) -> SignedCheckpoint | None:
    row = await conn.fetchrow(
        "SELECT size, root, note FROM ledger_checkpoints ORDER BY id DESC LIMIT 1"
    )
    return None if row is None else SignedCheckpoint(row["size"], bytes(row["root"]), row["note"])


def _setter(*events: asyncio.Event) -> Callable[[object], None]:
    """A callback setting ``events`` (whatever it is called with)."""

    def fire(_source: object) -> None:
        for event in events:
            event.set()

    return fire


class _LeadershipLost(Exception):
    """The signing session does not hold the leader lock any more: stop leading."""


class Checkpointer:
    """Signs checkpoints; ``run`` does so at an interval while the tree grows (with
    ``connect``, only while this process leads; see the module docstring)."""

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
        connect: Connect | None = None,
        poll: float = POLL_SECONDS,
        follow: bool = False,
    ) -> None:
        self._pool = pool
        self._follow = follow
        self._connect = connect
        self._poll = poll
        self._leading = False
        self._waiters: set[asyncio.Future[None]] = set()
        # Copying others' checkpoints into checkpoints.log: the largest size looked at (None:
        # not read from the file yet), and the sizes this process signed (not copied again).
        self._copied: int | None = None
        self._own: set[int] = set()
        self._signer = signer
        self._cosigners = tuple(cosigners)
        self._mac = mac
        self._origin = origin
        self._log_path = log_path
        self._interval = interval
        self._grown = asyncio.Event()
        self._alarm: str | None = None  # why checkpoints stopped, while they are

    def health(self) -> str:
        """``"ok"``, or why checkpoints stopped (for ``/readyz``)."""
        return "ok" if self._alarm is None else self._alarm

    @property
    def leading(self) -> bool:
        """Whether this process holds the leader lock (signs for every process)."""
        return self._leading

    def tree_grew(self, size: int) -> None:
        """Called by the sequencer after each commit."""
        del size
        self._grown.set()

    def _wake_waiters(self) -> None:
        """A checkpoint was stored (here or, as announced, elsewhere): waiters look again."""
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)

    async def checkpoint(self, conn: Conn | None = None) -> SignedCheckpoint:
        """Sign a checkpoint of the current tree (or return the latest if the size is unchanged).
        On ``conn``, the leader's session, only while that session holds the leader lock.
        A follower signs nothing: it waits for the leader's checkpoint of the current tree."""
        if self._follow:
            return await self.wait_for(await self._pool.fetchval("SELECT size FROM ledger_state"))
        try:
            if conn is None:
                async with self._pool.acquire() as pooled:
                    result = await self._locked_sign(pooled, leader=False)
            else:
                result = await self._locked_sign(conn, leader=True)
        except LedgerCorrupt as exc:
            await self._raise_alarm(exc)
            raise
        if self._alarm is not None:
            log.warning("checkpoints signed again at size %d (was: %s)", result.size, self._alarm)
            self._alarm = None
            CHECKPOINTS_STOPPED.set(0)
        self._wake_waiters()
        return result

    async def _locked_sign(self, conn: Conn, *, leader: bool) -> SignedCheckpoint:
        # The lock is taken before the repeatable-read snapshot: a snapshot taken while waiting
        # for it would miss what the previous holder signed, and sign an older size after it.
        await conn.execute("SELECT pg_advisory_lock($1)", CHECKPOINT_LOCK)
        try:
            async with conn.transaction(isolation="repeatable_read"):
                if leader:
                    await self._fence(conn)
                return await self._sign(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", CHECKPOINT_LOCK)

    @staticmethod
    async def _fence(conn: Conn) -> None:
        """Raise :class:`_LeadershipLost` unless this session holds the leader lock."""
        held = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
            " AND pid = pg_backend_pid() AND granted AND classid = 0 AND objid = $1::bigint::oid"
            " AND objsubid = 1)",
            LEADER_LOCK,
        )
        if not held:
            raise _LeadershipLost("the leader lock is not held by the signing session")

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
            self._own.add(size)
            # Stored only above every stored size: the latest checkpoint never goes back.
            stored = await conn.execute(
                "INSERT INTO ledger_checkpoints (size, root, note) SELECT $1, $2, $3"
                " WHERE $1 > coalesce((SELECT max(size) FROM ledger_checkpoints), -1)",
                size,
                root,
                note,
            )
            if stored != "INSERT 0 1":
                raise LedgerCorrupt(
                    f"a stored checkpoint row is at least as large as the tree (size {size}) "
                    "but is not a checkpoint this key signed: refusing to sign; run "
                    "`evault ledger fsck`"
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
            # Registered before the read: a checkpoint stored after it wakes this waiter.
            wake: asyncio.Future[None] = loop.create_future()
            self._waiters.add(wake)
            try:
                cp = await latest_checkpoint(self._pool)
                if cp is not None and cp.size >= size:
                    return cp
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(f"no checkpoint covering size {size} within {limit} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake, min(remaining, max(self._interval, 0.05) * 4))
            finally:
                self._waiters.discard(wake)

    async def run(self) -> None:
        """Sign after growth, at most once per interval, until cancelled; at the start, sign
        the tree if entries were appended since the last checkpoint (by a process that stopped
        before signing them, or by anyone else: that is where the alarm is raised at a start).
        With ``connect``: listen for every process's appends and checkpoints, and sign only
        while this process leads (module docstring)."""
        if self._follow:
            await self._listen()  # wakes waiters; signs and copies nothing
            return
        if self._connect is None:
            self._grown.set()  # look at the start: entries may wait from before
            await self._sign_loop(None)
            return
        # Where checkpoints.log stands before this process signs anything: what the database
        # holds beyond it, signed elsewhere, is copied.
        self._copied = await asyncio.to_thread(
            last_logged_size, self._log_path, self._signer.verifier
        )
        listener = asyncio.create_task(self._listen(), name="checkpointer-listener")
        try:
            attempt = 0
            while True:
                led = False
                try:
                    led = await self._lead()
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                    log.warning("checkpoint leadership: %s", exc)
                except _LeadershipLost as exc:
                    log.error("checkpoint leadership lost: %s", exc)
                attempt = 1 if led else attempt + 1
                await asyncio.sleep(backoff(attempt, 0.1, 5.0))
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _session(self) -> asyncpg.Connection[asyncpg.Record]:
        assert self._connect is not None
        conn = await self._connect()
        try:
            for name, value in SESSION_SETTINGS.items():
                await conn.execute("SELECT set_config($1, $2, false)", name, value)
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _lead(self) -> bool:
        """Wait for the leader lock on a session of its own, then sign on that session until
        it fails. Returns (or raises) once not leading; True if it led meanwhile."""
        conn = await self._session()
        conn.add_termination_listener(lambda _c: self._grown.set())  # fail fast, not at a poll
        led = False
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", LEADER_LOCK)
            led = self._leading = True
            CHECKPOINT_LEADER.set(1)
            log.info("this process signs the checkpoints now (leader)")
            self._grown.set()  # sign whatever the previous leader left
            await self._sign_loop(conn)
        finally:
            if led:
                log.warning("this process no longer signs the checkpoints")
            self._leading = False
            CHECKPOINT_LEADER.set(0)
            if not conn.is_closed():
                try:
                    await asyncio.wait_for(conn.close(), 2)
                except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    conn.terminate()
        return led

    async def _sign_loop(self, conn: Conn | None) -> None:
        """Sign after growth, or at least every ``poll`` seconds (a checkpoint of an unchanged
        tree stores nothing), at most once per interval. On the leader's ``conn``, a database
        error ends the loop (the lock may be gone with the session); on the pool, it is logged
        and retried."""
        db = self._pool if conn is None else conn
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._grown.wait(), self._poll)
            self._grown.clear()
            try:
                if not await db.fetchval("SELECT size > 0 FROM ledger_state"):
                    continue  # nothing to sign yet
                await (self.checkpoint() if conn is None else self.checkpoint(conn))
            except LedgerCorrupt:
                # Nothing was signed; the alarm was raised (and logged, naming the entry).
                CHECKPOINT_FAILURES.inc()
                self._grown.set()
                await asyncio.sleep(max(self._interval, 1.0))
                continue
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                self._grown.set()
                if conn is not None:
                    raise  # leadership ends; not a refusal (logged by ``run``)
                CHECKPOINT_FAILURES.inc()
                log.error("checkpoint not signed: %s", exc)
                await asyncio.sleep(max(self._interval, 1.0))
                continue
            if self._interval > 0:
                await asyncio.sleep(self._interval)

    async def _listen(self) -> None:
        """Follow every process's appends and checkpoints on a session of its own;
        reconnect when it is lost (the leader's poll covers the meantime)."""
        attempt = 0
        while True:
            lost = asyncio.Event()
            copy = asyncio.Event()
            conn = None
            try:
                conn = await self._session()
                conn.add_termination_listener(_setter(lost, copy))
                await conn.add_listener(LEDGER_CHANNEL, lambda *_a: self._grown.set())

                def stored(*_a: object, copy: asyncio.Event = copy) -> None:
                    self._wake_waiters()
                    copy.set()

                await conn.add_listener(CHECKPOINT_CHANNEL, stored)
                self._grown.set()  # anything appended while nobody listened here
                self._wake_waiters()
                await self._copy_stored(conn)  # and the checkpoints stored meanwhile
                attempt = 0
                while not lost.is_set():
                    try:
                        async with asyncio.timeout(PROBE_SECONDS):
                            await copy.wait()
                        copy.clear()
                        await self._copy_stored(conn)
                    except TimeoutError:  # a silently dead peer must not go unnoticed
                        await asyncio.wait_for(conn.execute("SELECT 1"), PROBE_SECONDS)
                raise ConnectionError("the connection was closed")
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("ledger notifications lost (%s); reconnecting", exc)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            attempt += 1
            await asyncio.sleep(backoff(attempt, 0.1, 5.0))

    async def _copy_stored(self, conn: Conn) -> None:
        """Append to checkpoints.log, in size order, the stored checkpoints beyond those
        already looked at that this process did not sign, once each signature verifies with
        the log key (a row that does not verify is fsck's to report, never copied). A follower
        copies nothing (its main process does)."""
        if self._follow:
            return
        assert self._copied is not None
        while True:
            rows = await conn.fetch(
                "SELECT size, note FROM ledger_checkpoints WHERE size > $1 ORDER BY size LIMIT $2",
                self._copied,
                COPY_BATCH,
            )
            notes = []
            for row in rows:
                try:
                    cp = open_checkpoint(row["note"], self._signer.verifier)
                except VerificationError:
                    continue
                if cp.size == row["size"] and cp.size not in self._own:
                    notes.append(row["note"])
            for note in notes:
                await asyncio.to_thread(append_checkpoint_log, self._log_path, note, copied=True)
            if rows:
                self._copied = max(self._copied, max(r["size"] for r in rows))
                self._own = {n for n in self._own if n > self._copied}
            if len(rows) < COPY_BATCH:
                return
