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

The database is not trusted (DESIGN §7): recordings are counted from evidence rows whose tag
verifies (``vault.evidence``; one that does not is left out and raises the alarm), and cases
from their verified link state (``visibility.link_state``): a row inserted, edited or linked in
the database changes no count. The duration is working state (the probe), not bound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vault import evidence as evrows
from vault.access import state as access_state
from vault.access.filters import link_state
from vault.db import Db
from vault.errors import BadRequest, ConfigError
from vault.keys.hostmac import HostMac

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


_PAGE = 5000
_RECORDINGS = f"""
SELECT {evrows.evidence_columns()}, (e.probe ->> 'duration_ms') AS ms FROM evidence e
WHERE coalesce(e.recorded_at, e.acquired_at) >= $1 AND coalesce(e.recorded_at, e.acquired_at) < $2
  AND e.id > $3 ORDER BY e.id LIMIT {_PAGE}
"""  # noqa: S608 - constant column names
_NO_ID = "00000000-0000-0000-0000-000000000000"


def _ms(value: object) -> int | None:
    text = value if isinstance(value, str) else ""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 15 else None


async def _recordings(
    db: Db, mac: HostMac, start: datetime, end: datetime
) -> tuple[int, int, int, int]:
    """(recordings, without duration, total ms, cases) over verified rows, in pages by id."""
    count = no_duration = total_ms = 0
    cases: set[str] = set()
    after: object = _NO_ID
    while True:
        rows = await db.fetch(_RECORDINGS, start, end, after)
        if not rows:
            break
        after = rows[-1]["id"]
        good = await evrows.check_page(db, mac, rows)
        links, _bad = await link_state(db, [r["id"] for r in good])
        for r in good:
            if r["id"] not in links:
                continue  # a link row of it does not verify: left out (alarm raised)
            count += 1
            ms = _ms(r["ms"])
            if ms is None:
                no_duration += 1
            else:
                total_ms += ms
            cases.update(links[r["id"]])
        if len(rows) < _PAGE:
            break
    return count, no_duration, total_ms, len(cases)


_LEDGER = """
SELECT
    count(*) FILTER (WHERE kind = 'accessed'
        AND convert_from(data, 'UTF8')::jsonb ->> 'action' = 'verify') AS verifications,
    count(*) FILTER (WHERE kind = 'denied') AS denials
FROM ledger_entries
WHERE kind IN ('accessed', 'denied') AND created_at >= $1 AND created_at < $2
"""


async def year_statistics(
    db: Db, year: int, timezone: str, *, mac: HostMac | None = None
) -> YearStatistics:
    """The statistics of ``year`` (see the module docstring for what is counted). ``mac``: the
    host key (by default the installed access state's)."""
    start, end = year_bounds(year, timezone)
    key = mac if mac is not None else access_state.current().mac
    recordings, no_duration, total_ms, cases = await _recordings(db, key, start, end)
    led = await db.fetchrow(_LEDGER, start, end)
    assert led is not None
    return YearStatistics(
        year=year,
        recordings=recordings,
        recordings_without_duration=no_duration,
        footage_seconds=total_ms // 1000,
        footage_hours=round(total_ms / 3_600_000, 2),
        cases_with_footage=cases,
        verifications=int(led["verifications"]),
        denials=int(led["denials"]),
    )
