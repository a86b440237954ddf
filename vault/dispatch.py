"""Event delivery: the outbox (``vault.events``) fanned out to subscribers as signed POSTs.

Each configured subscriber gets one ``event_deliveries`` row per outbox event of the types it
takes; a delivery is POSTed as JSON ``{"delivery_id", "event_id", "type", "created_at",
"data"}`` with headers ``X-Evault-Event`` (type), ``X-Evault-Delivery`` (delivery id, the same
on every retry: receivers deduplicate by it), ``X-Evault-Timestamp`` (Unix seconds of this
attempt) and ``X-Evault-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``.

Guarantees:

- Nothing is lost: an event committed to the outbox gets a delivery for every subscriber that
  takes its type — each poll looks ``LOOKBACK`` events back from the newest one the previous
  poll saw, and every ``reconcile_seconds`` all events since the subscriber's first delivery are
  re-checked, which catches events committed late by long transactions. A delivery stays
  ``pending`` (retried with exponential backoff, capped) until a 2xx answer marks it
  ``delivered``; only after ``max_attempts`` attempts is it marked ``failed``. 3xx, 4xx, 5xx,
  refused connections and timeouts all count as failed attempts. A subscriber configured later
  also receives the events already in the outbox.
- Order: per subscriber, deliveries are attempted one at a time in event-id order; a later one
  waits while an earlier one is pending (even in backoff), so a receiver sees events in order
  (only an event committed after later ones were delivered can arrive after them).
- Any number of processes may dispatch: a process claims the head delivery of a subscriber
  under ``FOR UPDATE SKIP LOCKED`` by leasing it (``attempts + 1``, ``next_attempt_at`` moved past
  the POST timeout) and commits before POSTing; its result is recorded only if the lease is still
  its own (fenced by the attempt number). A process that dies mid-POST leaves a lease that
  expires, and the delivery is retried: delivery is at least once.
- Metrics: ``evault_event_deliveries_pending`` (gauge, per subscriber, database-wide),
  ``evault_event_deliveries_delivered`` and ``evault_event_deliveries_failed`` (counters, this
  process), ``evault_event_delivery_attempt_failures`` (counter). Labels are configured ids only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import asyncpg
from prometheus_client import Counter, Gauge

from vault.background import Background
from vault.config_events import EventsConfig, SubscriberConfig
from vault.db import Db
from vault.ledger.entry import rfc3339
from vault.retry import backoff

__all__ = ["Claimed", "Dispatcher", "delivery_history", "sign"]

log = logging.getLogger("evault.events")

LOOKBACK = 1000
LEASE_MARGIN = 30.0
MAX_ERROR = 500

PENDING = Gauge(
    "evault_event_deliveries_pending",
    "Deliveries not yet delivered or failed.",
    ["subscriber"],
    multiprocess_mode="livemostrecent",
)
DELIVERED = Counter(
    "evault_event_deliveries_delivered", "Deliveries answered with 2xx.", ["subscriber"]
)
FAILED = Counter(
    "evault_event_deliveries_failed", "Deliveries given up after max_attempts.", ["subscriber"]
)
ATTEMPT_FAILURES = Counter(
    "evault_event_delivery_attempt_failures", "Delivery attempts that failed.", ["subscriber"]
)
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Evault-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True)
class Claimed:
    """A leased delivery with its event."""

    id: int
    event_id: int
    subscriber: str
    attempt: int
    type: str
    payload: Any
    created_at: datetime

    def body(self) -> bytes:
        doc = {
            "delivery_id": self.id,
            "event_id": self.event_id,
            "type": self.type,
            "created_at": rfc3339(self.created_at),
            "data": self.payload,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_FAN_OUT = """
INSERT INTO event_deliveries (event_id, subscriber)
SELECT o.id, $1 FROM event_outbox o
WHERE o.type = ANY($2::text[]) AND o.id > $3
  AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.event_id = o.id AND d.subscriber = $1)
ORDER BY o.id
ON CONFLICT (event_id, subscriber) DO NOTHING
"""

_CLAIM = """
WITH heads AS (
    SELECT DISTINCT ON (subscriber) id FROM event_deliveries
    WHERE status = 'pending' AND subscriber = ANY($1::text[])
    ORDER BY subscriber, event_id
), due AS (
    SELECT d.id FROM event_deliveries d JOIN heads h ON h.id = d.id
    WHERE d.status = 'pending' AND d.next_attempt_at <= now()
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE event_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
FROM due, event_outbox o
WHERE d.id = due.id AND o.id = d.event_id
RETURNING d.id, d.event_id, d.subscriber, d.attempts, o.type, o.payload, o.created_at
"""


class Dispatcher:
    """Delivers the outbox to ``subscribers`` (see the module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        subscribers: Sequence[SubscriberConfig],
        secrets: Mapping[str, bytes],
        cfg: EventsConfig,
    ) -> None:
        missing = [s.id for s in subscribers if not secrets.get(s.id)]
        if missing:
            raise ValueError(f"no HMAC secret for subscribers {missing}")
        self._pool = pool
        self._subs = {s.id: s for s in subscribers}
        self._secrets = dict(secrets)
        self._cfg = cfg
        self._background = Background(self._run, "event-dispatcher")
        self._last_reconcile = float("-inf")
        self._scanned: dict[str, int] = {}

    # -- the steps, each usable alone (tests, one-shot runs) ----------------------------------

    async def fan_out(self, *, full: bool = False) -> int:
        """Create the missing deliveries; return how many were created. Incremental passes look
        ``LOOKBACK`` events back from the newest event the previous pass saw; a ``full`` pass
        (and a subscriber's first in this process) from the subscriber's first delivery, or
        from the beginning for a subscriber that has none."""
        top: int = await self._pool.fetchval("SELECT coalesce(max(id), 0) FROM event_outbox")
        created = 0
        for sub in self._subs.values():
            if full or sub.id not in self._scanned:
                lo = await self._pool.fetchval(
                    "SELECT min(event_id) FROM event_deliveries WHERE subscriber = $1", sub.id
                )
                after = 0 if lo is None else lo - 1
            else:
                after = max(0, self._scanned[sub.id] - LOOKBACK)
            status: str = await self._pool.execute(_FAN_OUT, sub.id, list(sub.events), after)
            created += int(status.rsplit(" ", 1)[-1])
            self._scanned[sub.id] = top
        return created

    async def claim(self) -> list[Claimed]:
        """Lease the due head delivery of each subscriber that has one."""
        lease = self._cfg.timeout_seconds + LEASE_MARGIN
        rows = await self._pool.fetch(_CLAIM, list(self._subs), lease)
        return [
            Claimed(
                r["id"],
                r["event_id"],
                r["subscriber"],
                r["attempts"],
                r["type"],
                json.loads(r["payload"]),
                r["created_at"],
            )
            for r in rows
        ]

    async def deliver(self, session: aiohttp.ClientSession, c: Claimed) -> bool:
        """POST one claimed delivery and record the outcome; True when delivered."""
        sub = self._subs[c.subscriber]
        body = c.body()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "evidence-vault",
            "X-Evault-Event": c.type,
            "X-Evault-Delivery": str(c.id),
            "X-Evault-Timestamp": stamp,
            "X-Evault-Signature": sign(self._secrets[sub.id], stamp, body),
        }
        status: int | None = None
        error: str | None = None
        try:
            async with session.post(
                sub.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._cfg.timeout_seconds),
            ) as resp:
                status = resp.status
                await resp.content.read(4096)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        ok = status is not None and 200 <= status < 300
        if not ok and error is None:
            error = f"HTTP {status}"
        await self._record(c, ok, status, error)
        return ok

    async def _record(self, c: Claimed, ok: bool, status: int | None, error: str | None) -> None:
        if ok:
            done = await self._pool.execute(
                "UPDATE event_deliveries SET status = 'delivered', delivered_at = now(),"
                " last_status = $3, last_error = NULL"
                " WHERE id = $1 AND attempts = $2 AND status = 'pending'",
                c.id,
                c.attempt,
                status,
            )
            if done.endswith(" 1"):
                DELIVERED.labels(c.subscriber).inc()
            return
        ATTEMPT_FAILURES.labels(c.subscriber).inc()
        final = c.attempt >= self._cfg.max_attempts
        delay = backoff(c.attempt, self._cfg.backoff_seconds, self._cfg.backoff_cap_seconds)
        done = await self._pool.execute(
            "UPDATE event_deliveries SET status = $3, last_status = $4, last_error = $5,"
            " next_attempt_at = now() + make_interval(secs => $6)"
            " WHERE id = $1 AND attempts = $2 AND status = 'pending'",
            c.id,
            c.attempt,
            "failed" if final else "pending",
            status,
            error,
            0.0 if final else delay,
        )
        if final and done.endswith(" 1"):
            FAILED.labels(c.subscriber).inc()
            log.warning(
                "delivery %d of event %d to %s failed for good", c.id, c.event_id, c.subscriber
            )

    async def update_gauge(self) -> None:
        rows = await self._pool.fetch(
            "SELECT subscriber, count(*) AS n FROM event_deliveries"
            " WHERE status = 'pending' AND subscriber = ANY($1::text[]) GROUP BY subscriber",
            list(self._subs),
        )
        counts = {r["subscriber"]: r["n"] for r in rows}
        for sub in self._subs:
            PENDING.labels(sub).set(counts.get(sub, 0))

    async def run_once(self, session: aiohttp.ClientSession) -> int:
        """One round: fan out (fully when a reconcile is due), deliver each due head, update
        the gauge; return the number of attempts made."""
        full = time.monotonic() - self._last_reconcile >= self._cfg.reconcile_seconds
        await self.fan_out(full=full)
        if full:
            self._last_reconcile = time.monotonic()
        claimed = await self.claim()
        results = await asyncio.gather(
            *(self.deliver(session, c) for c in claimed), return_exceptions=True
        )
        for r in results:
            if isinstance(r, _DB_ERRORS):
                log.warning("recording a delivery failed (it will be retried): %s", r)
            elif isinstance(r, BaseException):
                raise r
        await self.update_gauge()
        return len(claimed)

    # -- the background task ----------------------------------------------------------------

    def start(self) -> None:
        self._background.start()

    def alive(self) -> bool:
        return self._background.alive()

    async def stop(self) -> None:
        await self._background.stop()

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    worked = await self.run_once(session)
                except _DB_ERRORS as exc:
                    log.warning("event outbox unavailable: %s", exc)
                    worked = 0
                if not worked:
                    await asyncio.sleep(self._cfg.poll_seconds)


async def delivery_history(
    db: Db,
    *,
    subscriber: str | None = None,
    status: str | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """Deliveries newest first (keyset: ids below ``before``), without event payloads."""
    rows = await db.fetch(
        "SELECT d.id, d.event_id, o.type, d.subscriber, d.status, d.attempts, d.next_attempt_at,"
        " d.last_status, d.last_error, d.delivered_at, o.created_at"
        " FROM event_deliveries d JOIN event_outbox o ON o.id = d.event_id"
        " WHERE ($1::text IS NULL OR d.subscriber = $1) AND ($2::text IS NULL OR d.status = $2)"
        " AND ($3::bigint IS NULL OR d.id < $3) ORDER BY d.id DESC LIMIT $4",
        subscriber,
        status,
        before,
        limit,
    )
    out = []
    for r in rows:
        item = dict(r)
        for key in ("next_attempt_at", "delivered_at", "created_at"):
            item[key] = None if r[key] is None else rfc3339(r[key])
        out.append(item)
    return out
