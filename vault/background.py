"""One long-running asyncio task owned by a component: start once, report liveness, stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any


class Background:
    """Runs ``loop()`` as a named task. ``start`` is idempotent; ``stop`` cancels and waits."""

    def __init__(self, loop: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._loop = loop
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self._name)

    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
