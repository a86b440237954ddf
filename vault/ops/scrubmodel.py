"""Scrub's configuration, read pacing and run summary (see :mod:`vault.ops.scrub` for the run).

Guarantees:

- :class:`ScrubConfig` (defined in :mod:`vault.config`) is the ``[scrub]`` section.
- :class:`RateLimiter` is a token bucket over bytes: after ``n`` bytes at least ``n / rate``
  seconds have passed since it was made, less at most ``burst_s`` of credit saved while idle.
- :meth:`ScrubReport.entry_fields` holds only ids, hashes, counts, booleans and fixed words
  (canonical JSON, never classified plaintext nor free text): at most :data:`MAX_LISTED`
  evidence ids over all its lists together and at most :data:`MAX_OBJECTS_LISTED` failing
  objects, each list with its exact count beside it, so a ``scrub`` entry stays below the
  65,535-byte limit whatever the number of findings (a test builds the largest one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vault.config import ScrubConfig

__all__ = [
    "MAX_LISTED",
    "MAX_OBJECTS_LISTED",
    "MIB",
    "Finding",
    "Mode",
    "RateLimiter",
    "ScrubConfig",
    "ScrubReport",
]

MIB = 1 << 20
MAX_LISTED = 1000  # evidence ids in a scrub entry, all lists together
MAX_OBJECTS_LISTED = 64  # failing objects named in a scrub entry
Mode = Literal["full", "sample"]


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
            await asyncio.sleep(self._t - now)


@dataclass(frozen=True)
class Finding:
    """One object that did not verify: whose (evidence id), which (``original`` or the
    rendition kind, and the rendition id), its recorded SHA-256, the status (``missing``,
    ``mismatch`` or ``unreadable``) and the store's reason (logs, events and output only: the
    ledger entry holds no free text)."""

    evidence_id: str
    object: str
    sha256: str
    status: str
    reason: str = ""
    rendition_id: str | None = None

    def fields(self, *, reason: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "evidence_id": self.evidence_id,
            "object": self.object,
            "sha256": self.sha256,
            "status": self.status,
        }
        if self.rendition_id is not None:
            out["rendition_id"] = self.rendition_id
        if reason and self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class ScrubReport:
    """One run's summary; ``ok`` only when no object failed and fsck (if run) passed, the
    ledger's checks and the comparison of the tables with the ledger (``fsck --state``)."""

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
    findings: list[Finding] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    fsck_ok: bool | None = None
    fsck_size: int = 0
    fsck_first_bad_index: int | None = None
    fsck_problems: list[str] = field(default_factory=list)
    state_findings: list[str] = field(default_factory=list)  # fsck --state, one line each
    duration_ms: int = 0
    ledger_index: int | None = None

    def add(self, failed: Sequence[Finding]) -> None:
        """Record one item's failing objects: the findings, and the item's id in the list of
        each status among them."""
        findings = list(failed)
        self.findings.extend(findings)
        lists = {"missing": self.missing, "mismatch": self.mismatch, "unreadable": self.unreadable}
        for status in dict.fromkeys(f.status for f in findings):
            lists[status].append(findings[0].evidence_id)

    @property
    def ok(self) -> bool:
        return (
            not (self.missing or self.mismatch or self.unreadable)
            and self.fsck_ok is not False
            and not self.state_findings
        )

    def entry_fields(self, rate: float) -> dict[str, Any]:
        """Public fields of the ``scrub`` entry (ids, counts and hashes only)."""

        budget = MAX_LISTED

        def listed(ids: list[str]) -> dict[str, Any]:
            nonlocal budget
            shown = sorted(ids)[:budget]
            budget -= len(shown)
            return {"count": len(ids), "evidence": shown}

        objects = sorted(self.findings, key=lambda f: (f.evidence_id, f.object, f.sha256))
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
            "failed": {
                "count": len(objects),
                "objects": [f.fields(reason=False) for f in objects[:MAX_OBJECTS_LISTED]],
            },
        }
        if self.fsck_ok is not None:
            fsck_fields: dict[str, Any] = {
                "ok": self.fsck_ok,
                "size": self.fsck_size,
                "problems": len(self.fsck_problems),
            }
            if self.fsck_first_bad_index is not None:
                fsck_fields["first_bad_index"] = self.fsck_first_bad_index
            fsck_fields["state_findings"] = len(self.state_findings)
            out["fsck"] = fsck_fields
        return out
