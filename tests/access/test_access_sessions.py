"""Playback sessions (vault.access.sessions): which requests share the opening entry."""

from __future__ import annotations

import asyncio

import pytest

from vault.access.sessions import PlaybackSessions
from vault.policy.decide import Action, Principal, Role
from vault.policy.labels import Level

ALICE = Principal("alice", Level.INTERNAL, frozenset(), frozenset({Role.REVIEWER}), frozenset())
BOB = Principal("bob", Level.INTERNAL, frozenset(), frozenset({Role.REVIEWER}), frozenset())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Writes:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1
        await asyncio.sleep(0)


def key(p: Principal = ALICE, item: str = "e1", action: Action = Action.STREAM) -> object:
    return PlaybackSessions.key(p, action, "evidence", item)


async def test_requests_within_the_idle_window_share_one_entry() -> None:
    clock, writes = Clock(), Writes()
    s = PlaybackSessions(300, clock=clock)
    assert await s.enter(key(), writes) is True
    for _ in range(50):  # a request every 10 s for over 8 minutes: one session
        clock.now += 10
        assert await s.enter(key(), writes) is False
    assert writes.count == 1
    clock.now += 301  # idle past the window: a new session, a new entry
    assert await s.enter(key(), writes) is True
    assert writes.count == 2


async def test_principal_item_and_action_each_open_their_own() -> None:
    writes = Writes()
    s = PlaybackSessions(300, clock=Clock())
    for k in (key(), key(BOB), key(item="e2"), key(action=Action.DOWNLOAD)):
        assert await s.enter(k, writes) is True
    assert writes.count == 4
    assert not s.applies(Action.DOWNLOAD) and s.applies(Action.STREAM)
    assert not PlaybackSessions(0).applies(Action.STREAM)  # 0: sessions off


async def test_concurrent_first_requests_write_one_entry() -> None:
    gate = asyncio.Event()
    count = 0

    async def slow() -> None:
        nonlocal count
        count += 1
        await gate.wait()

    s = PlaybackSessions(300, clock=Clock())
    first = asyncio.create_task(s.enter(key(), slow))
    await asyncio.sleep(0)
    others = [asyncio.create_task(s.enter(key(), slow)) for _ in range(5)]
    await asyncio.sleep(0)
    assert not any(t.done() for t in others)  # nothing is served before the entry is written
    gate.set()
    assert await first is True and [await t for t in others] == [False] * 5
    assert count == 1


async def test_attack_failed_write_leaves_no_session_and_waiters_write_their_own() -> None:
    gate = asyncio.Event()
    calls = 0

    async def failing_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await gate.wait()
            raise TimeoutError("ledger down")

    s = PlaybackSessions(300, clock=Clock())
    first = asyncio.create_task(s.enter(key(), failing_once))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(s.enter(key(), failing_once))
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(TimeoutError):
        await first
    assert await waiter is True  # it wrote its own entry: nothing served unrecorded
    assert calls == 2


async def test_end_closes_the_session_and_the_cache_is_bounded() -> None:
    clock, writes = Clock(), Writes()
    s = PlaybackSessions(300, clock=clock, limit=3)
    await s.enter(key(), writes)
    s.end(key())  # a denial
    assert await s.enter(key(), writes) is True
    for i in range(10):
        await s.enter(key(item=f"x{i}"), writes)
    assert len(s) == 3
