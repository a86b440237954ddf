"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from aiohttp import web

from api.fairgate import FairGate
from api.runtime import Runtime
from vault.access.sessions import PlaybackSessions
from vault.access.tokens import TokenCache

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
# Named readiness probes: each returns "ok" or a short reason; /readyz reports them all.
READINESS: web.AppKey[dict[str, Callable[[], str]]] = web.AppKey("readiness", dict)

# Which parts this process runs: "api", "ingest", "media" (all by default; `serve --only`).
PARTS: web.AppKey[frozenset[str]] = web.AppKey("parts", frozenset)
ALL_PARTS = frozenset({"api", "ingest", "media"})
# An API worker process of `evault serve --workers N` (not the main process): it follows the
# checkpoints the main process signs and runs no background task that must run once per
# data directory (time-stamping, the witness client, event delivery).
WORKER: web.AppKey[bool] = web.AppKey("worker", bool)

# The hot read path (api.readpath): a read-only pool, this process's token cache and its
# playback sessions.
READ_POOL: web.AppKey[asyncpg.Pool] = web.AppKey("read_pool", asyncpg.Pool)
READ_GATE: web.AppKey[FairGate] = web.AppKey("read_gate", FairGate)
TOKEN_CACHE: web.AppKey[TokenCache] = web.AppKey("token_cache", TokenCache)
SESSIONS: web.AppKey[PlaybackSessions] = web.AppKey("playback_sessions", PlaybackSessions)
