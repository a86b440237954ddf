"""The hot read path: a read-only connection pool, the token cache and playback sessions.

Guarantees:

- ``READ_POOL`` is a second, small asyncpg pool for single read-only statements on the hottest
  route (listing evidence; token lookups stay on the main pool: the token cache answers most,
  and with them on this pool the upload route cost more service CPU: docs/performance.md).
  Its sessions are ``default_transaction_read_only`` (PostgreSQL refuses any write through it)
  and act as the app role. It skips asyncpg's reset
  query on release (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` — one more
  round trip per statement): nothing run on it leaves session state behind (no advisory lock,
  cursor, LISTEN or SET); an open transaction is still rolled back by asyncpg on release.
  Its idle connections are kept (no inactivity timer, which asyncpg re-arms on each release).
  Statements on it pass ``READ_GATE`` first (``api.fairgate``: ``database.read_concurrency``
  slots, at most one per connection, granted in arrival order), so under load requests get
  connections first come, first served. The default slot count is small on purpose: on a
  host where PostgreSQL and the service share the cores, more backends in flight contend with
  the service for them and serve fewer lists per second (docs/performance.md).
- ``TOKEN_CACHE`` is this process's ``vault.access.tokens.TokenCache``, following
  ``NOTIFY evault_auth`` on its own connection (``vault.access.tokens.follow_changes``); while that
  connection is down the cache is bypassed. See ``vault.access.tokens`` for what it guarantees.
- ``SESSIONS`` is this process's ``vault.access.sessions.PlaybackSessions``: it follows this
  process's ledger commits (``Ledger.on_commit``) and, on the same connection as the token
  cache, every process's appends (``NOTIFY evault_ledger``); while that connection is down no
  kept target is used.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from aiohttp import web

from api.fairgate import FairGate
from api.keys import READ_GATE, READ_POOL, RUNTIME, SESSIONS, TOKEN_CACHE
from vault.access.sessions import PlaybackSessions
from vault.access.tokens import TokenCache, follow_changes

__all__ = ["read_ctx"]


async def _keep(_conn: Any) -> None:
    """Release without the reset query (see the module docstring)."""


async def read_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the read pool and start the token cache's change feed; close both."""
    rt = app[RUNTIME]
    settings = {"role": rt.db.app_role, "default_transaction_read_only": "on"}
    size = max(2, min(8, rt.cfg.database.pool_size))
    pool = await asyncpg.create_pool(
        rt.db.dsn,
        min_size=1,
        max_size=size,
        server_settings=settings,
        reset=_keep,
        max_inactive_connection_lifetime=0,  # no idle timer re-armed on every release
    )
    cache = TokenCache(ttl=rt.cfg.service.token_cache_seconds)
    sessions = PlaybackSessions(rt.cfg.service.playback_session_seconds)
    rt.ledger.on_commit(lambda _size: sessions.invalidate())
    feed = asyncio.create_task(
        follow_changes(
            lambda: asyncpg.connect(rt.db.dsn, server_settings=settings), cache, ledger=sessions
        )
    )
    app[READ_POOL] = pool
    app[READ_GATE] = FairGate(min(size, rt.cfg.database.read_concurrency))
    app[TOKEN_CACHE] = cache
    app[SESSIONS] = sessions
    try:
        yield
    finally:
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed
        await pool.close()
