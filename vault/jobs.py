"""Jobs in PostgreSQL: claimed with FOR UPDATE SKIP LOCKED, leased, retried, finally failed.

Guarantees:
- A job is held by at most one worker at a time: claiming sets a lease; a worker that stops
  heartbeating loses the job when the lease expires, and another worker takes it.
- Completion and failure are fenced by the claim's attempt number: a worker whose lease was
  taken over cannot complete or fail the job any more (its write changes nothing).
- A failed attempt is retried after an exponential backoff until ``max_attempts``; then the job
  is ``failed`` with its reason, and it never blocks other jobs.
- Any number of processes, on any number of hosts, may run workers on one queue. A job whose
  worker died (its process or host; nothing is heard of it) is taken by another worker once its
  lease expires, as a new attempt; a job whose workers died ``max_attempts`` times is failed
  when it is next taken, without running it again (a job that kills its worker cannot keep
  every node busy for ever).
- A worker outlives a database outage (refused, lost or closed connections, mid-job too): it
  logs it and claims again once the database is back; only a bug ends it (readiness then says
  ``stopped``).
- ``enqueue`` takes a connection, so a job can be created in the same transaction as what makes
  it necessary (an evidence row and its ledger entry); a ``dedupe_key`` makes enqueueing
  idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from vault.db import Db, is_outage
from vault.errors import EvaultError
from vault.retry import backoff

log = logging.getLogger("evault.jobs")

BACKOFF_BASE = 2.0
BACKOFF_CAP = 3600.0


@dataclass(frozen=True)
class Job:
    """A claimed job. ``attempt`` fences completion: see the module docstring."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int


class JobFailed(EvaultError):
    """A job handler's failure that retrying will not fix: the job is failed at once."""

    slug = "job-failed"
    title = "Job failed permanently"


def backoff_seconds(attempt: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Delay before retry ``attempt`` + 1 of a job (``vault.retry.backoff`` with the job
    defaults)."""
    return backoff(attempt, base, cap)


async def enqueue(
    conn: Db,
    kind: str,
    payload: Mapping[str, Any],
    *,
    dedupe_key: str | None = None,
    max_attempts: int = 5,
) -> int | None:
    """Add a job; return its id, or None when ``dedupe_key`` already exists."""
    job_id: int | None = await conn.fetchval(
        "INSERT INTO jobs (kind, payload, dedupe_key, max_attempts) VALUES ($1, $2::jsonb, $3, $4)"
        " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        kind,
        json.dumps(dict(payload)),
        dedupe_key,
        max_attempts,
    )
    return job_id


_STATUS_COLUMNS = "id, kind, payload, status, attempts, result, last_error, created_at, updated_at"


async def job_status(db: Db, job_id: int, kind: str | None = None) -> asyncpg.Record | None:
    """A job's status row (``id, kind, payload, status, attempts, result, last_error,
    created_at, updated_at``), or None if there is no such job (of ``kind``, when given).
    Deciding who may see it is the caller's: the payload names who asked for it."""
    if kind is None:
        return await db.fetchrow(
            f"SELECT {_STATUS_COLUMNS} FROM jobs WHERE id = $1",  # noqa: S608
            job_id,
        )
    return await db.fetchrow(
        f"SELECT {_STATUS_COLUMNS} FROM jobs WHERE id = $1 AND kind = $2",  # noqa: S608
        job_id,
        kind,
    )


async def claim(
    pool: asyncpg.Pool[asyncpg.Record], kinds: Sequence[str], worker: str, lease: float
) -> Job | None:
    """Take the oldest ready job of ``kinds`` (queued and due, or running with an expired lease)."""
    row = await pool.fetchrow(
        """
        UPDATE jobs SET status = 'running', attempts = attempts + 1, worker = $2,
               lease_until = now() + make_interval(secs => $3), updated_at = now()
        WHERE id = (
            SELECT id FROM jobs
            WHERE kind = ANY($1::text[])
              AND ((status = 'queued' AND run_after <= now())
                   OR (status = 'running' AND lease_until < now()))
            ORDER BY run_after, id
            FOR UPDATE SKIP LOCKED
            LIMIT 1)
        RETURNING id, kind, payload, attempts, max_attempts
        """,
        list(kinds),
        worker,
        lease,
    )
    if row is None:
        return None
    return Job(
        row["id"], row["kind"], json.loads(row["payload"]), row["attempts"], row["max_attempts"]
    )


async def heartbeat(pool: asyncpg.Pool[asyncpg.Record], job: Job, lease: float) -> bool:
    """Extend the lease; False when the job is no longer ours."""
    status: str = await pool.execute(
        "UPDATE jobs SET lease_until = now() + make_interval(secs => $3), updated_at = now()"
        " WHERE id = $1 AND attempts = $2 AND status = 'running'",
        job.id,
        job.attempt,
        lease,
    )
    return status.endswith(" 1")


async def complete(conn: Db, job: Job, result: Mapping[str, Any]) -> bool:
    """Mark done (fenced); False when the job was taken over meanwhile."""
    status: str = await conn.execute(
        "UPDATE jobs SET status = 'done', result = $3::jsonb, lease_until = NULL,"
        " last_error = NULL, updated_at = now()"
        " WHERE id = $1 AND attempts = $2 AND status = 'running'",
        job.id,
        job.attempt,
        json.dumps(dict(result)),
    )
    return status.endswith(" 1")


async def fail(conn: Db, job: Job, error: str, *, permanent: bool = False) -> str:
    """Record a failed attempt (fenced): retry later with backoff, or fail for good.

    Returns the new status ('queued' or 'failed'), or '' when the job was not ours any more.
    """
    final = permanent or job.attempt >= job.max_attempts
    row = await conn.fetchrow(
        "UPDATE jobs SET status = $3, last_error = $4, lease_until = NULL, updated_at = now(),"
        " run_after = now() + make_interval(secs => $5)"
        " WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING status",
        job.id,
        job.attempt,
        "failed" if final else "queued",
        error[:2000],
        0.0 if final else backoff_seconds(job.attempt),
    )
    return "" if row is None else str(row["status"])


Handler = Callable[[Job], Awaitable[Mapping[str, Any]]]


class JobRunner:
    """``concurrency`` loops claiming jobs of the handled kinds and running their handlers.

    A handler returns a result mapping (the job is done), raises JobFailed (failed at once), or
    raises EvaultError/OSError/asyncpg errors (retried with backoff). Anything else is a bug: it
    is logged and the attempt counts as failed, so one bad job can never stop the runner.
    """

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        handlers: Mapping[str, Handler],
        *,
        worker: str,
        concurrency: int,
        lease: float,
        idle_poll: float = 0.5,
    ) -> None:
        self._pool = pool
        self._handlers = dict(handlers)
        self._worker = worker
        self._concurrency = concurrency
        self._lease = lease
        self._idle_poll = idle_poll
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    def start(self) -> None:
        for i in range(self._concurrency):
            self._tasks.append(asyncio.create_task(self._loop(), name=f"jobs-{self._worker}-{i}"))

    def wake(self) -> None:
        """Hint that new jobs exist (saves a poll interval)."""
        self._wake.set()

    def alive(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()

    async def run_once(self) -> bool:
        """Claim and run one job; False when none was ready."""
        job = await claim(self._pool, list(self._handlers), self._worker, self._lease)
        if job is None:
            return False
        if job.attempt > job.max_attempts:  # taken over after every attempt's lease lapsed
            await fail(
                self._pool,
                job,
                f"abandoned: its worker stopped without finishing {job.max_attempts} times "
                "(the lease lapsed each time)",
                permanent=True,
            )
            return True
        beat = asyncio.create_task(self._heartbeat(job))
        try:
            result = await self._handlers[job.kind](job)
        except JobFailed as exc:
            await fail(self._pool, job, exc.detail, permanent=True)
        except (EvaultError, OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("job %d (%s) attempt %d failed: %s", job.id, job.kind, job.attempt, exc)
            await fail(self._pool, job, str(exc) or type(exc).__name__)
        except Exception as exc:
            log.exception("job %d (%s) crashed", job.id, job.kind)
            await fail(self._pool, job, f"internal error: {type(exc).__name__}: {exc}")
        else:
            await complete(self._pool, job, result)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        return True

    async def _heartbeat(self, job: Job) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                kept = await heartbeat(self._pool, job, self._lease)
            except Exception as exc:
                if not (is_outage(exc) or isinstance(exc, asyncpg.PostgresError)):
                    raise
                log.warning("job %d heartbeat: the database is unavailable: %s", job.id, exc)
                continue
            if not kept:
                log.warning("job %d lease lost", job.id)
                return

    async def _loop(self) -> None:
        while True:
            try:
                worked = await self.run_once()
            except Exception as exc:
                # the database going away mid-job (a closed connection: an InterfaceError, not a
                # PostgresError) must not end the worker: it serves again once it is back
                if not (is_outage(exc) or isinstance(exc, asyncpg.PostgresError)):
                    raise
                log.warning("job queue unavailable: %s", exc)
                worked = False
            if not worked:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_poll)
