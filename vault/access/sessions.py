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
- A session may keep the verified rows and target its last full decision was made on
  (``grant``/``keep``), so that the next request of the same playback is decided in memory:
  the principal is always the request's own (authenticated afresh: a revoked token or a
  disabled principal never reaches the decision, a lowered clearance is decided on), only the
  target is reused. A kept target is used only while all of these hold: the session is live;
  it was read at the current *generation*, which every ledger commit of this process
  (``Ledger.on_commit``), every ``NOTIFY evault_ledger`` or ``evault_auth`` heard
  (``vault.access.tokens.follow_changes``) and every local authentication change advance; the
  sessions are *following* those notifications (while the connection is down, every request
  is decided from the database); and it is younger than ``fresh`` seconds (default
  ``access_state.REFRESH_SECONDS``: the bound for what announces itself with no ledger entry,
  such as a scrub mark, or a row edited by hand in SQL). A label raised, a case linked or
  unlinked, a disposal: each is a ledger entry, so the very next request in this process, and
  in another once the notification arrives, is decided on the database's state again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from vault.access import principals
from vault.access.state import REFRESH_SECONDS
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
        fresh: float = REFRESH_SECONDS,
    ) -> None:
        self.idle = idle
        self.fresh = fresh
        self._limit = limit
        self._clock = clock
        self._last: dict[_Key, float] = {}  # key -> time of its latest request (LRU order)
        self._opening: dict[_Key, asyncio.Future[bool]] = {}
        self._grants: dict[_Key, tuple[object, float]] = {}  # key -> (target kept, read at)
        self.generation = 0
        self.following = False
        principals.on_auth_change(self)

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
        self._grants.pop(key, None)

    # -- kept targets (module docstring) ----------------------------------------------------

    def invalidate(self) -> None:
        """Something that may change a decision's target happened: forget every kept target;
        targets being read now are not kept."""
        self._grants.clear()
        self.generation += 1

    def set_following(self, following: bool) -> None:
        self.invalidate()
        self.following = following

    def grant(self, key: _Key) -> object | None:
        """The target kept for ``key``'s live session, while it may be used; else None."""
        kept = self._grants.get(key)
        if kept is None:
            return None
        if self.following and self._live(key) and self._clock() - kept[1] <= self.fresh:
            return kept[0]
        del self._grants[key]
        return None

    def keep(self, key: _Key, target: object, generation: int) -> None:
        """Keep ``target``, read at ``generation``, for ``key``'s live session, unless
        something changed since it was read."""
        if self.following and generation == self.generation and self._live(key):
            self._grants[key] = (target, self._clock())

    def reuse(self, key: _Key) -> None:
        """A request decided on the kept target: it shares the session's entry."""
        self._touch(key)

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
        for key in [k for k in self._grants if k not in self._last]:
            del self._grants[key]
