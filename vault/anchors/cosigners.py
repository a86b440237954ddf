"""Witness cosignatures of this log's checkpoints: submitted, verified, stored, looked up.

Each new signed checkpoint is POSTed to every witness in ``[[anchors.witnesses]]``
(C2SP tlog-witness ``add-checkpoint``) with a consistency proof from the size that witness last
cosigned; its ``cosignature/v1`` lines are kept in ``ledger_cosignatures`` (append-only), served
at ``/ledger/cosignatures/<size>`` and ``/ledger/cosigned-checkpoint`` and written into packages
as ``cosignatures``.

Guarantees:

- A line is stored only after it verified with that witness's configured key for exactly the
  checkpoint's body (``verify.cosignature``).
- Each witness has its own task: one that is down, slow or refusing delays nothing else (not
  checkpointing, not the other witnesses). Failures back off (``witness_retry_seconds``
  doubling up to ``witness_retry_max_seconds``); checkpoints signed meanwhile are submitted
  oldest first once it answers (the latest only, when more than a few are pending).
- A 409 answer carries the size the witness last cosigned: the submission is proven again from
  that size. A refusal of a checkpoint this log signed (409 at an equal size, 422, 403, 404,
  400, or a witness that has cosigned a larger tree than this log has) is the fork alarm: an
  error log line and ``evault_anchor_witness_refusals_total{witness,reason}``.
- ``evault_anchor_witness_lag_seconds{witness}`` is the age of the latest checkpoint while that
  witness has not cosigned it (0 when it has): the alarm when a witness falls behind.
- One process submits to a given witness at a time (a PostgreSQL advisory lock, tried).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import asyncpg
from prometheus_client import Counter, Gauge

from vault.anchors.config import AnchorsConfig
from vault.anchors.witness_config import WitnessPeer
from vault.db import Conn, Db
from vault.errors import EvaultError
from vault.ledger import SignedCheckpoint
from vault.ledger.tiles import consistency_proof
from verify.cosignature import CosignerKey, signature_lines, verify_cosignature
from verify.encoding import b64encode
from verify.errors import MalformedError, SignatureError
from verify.note import parse_note

__all__ = [
    "CosignedCheckpoint",
    "Cosigners",
    "cosignatures_of",
    "cosigned_checkpoint",
    "list_cosignatures",
    "wait_cosignatures",
]

LOCK_CLASS = 0x65767763  # "evwc"
CATCH_UP = 8  # more pending checkpoints than this: submit only the latest

LAG = Gauge(
    "evault_anchor_witness_lag_seconds",
    "Age of the latest signed checkpoint while this witness has not cosigned it (0: it has).",
    ["witness"],
    multiprocess_mode="livemostrecent",
)
COSIGNED_SIZE = Gauge(
    "evault_anchor_witness_size",
    "Size of the newest checkpoint this witness cosigned.",
    ["witness"],
    multiprocess_mode="max",
)
FAILURES = Counter(
    "evault_anchor_witness_failures",
    "Failed submissions to a witness, by reason (unavailable: down, slow or answering 5xx; "
    "invalid: its cosignature did not verify; refused: see the refusals counter; database).",
    ["witness", "reason"],
)
REFUSALS = Counter(
    "evault_anchor_witness_refusals",
    "Checkpoints of this log a witness refused (fork: it cosigned another root or a larger "
    "tree; proof: our consistency proof failed; other: 400/403/404). Investigate at once.",
    ["witness", "reason"],
)

log = logging.getLogger("evault.anchors")


async def cosignatures_of(db: Db, size: int) -> list[str]:
    """The stored cosignature lines of the checkpoint of ``size`` (by witness), as stored."""
    rows = await db.fetch(
        "SELECT line FROM ledger_cosignatures WHERE size = $1 ORDER BY witness", size
    )
    return [r["line"] for r in rows]


async def list_cosignatures(db: Db, limit: int) -> list[tuple[int, str, dt.datetime]]:
    """The newest ``limit`` stored cosignatures: (size, witness, cosigned time), newest first."""
    rows = await db.fetch(
        "SELECT size, witness, cosigned FROM ledger_cosignatures"
        " ORDER BY size DESC, witness LIMIT $1",
        limit,
    )
    return [(r["size"], r["witness"], r["cosigned"]) for r in rows]


@dataclass(frozen=True)
class CosignedCheckpoint:
    """A checkpoint and the stored cosignature lines of it."""

    checkpoint: SignedCheckpoint
    lines: tuple[str, ...]

    @property
    def note(self) -> str:
        """The checkpoint note with the cosignature lines appended (a C2SP cosigned note)."""
        return self.checkpoint.note + "".join(self.lines)


async def cosigned_checkpoint(db: Db) -> CosignedCheckpoint | None:
    """The newest checkpoint with at least one stored cosignature."""
    size = await db.fetchval("SELECT max(size) FROM ledger_cosignatures")
    if size is None:
        return None
    row = await db.fetchrow(
        "SELECT size, root, note FROM ledger_checkpoints WHERE size = $1 ORDER BY id DESC LIMIT 1",
        size,
    )
    if row is None:
        return None
    cp = SignedCheckpoint(row["size"], bytes(row["root"]), row["note"])
    return CosignedCheckpoint(cp, tuple(await cosignatures_of(db, size)))


async def wait_cosignatures(db: Db, size: int, want: int, limit: float) -> list[str]:
    """The cosignature lines of ``size``, waiting up to ``limit`` seconds for ``want``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        lines = await cosignatures_of(db, size)
        if len(lines) >= want or loop.time() >= deadline:
            return lines
        await asyncio.sleep(0.05)


class WitnessFailed(Exception):
    """One submission failed; ``reason`` labels the failure metric."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def request_body(old: int, proof: Sequence[bytes], note: str) -> bytes:
    """An add-checkpoint body: old size, proof lines, blank line, checkpoint note."""
    return ("".join([f"old {old}\n", *(b64encode(h) + "\n" for h in proof), "\n"]) + note).encode()


class _Peer:
    """One witness: its key, where it stands, its backoff."""

    def __init__(self, cfg: WitnessPeer) -> None:
        self.cfg = cfg
        self.key: CosignerKey = cfg.key
        self.label = self.key.label
        self.known: int | None = None  # the size it last cosigned for us, once learnt
        self.failures = 0


class Cosigners:
    """Submits checkpoints to the configured witnesses in the background (module docstring)."""

    def __init__(
        self, pool: asyncpg.Pool[asyncpg.Record], cfg: AnchorsConfig, *, poll: float = 0.05
    ) -> None:
        self._pool = pool
        self._cfg = cfg
        self._poll = poll
        self._peers = [_Peer(p) for p in cfg.witnesses]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(p), name=f"witness {p.cfg.name}") for p in self._peers
            ]

    def alive(self) -> bool:
        return all(not t.done() for t in self._tasks)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def backoff(self, failures: int) -> float:
        cfg = self._cfg
        return float(
            min(cfg.witness_retry_max_seconds, cfg.witness_retry_seconds * 2 ** (failures - 1))
        )

    async def _run(self, peer: _Peer) -> None:
        retry_at = 0.0
        timeout = aiohttp.ClientTimeout(total=self._cfg.witness_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                if time.monotonic() >= retry_at:
                    try:
                        await self.run_once(peer, session)
                        peer.failures = 0
                    except WitnessFailed as exc:
                        peer.failures += 1
                        FAILURES.labels(peer.cfg.name, exc.reason).inc()
                        retry_at = time.monotonic() + self.backoff(peer.failures)
                        level = logging.ERROR if exc.reason == "refused" else logging.WARNING
                        log.log(level, "witness %s: %s; retrying in %.1f s", peer.cfg.name, exc,
                                self.backoff(peer.failures))  # fmt: skip
                await asyncio.sleep(self._poll)

    async def run_once(self, peer: _Peer, session: aiohttp.ClientSession) -> int:
        """Submit what is due to ``peer``; returns how many checkpoints it cosigned."""
        try:
            async with self._pool.acquire() as conn:
                if not await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))", LOCK_CLASS, peer.label
                ):
                    LAG.labels(peer.cfg.name).set(0.0)  # another process submits
                    return 0
                try:
                    done = 0
                    for cp in await self._due(conn, peer):
                        done += await self._submit(conn, peer, session, cp)
                    await self._due(conn, peer)  # the gauges, after what was stored
                    return done
                finally:
                    await conn.execute(
                        "SELECT pg_advisory_unlock($1, hashtext($2))", LOCK_CLASS, peer.label
                    )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, EvaultError) as exc:
            raise WitnessFailed("database", f"database: {exc!r}") from exc

    async def _due(self, conn: Conn, peer: _Peer) -> list[SignedCheckpoint]:
        """Checkpoints to submit now, oldest first; sets the lag and size gauges."""
        have = await conn.fetchval(
            "SELECT max(size) FROM ledger_cosignatures WHERE witness = $1", peer.label
        )
        after = -1 if have is None else int(have)
        if have is not None:
            COSIGNED_SIZE.labels(peer.cfg.name).set(after)
            peer.known = max(peer.known or 0, after)
        rows = await conn.fetch(
            "SELECT DISTINCT ON (size) size, root, note, created_at FROM ledger_checkpoints"
            " WHERE size > $1 ORDER BY size, id DESC LIMIT $2",
            after,
            CATCH_UP + 1,
        )
        if len(rows) > CATCH_UP or (have is None and rows):  # behind, or new: the latest
            latest = await conn.fetchrow(
                "SELECT size, root, note, created_at FROM ledger_checkpoints"
                " ORDER BY id DESC LIMIT 1"
            )
            rows = [latest] if latest is not None else []
        now = dt.datetime.now(dt.UTC)
        LAG.labels(peer.cfg.name).set(
            (now - rows[-1]["created_at"]).total_seconds() if rows else 0.0
        )
        return [SignedCheckpoint(r["size"], bytes(r["root"]), r["note"]) for r in rows]

    async def _post(
        self, peer: _Peer, session: aiohttp.ClientSession, body: bytes
    ) -> tuple[int, str]:
        url = peer.cfg.url.rstrip("/") + "/add-checkpoint"
        try:
            async with session.post(url, data=body) as resp:
                text = (await resp.content.read(64 << 10)).decode("utf-8", "replace")
                return resp.status, text
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WitnessFailed("unavailable", f"cannot be reached: {exc!r}") from exc

    def _refused(self, peer: _Peer, reason: str, message: str) -> WitnessFailed:
        REFUSALS.labels(peer.cfg.name, reason).inc()
        return WitnessFailed("refused", f"REFUSED our checkpoint ({reason}): {message}")

    async def _submit(
        self, conn: Conn, peer: _Peer, session: aiohttp.ClientSession, cp: SignedCheckpoint
    ) -> int:
        old = peer.known or 0
        for _attempt in range(3):
            if old > cp.size:
                latest = await conn.fetchval("SELECT max(size) FROM ledger_checkpoints")
                if old > (latest or 0):
                    raise self._refused(
                        peer, "fork", f"it has cosigned size {old}, beyond this log's {latest}"
                    )
                return 0  # it already cosigned a larger checkpoint of ours: go on
            proof = [] if old in (0, cp.size) else await consistency_proof(conn, old, cp.size)
            status, text = await self._post(peer, session, request_body(old, proof, cp.note))
            if status == 200:
                return await self._store(conn, peer, cp, text)
            if status == 409:
                try:
                    size = int(text.strip())
                except ValueError:
                    raise WitnessFailed(
                        "unavailable", f"409 without a size: {text[:80]!r}"
                    ) from None
                if size == old:
                    raise self._refused(peer, "fork", f"409 at size {size}: {text[:200]}")
                peer.known = old = size
                continue
            if status in (400, 403, 404, 422):
                reason = "proof" if status == 422 else "other"
                raise self._refused(peer, reason, f"HTTP {status}: {text[:200]}")
            raise WitnessFailed("unavailable", f"HTTP {status}: {text[:200]}")
        raise WitnessFailed("unavailable", "the witness's size kept changing")

    async def _store(self, conn: Conn, peer: _Peer, cp: SignedCheckpoint, text: str) -> int:
        body = parse_note(cp.note).text
        try:
            sigs = signature_lines(body, text)
        except MalformedError as exc:
            raise WitnessFailed("invalid", f"its answer is not signature lines: {exc}") from exc
        stored = 0
        for sig, line in zip(sigs, text.splitlines(keepends=True), strict=True):
            if (sig.name, sig.key_id) != (peer.key.name, peer.key.key_id):
                continue  # the spec: ignore cosignatures from unknown keys
            try:
                t = verify_cosignature(sig, body, peer.key)
            except (MalformedError, SignatureError) as exc:
                raise WitnessFailed("invalid", str(exc)) from exc
            await conn.execute(
                "INSERT INTO ledger_cosignatures (size, witness, line, cosigned)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (size, witness) DO NOTHING",
                cp.size,
                peer.label,
                line,
                dt.datetime.fromtimestamp(t, dt.UTC),
            )
            stored = 1
        if not stored:
            raise WitnessFailed("invalid", f"no cosignature by {peer.label} in its answer")
        peer.known = cp.size
        return stored
