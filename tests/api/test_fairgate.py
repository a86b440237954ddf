"""api.fairgate.FairGate: capacity, arrival order, cancellation never loses a slot."""

from __future__ import annotations

import asyncio

import pytest

from api.fairgate import FairGate


async def _hold(gate: FairGate, name: str, order: list[str], release: asyncio.Event) -> None:
    async with gate:
        order.append(name)
        await release.wait()


async def test_at_most_size_holders_admitted_in_arrival_order() -> None:
    gate, order, release = FairGate(2), [], asyncio.Event()
    tasks = []
    for i in range(6):
        tasks.append(asyncio.create_task(_hold(gate, f"t{i}", order, release)))
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    assert order == ["t0", "t1"]
    release.set()
    await asyncio.gather(*tasks)
    assert order == [f"t{i}" for i in range(6)]


async def test_a_newcomer_does_not_overtake_a_waiter() -> None:
    gate, order = FairGate(1), []
    first = asyncio.Event()

    async def holder() -> None:
        async with gate:
            order.append("holder")
            await first.wait()

    async def waiter() -> None:
        async with gate:
            order.append("waiter")

    h = asyncio.create_task(holder())
    await asyncio.sleep(0)
    w = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    first.set()
    await h  # the holder released: its slot went to the waiter, not yet running
    async with gate:  # a newcomer arriving now queues behind the waiter
        order.append("newcomer")
    await w
    assert order == ["holder", "waiter", "newcomer"]


async def test_cancelled_waiters_lose_no_slot() -> None:
    gate, release = FairGate(1), asyncio.Event()
    order: list[str] = []
    async with gate:
        waiting = asyncio.create_task(_hold(gate, "cancelled", order, release))
        handed = asyncio.create_task(_hold(gate, "handed", order, release))
        await asyncio.sleep(0)
        waiting.cancel()  # cancelled while waiting
        await asyncio.sleep(0)
    # leaving handed the slot to `handed`, which is cancelled before it runs: passed on
    handed.cancel()
    for t in (waiting, handed):
        with pytest.raises(asyncio.CancelledError):
            await t
    held = [asyncio.create_task(_hold(gate, f"n{i}", order, release)) for i in range(2)]
    await asyncio.sleep(0.01)
    assert order == ["n0"]  # exactly one slot, still there
    release.set()
    await asyncio.gather(*held)
    assert order == ["n0", "n1"]


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FairGate(0)
