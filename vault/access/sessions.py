"""Playback sessions: one ``accessed`` entry for all the Range requests of one playback.

A player fetches a recording as many Range requests (dozens a minute); recording each as its
own ``accessed`` entry buries the custody timeline. ``PlaybackSessions`` lets the first allowed
``stream`` request of a principal for an item (evidence or rendition) write the entry — before
its first byte is served, as every content request's — and the following requests of the same
principal, action and item reuse it while they keep coming: each within ``idle`` seconds of
the one before (``service.playback_session_seconds``).

Guarantees:

- Only the recording is shared, never the decision: every request is still decided on the
  current state (a revoked token, a disabled principal, a lowered clearance or a new label
  refuse the very next request). A denial is always its own ``denied`` entry and ends the
  session, so access granted again later opens a new one.
- The entry that opens a session carries ``session_seconds`` (the idle window), so a reader of
  the ledger knows it may stand for several requests; the access log still names each request.
- Requests that arrive while the opening entry is being written wait for it; if it could not
  be written, each writes its own (fail closed: nothing is served unrecorded).
- Sessions live in this process's memory: a restart, or another process serving the next
  request, starts a new session (one more entry, never one fewer). At most ``limit`` sessions
  are kept; the least recently used go first. ``idle`` 0 turns sessions off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from vault.policy.decide import Action, Principal, TargetKind

__all__ = ["SESSION_ACTIONS", "PlaybackSessions"]

SESSION_ACTIONS = frozenset({Action.STREAM})
"""Actions whose requests share a session: playback. A download is one entry each."""

_Key = tuple[str, Action, TargetKind, str]


class PlaybackSessions:
    """The open playback sessions of this process (see the module docstring)."""

    def __init__(
        self,
        idle: int,
        *,
        limit: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle = idle
        self._limit = limit
        self._clock = clock
        self._last: dict[_Key, float] = {}  # key -> time of its latest request (LRU order)
        self._opening: dict[_Key, asyncio.Future[bool]] = {}

    def __len__(self) -> int:
        return len(self._last)

    def applies(self, action: Action) -> bool:
        return self.idle > 0 and action in SESSION_ACTIONS

    @staticmethod
    def key(principal: Principal, action: Action, kind: TargetKind, target_id: str) -> _Key:
        return (principal.id, action, kind, target_id)

    def end(self, key: _Key) -> None:
        """Close the session (a denial): the next allowed request opens a new one."""
        self._last.pop(key, None)

    def _touch(self, key: _Key) -> None:
        self._last.pop(key, None)
        self._last[key] = self._clock()

    def _live(self, key: _Key) -> bool:
        last = self._last.get(key)
        return last is not None and self._clock() - last <= self.idle

    async def enter(self, key: _Key, write: Callable[[], Awaitable[object]]) -> bool:
        """Run ``write`` (append the opening entry) unless ``key``'s session is live; return
        whether this request opened a session. ``write`` raising leaves no session."""
        opening = self._opening.get(key)
        if opening is not None and await asyncio.shield(opening):
            self._touch(key)
            return False
        if self._live(key):
            self._touch(key)
            return False
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._opening[key] = done
        try:
            await write()
        except BaseException:
            done.set_result(False)
            self.end(key)
            raise
        finally:
            if self._opening.get(key) is done:
                del self._opening[key]
        self._touch(key)
        done.set_result(True)
        self._evict()
        return True

    def _evict(self) -> None:
        if len(self._last) <= self._limit:
            return
        now = self._clock()
        for key in [k for k, t in self._last.items() if now - t > self.idle]:
            del self._last[key]
        while len(self._last) > self._limit:
            del self._last[next(iter(self._last))]
