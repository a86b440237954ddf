"""Scrub's configuration, read pacing and run summary (see :mod:`vault.scrub` for the run).

Guarantees:

- :class:`ScrubConfig` is the ``[scrub]`` section; every key documented and bounded.
- :class:`RateLimiter` is a token bucket over bytes: after ``n`` bytes at least ``n / rate``
  seconds have passed since it was made, less at most ``burst_s`` of credit saved while idle.
- :meth:`ScrubReport.entry_fields` holds only ids, counts, booleans and strings (canonical
  JSON, never classified plaintext), and at most :data:`MAX_LISTED` ids per list with the exact
  count beside them, so a ``scrub`` entry stays far below the 65,535-byte limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from vault.settings import setting

__all__ = ["MAX_LISTED", "MIB", "Mode", "RateLimiter", "ScrubConfig", "ScrubReport"]

MIB = 1 << 20
MAX_LISTED = 1000
Mode = Literal["full", "sample"]


@dataclass(frozen=True)
class ScrubConfig:
    """[scrub]: re-hashing stored objects and running the ledger fsck on a schedule."""

    enabled: bool = setting(
        True,
        "Run scheduled scrubs inside `evault serve` (processes running the media part; one "
        "process at a time runs a pass).",
    )
    full_interval_hours: float = setting(
        168.0,
        "Hours between full passes over every object; 0: no scheduled full pass.",
        minimum=0.0,
    )
    sample_interval_hours: float = setting(
        24.0,
        "Hours between random-sample passes (a full pass counts as one); 0: none scheduled.",
        minimum=0.0,
    )
    sample_fraction: float = setting(
        0.01, "Share of evidence items checked by a sample pass.", minimum=0.0, maximum=1.0
    )
    sample_size: int = setting(
        100, "Least number of evidence items checked by a sample pass.", minimum=0
    )
    rate_mb_s: float = setting(
        50.0,
        "Read rate limit in MiB/s (all objects of a pass together); 0: unlimited.",
        minimum=0.0,
    )
    fsck: bool = setting(True, "Run the ledger fsck in every pass.")
    check_seconds: float = setting(
        300.0, "How often the scheduler looks whether a pass is due.", minimum=1.0, maximum=86400.0
    )

    def sample_count(self, total: int) -> int:
        """Items a sample pass checks out of ``total``."""
        return min(total, max(self.sample_size, math.ceil(self.sample_fraction * total)))


class RateLimiter:
    """Token bucket over bytes; ``rate`` bytes/s, 0 or less: unlimited (see module)."""

    def __init__(
        self,
        rate: float,
        *,
        burst_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self._burst = burst_s
        self._clock = clock
        self._t = clock()

    async def consume(self, n: int) -> None:
        """Account ``n`` bytes just read; sleep until the pace allows them."""
        if self.rate <= 0:
            return
        now = self._clock()
        self._t = max(self._t, now - self._burst) + n / self.rate
        if self._t > now:
            import asyncio  # here, not at the top: the config (and every CLI start) imports this

            await asyncio.sleep(self._t - now)


@dataclass
class ScrubReport:
    """One run's summary; ``ok`` only when no object failed and fsck (if run) passed."""

    mode: Mode
    trigger: str
    started: str = ""
    evidence: int = 0
    objects: int = 0
    bytes: int = 0
    objects_ok: int = 0
    missing: list[str] = field(default_factory=list)
    mismatch: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    failed_objects: int = 0
    restored: list[str] = field(default_factory=list)
    fsck_ok: bool | None = None
    fsck_size: int = 0
    fsck_first_bad_index: int | None = None
    fsck_problems: list[str] = field(default_factory=list)
    duration_ms: int = 0
    ledger_index: int | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatch or self.unreadable) and self.fsck_ok is not False

    def entry_fields(self, rate: float) -> dict[str, Any]:
        """Public fields of the ``scrub`` entry (ids, counts and hashes only)."""

        def listed(ids: list[str]) -> dict[str, Any]:
            return {"count": len(ids), "evidence": sorted(ids)[:MAX_LISTED]}

        out: dict[str, Any] = {
            "mode": self.mode,
            "trigger": self.trigger,
            "started": self.started,
            "duration_ms": self.duration_ms,
            "evidence_checked": self.evidence,
            "objects": self.objects,
            "objects_ok": self.objects_ok,
            "objects_failed": self.failed_objects,
            "bytes": self.bytes,
            "rate_limit_bytes_per_s": int(rate),
            "missing": listed(self.missing),
            "mismatch": listed(self.mismatch),
            "unreadable": listed(self.unreadable),
            "restored": listed(self.restored),
        }
        if self.fsck_ok is not None:
            fsck_fields: dict[str, Any] = {
                "ok": self.fsck_ok,
                "size": self.fsck_size,
                "problems": len(self.fsck_problems),
            }
            if self.fsck_first_bad_index is not None:
                fsck_fields["first_bad_index"] = self.fsck_first_bad_index
            out["fsck"] = fsck_fields
        return out
