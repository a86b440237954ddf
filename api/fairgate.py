"""A first-come, first-served limit on concurrent holders (the read pool's gate).

``asyncpg``'s pool hands connections out through an ``asyncio.Queue``, which lets a newly
arriving acquirer take a connection released for a woken waiter; the waiter then queues again
at the back. Under a closed-loop load (many clients, few connections) that stretches the
list route's 99th percentile far past its median (docs/performance.md). ``FairGate`` admits at most
``size`` holders and hands a released slot straight to the oldest waiter, so with ``size`` equal
to the pool's ``max_size`` the pool itself never makes anyone wait.

Guarantees: at most ``size`` holders at a time; waiters are admitted in arrival order; a waiter
cancelled while waiting leaves no trace, and one cancelled after being handed a slot passes
the slot on (no slot is ever lost or duplicated).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType

__all__ = ["FairGate"]


class FairGate:
    """``async with gate:`` holds one of ``size`` slots, granted strictly in arrival order."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a gate needs at least one slot")
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot, then cancelled: pass it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes to the oldest waiter
                return
        self._free += 1
