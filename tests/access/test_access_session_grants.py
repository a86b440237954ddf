"""Playback sessions decide repeat requests in memory (vault.access.sessions, serving): no
database round trip while nothing changed, and every change still refuses the next request."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.access.access_fixtures import ADMIN, add_evidence, add_rendition, open_vault, person
from vault.access import tokens
from vault.access.serving import evidence_bytes, rendition_bytes
from vault.access.sessions import PlaybackSessions
from vault.cases import links as cases
from vault.errors import NotFound
from vault.policy.decide import Action, Role
from vault.policy.labels import Label, Level

VIEWER = person("viewer-1", {Role.CASE_SYSTEM}, Level.SECRET, ())


class Counted:
    """The real pool, counting the statements sent through it."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self.pool = pool
        self.statements = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.pool, name)
        if name not in ("fetch", "fetchrow", "fetchval", "execute", "executemany"):
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.statements += 1
            return await attr(*args, **kwargs)

        return counted


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _entries(pool: asyncpg.Pool[asyncpg.Record], kind: str) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT data FROM ledger_entries WHERE kind = $1 ORDER BY idx", kind)
    return [json.loads(bytes(r["data"])) for r in rows]


async def test_repeat_requests_touch_no_database_until_something_changes(
    pg_dsn: str, tmp_path: Path
) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        eid = await add_evidence(ledger)
        clock = Clock()
        sessions = PlaybackSessions(300, clock=clock)
        ledger.on_commit(lambda _size: sessions.invalidate())
        sessions.set_following(True)  # as the service's change feed does once it listens
        counted = Counted(db.pool)

        async def play(who: Any = VIEWER) -> int:
            before = counted.statements
            row = await evidence_bytes(counted, ledger, who, Action.STREAM, eid, sessions=sessions)
            assert str(row.id) == eid
            return counted.statements - before

        assert await play() > 0  # opens the session: its entry is a commit, which invalidates
        assert await play() > 0  # decided from the database, its target kept
        assert [await play() for _ in range(5)] == [0] * 5  # in memory
        assert len(await _entries(db.pool, "accessed")) == 1

        # the kept target is used only while fresh: a change with no entry is bounded
        clock.now += sessions.fresh + 1
        assert await play() > 0
        assert await play() == 0

        # not following the change feed: every request goes to the database
        sessions.set_following(False)
        assert await play() > 0 and await play() > 0
        sessions.set_following(True)
        assert await play() > 0 and await play() == 0

        # the principal is always the request's own: a lowered clearance is refused at once
        lowered = person("viewer-1", {Role.CASE_SYSTEM}, Level.PUBLIC, ())
        with pytest.raises(NotFound):
            await play(lowered)
        (denied,) = await _entries(db.pool, "denied")
        assert denied["reason"].startswith("clearance public below label")

        # a label raised (a ledger entry): the very next request is decided on it, refused
        await play()  # the denial ended the session: a new one opens (its own entry)
        assert await play() > 0 and await play() == 0
        await cases.set_label(db.pool, ledger, ADMIN, "evidence", eid, Label(Level.TOP_SECRET))
        with pytest.raises(NotFound):
            await play()
        assert len(await _entries(db.pool, "denied")) == 2


async def test_rendition_repeat_requests_and_overrides(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        eid = await add_evidence(ledger)
        rid = await add_rendition(ledger, eid, Label(Level.INTERNAL))
        clock = Clock()
        sessions = PlaybackSessions(300, clock=clock)
        ledger.on_commit(lambda _size: sessions.invalidate())
        sessions.set_following(True)
        counted = Counted(db.pool)

        async def play(override: bool = False) -> int:
            before = counted.statements
            row, source = await rendition_bytes(
                counted, ledger, VIEWER, Action.STREAM, rid, override=override, sessions=sessions
            )
            assert (str(row.id), str(source.id)) == (rid, eid)
            return counted.statements - before

        await play()
        await play()
        assert await play() == 0
        assert await play(override=True) > 0  # an override is always decided and recorded
        await db.pool.execute(  # scrub finds the source failing (no ledger entry of its own)
            "UPDATE evidence SET integrity = 'mismatch' WHERE id = $1::uuid", eid
        )
        clock.now += sessions.fresh + 1  # no entry announces it: within the freshness bound
        with pytest.raises(Exception, match="integrity"):
            await play()


def test_kept_targets_follow_the_session() -> None:
    clock = Clock()
    s = PlaybackSessions(300, clock=clock)
    key = PlaybackSessions.key(VIEWER, Action.STREAM, "evidence", "e1")
    s.keep(key, ("row", "target"), s.generation)
    assert s.grant(key) is None  # not following: nothing kept
    s.set_following(True)
    s.keep(key, ("row", "target"), s.generation)
    assert s.grant(key) is None  # no live session: nothing kept
    s._touch(key)
    generation = s.generation
    s.invalidate()
    s.keep(key, ("row", "target"), generation)  # read before a change: not kept
    assert s.grant(key) is None
    s.keep(key, ("row", "target"), s.generation)
    assert s.grant(key) == ("row", "target")
    s.end(key)  # a denial ends the session and what it kept
    assert s.grant(key) is None
    s._touch(key)
    s.keep(key, ("row", "target"), s.generation)
    clock.now += 301  # the session went idle
    assert s.grant(key) is None


async def test_another_process_append_is_heard_and_a_lost_feed_stops_reuse(
    pg_dsn: str, tmp_path: Path
) -> None:
    async with open_vault(pg_dsn, tmp_path) as (_ledger, db):
        sessions = PlaybackSessions(300)
        cache = tokens.TokenCache(ttl=60)
        feed = asyncio.create_task(
            tokens.follow_changes(lambda: asyncpg.connect(db.dsn), cache, ledger=sessions)
        )
        try:
            for _ in range(200):
                if sessions.following:
                    break
                await asyncio.sleep(0.01)
            assert sessions.following and cache.following
            seen = sessions.generation
            other = await asyncpg.connect(db.dsn)  # another process appends (the trigger's NOTIFY)
            try:
                await other.execute("UPDATE ledger_state SET size = size")
            finally:
                await other.close()
            for _ in range(200):
                if sessions.generation != seen:
                    break
                await asyncio.sleep(0.01)
            assert sessions.generation != seen
        finally:
            feed.cancel()
            with pytest.raises(asyncio.CancelledError):
                await feed
        assert not sessions.following  # the feed is gone: nothing kept is used
