"""The scrub scheduler: inside a long-running process, run whichever scrub pass is due.

Guarantees:

- Every ``check_seconds`` (and once at start) it asks :func:`vault.ops.scrub.run_due` to run the
  pass that is due (objects re-hashed, ledger fsck and ``fsck --state``) — a full pass every
  ``full_interval_hours``, a random sample every ``sample_interval_hours`` — as recorded in
  the ledger, so restarts and other processes share one schedule, and the advisory lock makes
  exactly one process run a due pass.
- At every check it also runs ``housekeeping`` if given (the service: deleting superseded plain
  versions whose Object Lock expired, ``vault.storage.superseded``); a failure there is logged
  and tried again at the next check, like a pass.
- A pass that fails (database or storage unavailable, another process holding the lock) is
  logged and tried again at the next check; only :meth:`ScrubScheduler.stop` ends the loop,
  cancelling a pass in progress between two reads (its summary is then not recorded; marks
  already committed stay).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from vault.background import Background
from vault.errors import EvaultError
from vault.ledger import Ledger
from vault.ops.scrub import ScrubBusy, run_due
from vault.ops.scrubmodel import ScrubConfig, ScrubReport
from vault.storage.content import ContentStore

__all__ = ["ScrubScheduler"]

log = logging.getLogger("evault.scrub")

_RETRYABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError, EvaultError)


class ScrubScheduler:
    """Runs due scrub passes in the background (see module)."""

    def __init__(
        self,
        ledger: Ledger,
        content: ContentStore,
        cfg: ScrubConfig,
        *,
        housekeeping: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._ledger = ledger
        self._content = content
        self._cfg = cfg
        self._housekeeping = housekeeping
        self._background = Background(self._loop, "scrub-scheduler")
        self.last: ScrubReport | None = None

    def start(self) -> None:
        self._background.start()

    def alive(self) -> bool:
        return self._background.alive()

    async def stop(self) -> None:
        await self._background.stop()

    async def tick(self) -> ScrubReport | None:
        """Run the due pass, if any; the report, or None (nothing due, or busy elsewhere)."""
        try:
            report = await run_due(self._ledger, self._content, self._cfg)
        except ScrubBusy:
            return None
        if report is not None:
            self.last = report
            level = logging.INFO if report.ok else logging.ERROR
            log.log(
                level,
                "scrub %s pass: %d objects, %d bytes, %d failed, fsck %s,"
                " fsck --state %d findings (ledger entry %s)",
                report.mode,
                report.objects,
                report.bytes,
                report.failed_objects,
                {None: "not run", True: "ok", False: "FAILED"}[report.fsck_ok],
                len(report.state_findings),
                report.ledger_index,
            )
        return report

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except _RETRYABLE as exc:
                log.warning("scrub pass failed, will retry: %s", exc)
            if self._housekeeping is not None:
                try:
                    await self._housekeeping()
                except _RETRYABLE as exc:
                    log.warning("storage housekeeping failed, will retry: %s", exc)
            await asyncio.sleep(self._cfg.check_seconds)
