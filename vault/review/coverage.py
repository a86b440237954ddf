"""Coverage of enforcement steps by footage, for the legal-review module (法制审核). PURE.

A step (type, start, end, optionally the officer) is the half-open interval ``[start, end)``.
A piece of footage covers ``[recorded_at, recorded_at + duration)``. Pieces are merged across
files (two recorders filming at once cover the time once).

Guarantees of :func:`coverage`, for every step:

- ``covered`` and ``gaps`` are sorted, pairwise disjoint, non-empty, maximal intervals (no two
  touch), and together they tile the step exactly: their union is ``[start, end)``.
- An instant of the step is in ``covered`` exactly when some usable piece of footage covers it;
  with ``match_officer`` and a step that names an officer, only that officer's footage is usable.
- ``footage`` lists each usable piece that overlaps the step, clipped to the step.
- ``status`` is ``covered`` (no gap), ``partial`` or ``uncovered`` (no footage at all).
- ``requires_recording`` is whether the step's type is in the configured list; the report's
  ``lacking_footage`` names (by index) every such step with no footage at all, and
  ``incomplete`` every such step with footage and gaps.

No I/O, no clock, no state: times are compared exactly (microseconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from vault.errors import BadRequest

__all__ = [
    "MAX_STEPS",
    "CoverageReport",
    "Footage",
    "Step",
    "StepCoverage",
    "complement",
    "coverage",
    "merge",
    "parse_steps",
    "place",
]

MAX_STEPS = 1000
MAX_TEXT = 128
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Interval = tuple[int, int]
Status = Literal["covered", "partial", "uncovered"]


@dataclass(frozen=True)
class Step:
    """One enforcement step of a case, as the case system describes it."""

    type: str
    start: datetime
    end: datetime
    officer: str | None = None


@dataclass(frozen=True)
class Footage:
    """One recording placed in time: ``[start, end)``, by the recording officer (if known)."""

    evidence_id: str
    start: datetime
    end: datetime
    officer_id: str | None = None


@dataclass(frozen=True)
class StepCoverage:
    """How one step is covered (see the module docstring)."""

    index: int
    step: Step
    requires_recording: bool
    footage: tuple[Footage, ...]
    covered: tuple[tuple[datetime, datetime], ...]
    gaps: tuple[tuple[datetime, datetime], ...]
    status: Status


@dataclass(frozen=True)
class CoverageReport:
    steps: tuple[StepCoverage, ...]
    lacking_footage: tuple[int, ...]
    incomplete: tuple[int, ...]


def _us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of half-open intervals as sorted, disjoint, non-touching, non-empty ones."""
    out: list[Interval] = []
    for a, b in sorted(i for i in intervals if i[0] < i[1]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def complement(span: Interval, merged: Sequence[Interval]) -> list[Interval]:
    """The parts of ``span`` outside ``merged`` (sorted, disjoint, inside ``span``)."""
    start, end = span
    gaps: list[Interval] = []
    pos = start
    for a, b in merged:
        if a > pos:
            gaps.append((pos, min(a, end)))
        pos = max(pos, b)
        if pos >= end:
            break
    if pos < end:
        gaps.append((pos, end))
    return [g for g in gaps if g[0] < g[1]]


def place(
    evidence_id: str, recorded_at: datetime | None, duration_ms: object, officer_id: str | None
) -> Footage | None:
    """A recording placed in time, or None when its start or a positive integer duration (in
    milliseconds, from the probe) is unknown: such footage cannot be said to cover anything."""
    if recorded_at is None or recorded_at.tzinfo is None:
        return None
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int) or duration_ms <= 0:
        return None
    start = recorded_at.astimezone(UTC)
    return Footage(evidence_id, start, start + timedelta(milliseconds=duration_ms), officer_id)


def _usable(step: Step, piece: Footage, match_officer: bool) -> bool:
    return not (match_officer and step.officer is not None and piece.officer_id != step.officer)


def coverage(
    steps: Sequence[Step],
    footage: Iterable[Footage],
    required_types: Iterable[str],
    *,
    match_officer: bool = False,
) -> CoverageReport:
    """Coverage of each step by ``footage`` (see the module docstring)."""
    required = frozenset(required_types)
    pieces = sorted(footage, key=lambda f: (_us(f.start), _us(f.end), f.evidence_id))
    results: list[StepCoverage] = []
    for index, step in enumerate(steps):
        span = (_us(step.start), _us(step.end))
        used: list[Footage] = []
        clipped: list[Interval] = []
        for piece in pieces:
            a, b = max(_us(piece.start), span[0]), min(_us(piece.end), span[1])
            if a < b and _usable(step, piece, match_officer):
                used.append(Footage(piece.evidence_id, _dt(a), _dt(b), piece.officer_id))
                clipped.append((a, b))
        covered = merge(clipped)
        gaps = complement(span, covered)
        status: Status = "covered" if not gaps else "partial" if covered else "uncovered"
        results.append(
            StepCoverage(
                index=index,
                step=step,
                requires_recording=step.type in required,
                footage=tuple(used),
                covered=tuple((_dt(a), _dt(b)) for a, b in covered),
                gaps=tuple((_dt(a), _dt(b)) for a, b in gaps),
                status=status,
            )
        )
    return CoverageReport(
        steps=tuple(results),
        lacking_footage=tuple(
            r.index for r in results if r.requires_recording and r.status == "uncovered"
        ),
        incomplete=tuple(
            r.index for r in results if r.requires_recording and r.status == "partial"
        ),
    )


def _time(value: object, where: str) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise BadRequest(f"{where}: expected an RFC 3339 date-time string")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{where}: not an RFC 3339 date-time") from None
    if t.tzinfo is None:
        raise BadRequest(f"{where}: the time zone is missing (add Z or an offset)")
    try:
        return t.astimezone(UTC)
    except OverflowError:
        raise BadRequest(f"{where}: out of range") from None


def _text(value: object, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        raise BadRequest(f"{where}: expected a string of 1 to {MAX_TEXT} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{where}: not valid Unicode (a lone surrogate)") from None
    return value


def parse_steps(body: object) -> tuple[list[Step], bool]:
    """The steps and ``match_officer`` of a request body ``{"steps": [...], "match_officer":
    bool}``; BadRequest naming the first field that is wrong."""
    if not isinstance(body, Mapping):
        raise BadRequest("the body must be a JSON object with a steps array")
    unknown = sorted(set(body) - {"steps", "match_officer"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r} (known: steps, match_officer)")
    match = body.get("match_officer", False)
    if not isinstance(match, bool):
        raise BadRequest("match_officer: expected true or false")
    raw = body.get("steps")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_STEPS:
        raise BadRequest(f"steps: expected an array of 1 to {MAX_STEPS} steps")
    return [_step(item, f"steps[{i}]") for i, item in enumerate(raw)], match


def _step(item: Any, where: str) -> Step:
    if not isinstance(item, Mapping):
        raise BadRequest(f"{where}: expected an object")
    unknown = sorted(set(item) - {"type", "start", "end", "officer"})
    if unknown:
        raise BadRequest(f"{where}: unknown field {unknown[0]!r}")
    kind = _text(item.get("type"), f"{where}.type")
    start = _time(item.get("start"), f"{where}.start")
    end = _time(item.get("end"), f"{where}.end")
    if end <= start:
        raise BadRequest(f"{where}: end must be after start")
    officer = _text(item.get("officer"), f"{where}.officer", optional=True)
    assert kind is not None
    return Step(kind, start, end, officer)
