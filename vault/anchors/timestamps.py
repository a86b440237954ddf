"""RFC 3161 time-stamps of signed checkpoints: obtained from a TSA, stored, looked up.

What is stamped: SHA-256 of the checkpoint note's body (``verify.timestamp.checkpoint_imprint``).
What is kept: the TSA's whole ``TimeStampResp`` in ``ledger_timestamps`` (append-only, one
per checkpoint size), served at ``/ledger/timestamp/<size>`` and written into packages as
``timestamp.tsr``.

Guarantees:

- A token is stored only after it verified (``verify.timestamp.verify_timestamp``) against the
  configured TSA CA, for exactly that checkpoint's body, with the nonce of our request.
- The time-stamper never blocks anything else: it reads checkpoints already signed and runs
  on its own; checkpointing, appends and reads do not wait for it. A failing TSA (down, slow,
  refusing, or answering with a token that does not verify) is retried with exponential
  backoff (``tsa_retry_seconds`` doubling up to ``tsa_retry_max_seconds``); checkpoints signed
  meanwhile are stamped oldest first once it answers again (every one with
  ``tsa_interval = 0``, else the latest). On a ledger that has no time-stamp yet, stamping
  starts with its latest checkpoint (earlier ones stay without).
- ``evault_anchor_timestamp_lag_seconds`` is the age of the oldest signed checkpoint not yet
  covered by a time-stamp (0 when all are): the alarm when tokens fall behind.
- One process stamps at a time (a PostgreSQL advisory lock, tried, never waited for).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import asyncpg
from cryptography import x509
from prometheus_client import Counter, Gauge

from vault.anchors.config import AnchorsConfig
from vault.background import Background
from vault.db import Conn, Db
from vault.ledger import SignedCheckpoint
from vault.retry import backoff
from verify.checkpoint import open_checkpoint
from verify.errors import VerificationError
from verify.note import Verifier
from verify.timestamp import (
    checkpoint_imprint,
    parse_timestamp,
    timestamp_request,
    tsa_name,
    verify_timestamp,
)

__all__ = [
    "StampedCheckpoint",
    "StoredTimestamp",
    "Timestamper",
    "anchored_checkpoint",
    "check_timestamps",
    "list_timestamps",
    "stated_time",
    "timestamp_of",
    "wait_anchored",
]

TIMESTAMP_LOCK = 0x65767473  # "evts"
BATCH = 100
QUERY_TYPE, REPLY_TYPE = "application/timestamp-query", "application/timestamp-reply"

LAG = Gauge(
    "evault_anchor_timestamp_lag_seconds",
    "Age of the oldest signed checkpoint not yet covered by an RFC 3161 time-stamp (0: none).",
    multiprocess_mode="livemostrecent",
)
STAMPED_SIZE = Gauge(
    "evault_anchor_timestamp_size",
    "Size of the newest checkpoint with a time-stamp.",
    multiprocess_mode="max",
)
STAMPS = Counter("evault_anchor_timestamps", "Time-stamp tokens obtained and stored.")
FAILURES = Counter(
    "evault_anchor_timestamp_failures",
    "Failed attempts to obtain a time-stamp, by reason (unavailable: TSA down, slow or "
    "refusing; invalid: its token did not verify; database).",
    ["reason"],
)

log = logging.getLogger("evault.anchors")


@dataclass(frozen=True)
class StampedCheckpoint:
    """A checkpoint and the stored TimeStampResp of its body."""

    checkpoint: SignedCheckpoint
    token: bytes


async def timestamp_of(db: Db, size: int) -> bytes | None:
    """The stored TimeStampResp of the checkpoint of ``size``, if there is one."""
    token = await db.fetchval("SELECT token FROM ledger_timestamps WHERE size = $1", size)
    return None if token is None else bytes(token)


async def anchored_checkpoint(db: Db, min_size: int) -> StampedCheckpoint | None:
    """The newest checkpoint of at least ``min_size`` leaves that has a time-stamp."""
    row = await db.fetchrow(
        "SELECT c.size, c.root, c.note, t.token FROM ledger_timestamps t"
        " JOIN LATERAL (SELECT size, root, note FROM ledger_checkpoints c"
        "  WHERE c.size = t.size ORDER BY id DESC LIMIT 1) c ON true"
        " WHERE t.size >= $1 ORDER BY t.size DESC LIMIT 1",
        min_size,
    )
    if row is None:
        return None
    cp = SignedCheckpoint(row["size"], bytes(row["root"]), row["note"])
    return StampedCheckpoint(cp, bytes(row["token"]))


def stated_time(token: bytes) -> tuple[str, str] | None:
    """(time, TSA name) a stored token states, for people (``report.html``); None if it does
    not parse. Not a verification: evault-verify --tsa-ca is."""
    try:
        ts = parse_timestamp(token)
    except VerificationError:
        return None
    return ts.gen_time.isoformat().replace("+00:00", "Z"), tsa_name(ts)


async def wait_anchored(db: Db, min_size: int, limit: float) -> StampedCheckpoint | None:
    """:func:`anchored_checkpoint`, waiting up to ``limit`` seconds for one to be stored."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        found = await anchored_checkpoint(db, min_size)
        if found is not None or loop.time() >= deadline:
            return found
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class StoredTimestamp:
    """One row of ``ledger_timestamps`` as listed by ``evault timestamps``."""

    size: int
    gen_time: dt.datetime
    tsa: str


async def list_timestamps(db: Db, limit: int) -> list[StoredTimestamp]:
    """The newest ``limit`` stored time-stamps, newest first (as the table says: unverified)."""
    rows = await db.fetch(
        "SELECT size, gen_time, tsa FROM ledger_timestamps ORDER BY size DESC LIMIT $1", limit
    )
    return [StoredTimestamp(r["size"], r["gen_time"], r["tsa"]) for r in rows]


async def check_timestamps(
    pool: asyncpg.Pool[asyncpg.Record], verifier: Verifier, cas: tuple[x509.Certificate, ...]
) -> tuple[int, list[str]]:
    """Verify every stored token as evault-verify would, treating the database as hostile:
    the checkpoint of its size must carry the log's signature, and the token must verify for
    that checkpoint's body against ``cas``. Returns (tokens checked, problems)."""
    problems: list[str] = []
    checked = 0
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = conn.cursor(
            "SELECT t.size, t.token, (SELECT note FROM ledger_checkpoints c"
            " WHERE c.size = t.size ORDER BY id DESC LIMIT 1) AS note"
            " FROM ledger_timestamps t ORDER BY t.size"
        )
        async for row in cursor:
            checked += 1
            size, note = row["size"], row["note"]
            if note is None:
                problems.append(f"time-stamp of size {size}: no checkpoint of that size")
                continue
            try:
                open_checkpoint(note, verifier)
                verify_timestamp(bytes(row["token"]), note, cas)
            except VerificationError as exc:
                problems.append(f"time-stamp of size {size}: {exc}")
    return checked, problems


class TsaFailed(Exception):
    """One attempt failed; ``reason`` labels the failure metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


Post = Callable[[bytes], Awaitable[bytes]]


class Timestamper:
    """Obtains and stores time-stamps of signed checkpoints in the background."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        cfg: AnchorsConfig,
        cas: tuple[x509.Certificate, ...],
        *,
        poll: float = 0.5,
    ) -> None:
        self._pool = pool
        self._cfg = cfg
        self._cas = cas
        self._poll = poll
        self._bg = Background(self._run, "timestamper")
        self.failures = 0  # consecutive failed attempts

    def start(self) -> None:
        self._bg.start()

    def alive(self) -> bool:
        return self._bg.alive()

    async def stop(self) -> None:
        await self._bg.stop()

    async def _due(self, conn: Conn) -> list[SignedCheckpoint]:
        """Checkpoints to stamp now (oldest first); also sets the lag and size gauges."""
        last = await conn.fetchrow(
            "SELECT size, created_at FROM ledger_timestamps ORDER BY size DESC LIMIT 1"
        )
        after = -1 if last is None else last["size"]
        if last is not None:
            STAMPED_SIZE.set(after)
        rows = await conn.fetch(
            "SELECT size, root, note, created_at FROM ledger_checkpoints WHERE size > $1"
            " ORDER BY id LIMIT $2",
            after,
            BATCH,
        )
        latest = (
            "SELECT size, root, note, created_at FROM ledger_checkpoints ORDER BY id DESC LIMIT 1"
        )
        if last is None and rows:  # first use on a ledger: from its latest checkpoint on
            rows = [r for r in [await conn.fetchrow(latest)] if r is not None]
        now = dt.datetime.now(dt.UTC)
        LAG.set((now - rows[0]["created_at"]).total_seconds() if rows else 0.0)
        interval = self._cfg.tsa_interval
        if interval > 0 and rows:  # only the latest checkpoint, once per interval
            if last is not None and (now - last["created_at"]).total_seconds() < interval:
                return []
            rows = [r for r in [await conn.fetchrow(latest)] if r is not None]
        return [SignedCheckpoint(r["size"], bytes(r["root"]), r["note"]) for r in rows]

    async def run_once(self, post: Post) -> int:
        """One round: stamp what is due through ``post`` (request DER -> reply DER); returns
        how many tokens were stored. Raises TsaFailed (nothing after the failure is stored)."""
        try:
            async with self._pool.acquire() as conn:
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", TIMESTAMP_LOCK):
                    LAG.set(0.0)  # another process stamps and reports the lag
                    return 0
                try:
                    stored = 0
                    for cp in await self._due(conn):
                        stored += await self._stamp(conn, cp, post)
                    if stored:
                        await self._due(conn)  # the gauges, after what was stored
                    return stored
                finally:
                    await conn.execute("SELECT pg_advisory_unlock($1)", TIMESTAMP_LOCK)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise TsaFailed("database", f"time-stamps: database: {exc!r}") from exc

    async def _stamp(self, conn: Conn, cp: SignedCheckpoint, post: Post) -> int:
        imprint = checkpoint_imprint(cp.note)
        nonce = secrets.randbits(63)
        reply = await post(timestamp_request(imprint, nonce))
        try:
            ts = verify_timestamp(reply, cp.note, self._cas)
        except VerificationError as exc:
            raise TsaFailed("invalid", f"the TSA's token for size {cp.size}: {exc}") from exc
        if ts.nonce != nonce:
            raise TsaFailed("invalid", f"the TSA's token for size {cp.size} has another nonce")
        status = await conn.execute(
            "INSERT INTO ledger_timestamps (size, imprint, token, gen_time, tsa)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (size) DO NOTHING",
            cp.size,
            imprint,
            reply,
            ts.gen_time,
            tsa_name(ts, self._cas),
        )
        STAMPS.inc()
        STAMPED_SIZE.set(cp.size)
        return 1 if status.endswith(" 1") else 0

    def _poster(self, session: aiohttp.ClientSession) -> Post:
        timeout = aiohttp.ClientTimeout(total=self._cfg.tsa_timeout)

        async def post(query: bytes) -> bytes:
            try:
                async with session.post(
                    self._cfg.tsa_url,
                    data=query,
                    headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE},
                    timeout=timeout,
                ) as resp:
                    body = await resp.content.read(1 << 20)
                    if resp.status != 200:
                        raise TsaFailed("unavailable", f"the TSA answered HTTP {resp.status}")
                    return body
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TsaFailed("unavailable", f"the TSA cannot be reached: {exc!r}") from exc

        return post

    def backoff(self) -> float:
        """Seconds to wait after ``self.failures`` consecutive failures."""
        cfg = self._cfg
        return backoff(self.failures, cfg.tsa_retry_seconds, cfg.tsa_retry_max_seconds)

    async def _run(self) -> None:
        retry_at = 0.0
        async with aiohttp.ClientSession() as session:
            post = self._poster(session)
            while True:
                if time.monotonic() >= retry_at:
                    try:
                        await self.run_once(post)
                        self.failures = 0
                    except TsaFailed as exc:
                        self.failures += 1
                        FAILURES.labels(exc.reason).inc()
                        retry_at = time.monotonic() + self.backoff()
                        log.warning("%s; retrying in %.1f s", exc, self.backoff())
                else:
                    await self._refresh_lag()
                await asyncio.sleep(self._poll)

    async def _refresh_lag(self) -> None:
        """Keep the lag gauge current while waiting to retry."""
        try:
            async with self._pool.acquire() as conn:
                await self._due(conn)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            log.warning("time-stamps: database: %r", exc)
