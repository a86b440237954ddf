"""Coverage of enforcement steps by footage: the pure function, exhaustively and by example."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.config_events import DEFAULT_RECORDING_REQUIRED
from vault.errors import BadRequest
from vault.review.coverage import (
    Footage,
    Step,
    complement,
    coverage,
    merge,
    parse_steps,
    place,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


intervals = st.lists(
    st.tuples(st.integers(0, 120), st.integers(0, 120)).map(lambda t: (min(t), max(t))),
    max_size=12,
)
spans = st.tuples(st.integers(0, 100), st.integers(1, 60)).map(lambda t: (t[0], t[0] + t[1]))


def tiles(span: tuple[int, int], parts: list[tuple[int, int]]) -> bool:
    pos = span[0]
    for a, b in sorted(parts):
        if a != pos or b <= a:
            return False
        pos = b
    return pos == span[1]


@given(spans, intervals)
@settings(max_examples=400, deadline=None)
def test_covered_and_gaps_tile_the_span_exactly(span: tuple[int, int], ivs: list) -> None:
    clipped = [(max(a, span[0]), min(b, span[1])) for a, b in ivs]
    covered = merge(clipped)
    gaps = complement(span, covered)
    # covered + gaps = [start, end) with no overlap and no hole
    assert tiles(span, covered + gaps)
    # maximal: covered pieces never touch each other, nor do gaps
    for xs in (covered, gaps):
        for (_, b), (c, _) in pairwise(xs):
            assert b < c
    # pointwise: an instant is covered exactly when some interval covers it
    for t in range(span[0], span[1]):
        inside = any(a <= t < b for a, b in ivs)
        assert inside == any(a <= t < b for a, b in covered)
        assert inside != any(a <= t < b for a, b in gaps)


@given(spans, intervals, st.booleans())
@settings(max_examples=200, deadline=None)
def test_report_properties_hold_for_datetimes(
    span: tuple[int, int], ivs: list, match: bool
) -> None:
    step = Step("现场检查", at(span[0]), at(span[1]), "officer-a")
    pieces = [
        Footage(f"e{i}", at(a), at(b), "officer-a" if i % 2 else "officer-b")
        for i, (a, b) in enumerate(ivs)
    ]
    (sc,) = coverage([step], pieces, DEFAULT_RECORDING_REQUIRED, match_officer=match).steps
    parts = sorted(list(sc.covered) + list(sc.gaps))
    assert parts[0][0] == step.start and parts[-1][1] == step.end
    for (_, b), (c, _) in pairwise(parts):
        assert b == c
    for f in sc.footage:
        assert step.start <= f.start < f.end <= step.end
        assert not match or f.officer_id == "officer-a"
    assert sc.status == ("covered" if not sc.gaps else "partial" if sc.covered else "uncovered")


def test_overlapping_files_merge_and_gaps_are_named() -> None:
    steps = [
        Step("现场检查", at(0), at(60), "o1"),  # required, covered with one gap
        Step("听证", at(100), at(130)),  # required, nothing
        Step("内部讨论", at(200), at(210)),  # not required, nothing
        Step("送达", at(300), at(310)),  # required, fully covered by two devices
    ]
    footage = [
        Footage("a", at(-5), at(20), "o1"),
        Footage("b", at(15), at(30), "o2"),  # overlaps a
        Footage("c", at(40), at(70), "o1"),
        Footage("d", at(300), at(305), "o1"),
        Footage("e", at(305), at(311), "o2"),  # touches d: no gap
    ]
    report = coverage(steps, footage, DEFAULT_RECORDING_REQUIRED)
    first = report.steps[0]
    assert first.covered == ((at(0), at(30)), (at(40), at(60)))
    assert first.gaps == ((at(30), at(40)),)
    assert [f.evidence_id for f in first.footage] == ["a", "b", "c"]
    assert first.footage[0].start == at(0) and first.footage[2].end == at(60)
    assert first.status == "partial"
    assert report.steps[1].status == "uncovered" and report.steps[1].gaps == ((at(100), at(130)),)
    assert not report.steps[2].requires_recording
    assert report.steps[3].status == "covered" and report.steps[3].covered == ((at(300), at(310)),)
    assert report.lacking_footage == (1,)
    assert report.incomplete == (0,)


def test_matching_by_officer_uses_only_their_footage() -> None:
    step = Step("调查取证", at(0), at(10), "o1")
    footage = [Footage("mine", at(0), at(4), "o1"), Footage("theirs", at(4), at(10), "o2")]
    loose = coverage([step], footage, DEFAULT_RECORDING_REQUIRED).steps[0]
    assert loose.status == "covered"
    strict = coverage([step], footage, DEFAULT_RECORDING_REQUIRED, match_officer=True).steps[0]
    assert strict.status == "partial" and strict.gaps == ((at(4), at(10)),)
    # a step that names no officer takes anyone's footage even when matching
    anyone = Step("调查取证", at(0), at(10))
    assert coverage([anyone], footage, (), match_officer=True).steps[0].status == "covered"


def test_placing_footage_needs_a_start_and_a_positive_integer_duration() -> None:
    assert place("x", at(0), 90_000, "o").end == at(1.5)  # type: ignore[union-attr]
    assert place("x", None, 1000, None) is None
    assert place("x", at(0), None, None) is None
    assert place("x", at(0), 0, None) is None
    assert place("x", at(0), 1.5, None) is None
    assert place("x", at(0), True, None) is None
    assert place("x", datetime(2026, 1, 1), 1000, None) is None  # naive: unknown zone


def test_parse_steps_accepts_offsets_and_refuses_what_is_wrong() -> None:
    steps, match = parse_steps(
        {
            "steps": [
                {
                    "type": "现场检查",
                    "start": "2026-03-01T17:00:00+08:00",
                    "end": "2026-03-01T09:30:00Z",
                }
            ],
            "match_officer": True,
        }
    )
    assert match and steps[0].start == at(0) and steps[0].end == at(30) and steps[0].officer is None
    bad = [
        [],
        {"steps": []},
        {"steps": [{"type": "x", "start": "2026-03-01T09:00:00", "end": "2026-03-01T10:00:00Z"}]},
        {"steps": [{"type": "x", "start": "2026-03-01T10:00:00Z", "end": "2026-03-01T10:00:00Z"}]},
        {"steps": [{"type": "", "start": "2026-03-01T09:00:00Z", "end": "2026-03-01T10:00:00Z"}]},
        {"steps": [{"type": "x", "start": "yesterday", "end": "2026-03-01T10:00:00Z"}]},
        {"steps": [{"type": "x", "start": 1, "end": "2026-03-01T10:00:00Z"}]},
        {
            "steps": [
                {
                    "type": "x",
                    "start": "2026-03-01T09:00:00Z",
                    "end": "2026-03-01T10:00:00Z",
                    "where": "x",
                }
            ]
        },
        {
            "steps": [
                {"type": "x", "start": "2026-03-01T09:00:00Z", "end": "2026-03-01T10:00:00Z"}
            ],
            "match_officer": 1,
        },
        {
            "steps": [
                {"type": "x", "start": "2026-03-01T09:00:00Z", "end": "2026-03-01T10:00:00Z"}
            ],
            "x": 1,
        },
        {
            "steps": [{"type": "x", "start": "2026-03-01T09:00:00Z", "end": "2026-03-01T10:00:00Z"}]
            * 1001
        },
    ]
    bad.append(
        {
            "steps": [
                {"type": "\ud800", "start": "2026-03-01T09:00:00Z", "end": "2026-03-01T10:00:00Z"}
            ]
        }
    )
    for body in bad:
        with pytest.raises(BadRequest):
            parse_steps(body)
