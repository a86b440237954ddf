"""Publication-safe yearly statistics for the publicity module (公示). Numbers only.

What is counted for calendar year ``Y`` in the configured time zone (``[publicity] timezone``):

- ``recordings``: evidence items (distinct originals) whose recording started in ``Y`` — the
  ``recorded_at`` from the station, or the time of acquisition where the start is unknown —
  including items disposed of since (they were recorded);
- ``footage_seconds`` / ``footage_hours``: the summed probed duration of those recordings (whole
  seconds; hours with two decimals); ``recordings_without_duration`` counts those whose duration
  is unknown (not probed, not media), so the total is known to be a lower bound when it is not 0;
- ``cases_with_footage``: cases with at least one of those recordings currently linked;
- ``verifications``: ``accessed`` ledger entries with action ``verify`` appended in ``Y``
  (integrity checks by reviewers, legal reviewers, auditors and integrity reports);
- ``denials``: ``denied`` ledger entries appended in ``Y`` (refused access of any kind).

Guarantees: the result holds integers (and one two-decimal number) and the year, nothing else:
no id, name, officer, device, dock, place, label or case appears, and nothing is broken down
by any of them. Counts are over everything in the vault, not filtered by the caller's access
(the caller learns totals only). Small counts are not suppressed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vault.access.filters import CURRENT_LINKS
from vault.db import Db
from vault.errors import BadRequest, ConfigError

__all__ = ["FIRST_YEAR", "LAST_YEAR", "YearStatistics", "year_bounds", "year_statistics"]

FIRST_YEAR = 2000
LAST_YEAR = 2999


@dataclass(frozen=True)
class YearStatistics:
    year: int
    recordings: int
    recordings_without_duration: int
    footage_seconds: int
    footage_hours: float
    cases_with_footage: int
    verifications: int
    denials: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def year_bounds(year: int, timezone: str) -> tuple[datetime, datetime]:
    """``[1 January Y, 1 January Y+1)`` in ``timezone``; BadRequest for a year out of range."""
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise BadRequest(f"year must be between {FIRST_YEAR} and {LAST_YEAR}")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"publicity.timezone {timezone!r} is not a known time zone") from exc
    return datetime(year, 1, 1, tzinfo=zone), datetime(year + 1, 1, 1, tzinfo=zone)


_RECORDINGS = f"""
WITH rec AS (
    SELECT e.id, (e.probe ->> 'duration_ms') AS ms FROM evidence e
    WHERE coalesce(e.recorded_at, e.acquired_at) >= $1
      AND coalesce(e.recorded_at, e.acquired_at) < $2
)
SELECT
    (SELECT count(*) FROM rec) AS recordings,
    (SELECT count(*) FROM rec WHERE ms IS NULL OR ms !~ '^[0-9]{{1,15}}$') AS no_duration,
    (SELECT coalesce(sum(ms::bigint), 0) FROM rec WHERE ms ~ '^[0-9]{{1,15}}$') AS total_ms,
    (SELECT count(DISTINCT l.case_id) FROM ({CURRENT_LINKS}) l JOIN rec ON rec.id = l.evidence_id)
        AS cases
"""  # noqa: S608 - CURRENT_LINKS is a constant subquery

_LEDGER = """
SELECT
    count(*) FILTER (WHERE kind = 'accessed'
        AND convert_from(data, 'UTF8')::jsonb ->> 'action' = 'verify') AS verifications,
    count(*) FILTER (WHERE kind = 'denied') AS denials
FROM ledger_entries
WHERE kind IN ('accessed', 'denied') AND created_at >= $1 AND created_at < $2
"""


async def year_statistics(db: Db, year: int, timezone: str) -> YearStatistics:
    """The statistics of ``year`` (see the module docstring for what is counted)."""
    start, end = year_bounds(year, timezone)
    rec = await db.fetchrow(_RECORDINGS, start, end)
    led = await db.fetchrow(_LEDGER, start, end)
    assert rec is not None and led is not None
    total_ms = int(rec["total_ms"])
    return YearStatistics(
        year=year,
        recordings=int(rec["recordings"]),
        recordings_without_duration=int(rec["no_duration"]),
        footage_seconds=total_ms // 1000,
        footage_hours=round(total_ms / 3_600_000, 2),
        cases_with_footage=int(rec["cases"]),
        verifications=int(led["verifications"]),
        denials=int(led["denials"]),
    )
