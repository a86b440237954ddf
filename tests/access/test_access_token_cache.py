"""The per-process token cache: never answers for a token that was revoked, expired, or whose
principal changed; bypassed while its change feed is down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.access.access_fixtures import ADMIN, open_vault
from vault.access import principals, tokens
from vault.db import Database
from vault.errors import Unauthenticated
from vault.ledger import Ledger
from vault.policy.decide import Role
from vault.policy.labels import Level

SPEC = principals.PrincipalSpec("carol", frozenset({Role.REVIEWER}), Level.INTERNAL)


class _Counting:
    """A pool wrapper counting the token lookups that reach the database."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self.pool = pool
        self.lookups = 0

    async def fetchrow(self, *args: object) -> object:
        self.lookups += 1
        return await self.pool.fetchrow(*args)


async def _following(dsn: str, cache: tokens.TokenCache) -> asyncio.Task[None]:
    feed = asyncio.create_task(tokens.follow_changes(lambda: asyncpg.connect(dsn), cache))
    for _ in range(200):
        if cache.following:
            return feed
        await asyncio.sleep(0.01)
    raise AssertionError("the change feed did not start")


@contextlib.asynccontextmanager
async def _carol(
    pg_dsn: str, tmp_path: Path
) -> AsyncIterator[tuple[Ledger, Database, tokens.IssuedToken, tokens.TokenCache]]:
    """A vault with principal carol and a token of hers, and a cache following changes."""
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        await principals.add(db.pool, ledger, ADMIN, SPEC)
        issued = await tokens.create(db.pool, ledger, ADMIN, "carol", timedelta(days=1))
        cache = tokens.TokenCache(ttl=60)
        feed = await _following(db.dsn, cache)
        try:
            yield ledger, db, issued, cache
        finally:
            feed.cancel()
            with pytest.raises(asyncio.CancelledError):
                await feed


async def test_revoked_token_refused_at_once(pg_dsn: str, tmp_path: Path) -> None:
    async with _carol(pg_dsn, tmp_path) as (ledger, db, issued, cache):
        counting = _Counting(db.pool)
        for _ in range(3):
            assert (await tokens.authenticate(counting, issued.token, cache)).id == "carol"  # type: ignore[arg-type]
        assert counting.lookups == 1  # answered from the cache after the first
        await tokens.revoke(db.pool, ledger, ADMIN, issued.id)
        with pytest.raises(Unauthenticated):  # the very next request: no wait, no TTL
            await tokens.authenticate(counting, issued.token, cache)  # type: ignore[arg-type]


async def test_principal_changes_invalidate(pg_dsn: str, tmp_path: Path) -> None:
    async with _carol(pg_dsn, tmp_path) as (ledger, db, issued, cache):
        pool = db.pool
        assert (await tokens.authenticate(pool, issued.token, cache)).cases == frozenset()
        await principals.assign(pool, ledger, ADMIN, "carol", "K1")
        assert (await tokens.authenticate(pool, issued.token, cache)).cases == {"K1"}
        await principals.disable(pool, ledger, ADMIN, "carol")
        with pytest.raises(Unauthenticated):
            await tokens.authenticate(pool, issued.token, cache)


async def test_notification_from_another_process_invalidates(pg_dsn: str, tmp_path: Path) -> None:
    """A change committed elsewhere reaches the cache as NOTIFY evault_auth (no local call)."""
    async with _carol(pg_dsn, tmp_path) as (_ledger, db, issued, cache):
        pool = db.pool
        await tokens.authenticate(pool, issued.token, cache)
        digest = tokens.token_hash(issued.token)
        assert cache.get(digest) is not None
        # as another process would: the revoking transaction notifies, nothing local runs
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE tokens SET revoked_at = now() WHERE id = $1", issued.id)
            await principals.notify_auth_change(conn)
        for _ in range(200):
            if cache.get(digest) is None:
                break
            await asyncio.sleep(0.005)
        assert cache.get(digest) is None
        with pytest.raises(Unauthenticated):
            await tokens.authenticate(pool, issued.token, cache)


def test_cache_rules_without_a_database() -> None:
    now = [0.0]
    cache = tokens.TokenCache(ttl=5, size=2, clock=lambda: now[0])
    who = principals.principal_from_row(
        {
            "id": "x",
            "clearance": int(Level.INTERNAL),
            "caveats": [],
            "roles": ["reviewer"],
            "officer_id": None,
            "dock_ids": [],
            "active": True,
        },
        [],
    )
    later = datetime.now(UTC) + timedelta(days=1)
    cache.put(b"a", who, later, cache.generation)
    assert cache.get(b"a") is None  # not following: bypassed, nothing stored
    cache.set_following(True)
    gen = cache.generation
    cache.invalidate()  # an invalidation while a lookup was in flight
    cache.put(b"a", who, later, gen)
    assert cache.get(b"a") is None
    cache.put(b"a", who, later, cache.generation)
    assert cache.get(b"a") is who
    now[0] = 5.0  # TTL over
    assert cache.get(b"a") is None
    cache.put(b"b", who, datetime.now(UTC) - timedelta(seconds=1), cache.generation)
    assert cache.get(b"b") is None  # the token itself expired: exact, whatever the TTL
    cache.put(b"c", who, later, cache.generation)
    cache.set_following(False)  # the feed went down: everything dropped, bypassed
    assert cache.get(b"c") is None
    off = tokens.TokenCache(ttl=0, clock=lambda: now[0])  # token_cache_seconds = 0
    off.set_following(True)
    off.put(b"a", who, later, off.generation)
    assert off.get(b"a") is None
