"""Retention planning: every branch, and the property that held or linked items are never lost."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault.errors import ConfigError
from vault.ops.retention import (
    Disposition,
    RetentionItem,
    RetentionPolicy,
    expires_at,
    plan,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
POLICY = RetentionPolicy()


def item(
    evidence_id: str = "e1",
    age_days: float = 400,
    category: str = "ordinary",
    case_count: int = 0,
    on_hold: bool = False,
    disposed: bool = False,
) -> RetentionItem:
    return RetentionItem(
        evidence_id=evidence_id,
        acquired_at=NOW - timedelta(days=age_days),
        category=category,  # type: ignore[arg-type]
        case_count=case_count,
        on_hold=on_hold,
        disposed=disposed,
    )


def one(it: RetentionItem, policy: RetentionPolicy = POLICY) -> Disposition:
    [d] = plan([it], policy, NOW)
    assert d.evidence_id == it.evidence_id
    return d


def test_default_policy_is_six_months_and_important_is_permanent() -> None:
    assert POLICY.ordinary_days == 183
    assert POLICY.important_days is None


def test_ordinary_past_period_is_disposed() -> None:
    d = one(item(age_days=183))
    assert d.action == "dispose"
    assert d.reason == "ordinary retention ended 2026-05-01"


def test_ordinary_within_period_is_kept_until_date() -> None:
    d = one(item(age_days=182.5))
    assert d == Disposition("e1", "keep", "retained until 2026-05-02")


def test_boundary_is_exact_to_the_instant() -> None:
    assert one(item(age_days=183)).action == "dispose"
    just_before = item(age_days=183 - 1 / 86_400)
    assert one(just_before).action == "keep"


def test_linked_to_cases_is_kept() -> None:
    assert one(item(case_count=2)) == Disposition("e1", "keep", "linked to 2 cases")
    assert one(item(case_count=1)) == Disposition("e1", "keep", "linked to 1 case")


def test_legal_hold_is_kept() -> None:
    assert one(item(on_hold=True)) == Disposition("e1", "keep", "legal hold")


def test_important_is_permanent_by_default() -> None:
    d = one(item(category="important", age_days=100_000))
    assert d == Disposition("e1", "keep", "permanent: important")


def test_important_with_a_period_expires() -> None:
    policy = RetentionPolicy(ordinary_days=183, important_days=3650)
    assert one(item(category="important", age_days=3650), policy).action == "dispose"
    kept = one(item(category="important", age_days=400), policy)
    assert kept.action == "keep"
    assert kept.reason.startswith("retained until ")


def test_already_disposed_is_not_disposed_again() -> None:
    d = one(item(disposed=True, on_hold=True, case_count=3))
    assert d == Disposition("e1", "keep", "already disposed")


def test_every_reason_is_named() -> None:
    d = one(item(age_days=10, case_count=2, on_hold=True))
    assert d.reason == "legal hold; linked to 2 cases; retained until 2026-10-21"
    d = one(item(category="important", case_count=1, on_hold=True))
    assert d.reason == "legal hold; linked to 1 case; permanent: important"


def test_retained_until_date_is_utc() -> None:
    east8 = timezone(timedelta(hours=8))
    acquired = datetime(2026, 1, 1, 3, 0, tzinfo=east8)  # 2025-12-31T19:00Z
    it = RetentionItem("e1", acquired, "ordinary", 0, False, False)
    assert expires_at(it, POLICY) == acquired + timedelta(days=183)
    [d] = plan([it], POLICY, datetime(2026, 1, 2, tzinfo=UTC))
    assert d.reason == "retained until 2026-07-02"


def test_plan_keeps_order_and_length() -> None:
    items = [item("a"), item("b", case_count=1), item("c", age_days=1)]
    assert [(d.evidence_id, d.action) for d in plan(items, POLICY, NOW)] == [
        ("a", "dispose"),
        ("b", "keep"),
        ("c", "keep"),
    ]
    assert plan([], POLICY, NOW) == []


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan([item()], POLICY, datetime(2026, 5, 1))
    naive = RetentionItem("e1", datetime(2026, 1, 1), "ordinary", 0, False, False)
    with pytest.raises(ValueError, match="timezone-aware"):
        plan([naive], POLICY, NOW)
    with pytest.raises(ValueError, match="twice"):
        plan([item("a"), item("a")], POLICY, NOW)
    with pytest.raises(ValueError, match="negative"):
        plan([item(case_count=-1)], POLICY, NOW)
    with pytest.raises(ValueError, match="category"):
        plan([item(category="trivial")], POLICY, NOW)


def test_policy_validation() -> None:
    with pytest.raises(ConfigError):
        RetentionPolicy(ordinary_days=0)
    with pytest.raises(ConfigError):
        RetentionPolicy(ordinary_days=183, important_days=30)
    assert RetentionPolicy(ordinary_days=30, important_days=30).days_for("important") == 30


items_st = st.lists(
    st.builds(
        RetentionItem,
        evidence_id=st.just(""),
        acquired_at=st.datetimes(
            min_value=datetime(2015, 1, 1),
            max_value=datetime(2030, 1, 1),
            timezones=st.just(UTC),
        ),
        category=st.sampled_from(["ordinary", "important"]),
        case_count=st.integers(min_value=0, max_value=3),
        on_hold=st.booleans(),
        disposed=st.booleans(),
    ),
    max_size=8,
).map(lambda xs: [replace(x, evidence_id=str(i)) for i, x in enumerate(xs)])
policy_st = st.builds(
    RetentionPolicy,
    ordinary_days=st.integers(min_value=1, max_value=4000),
    important_days=st.one_of(st.none(), st.integers(min_value=4000, max_value=8000)),
)


@given(items_st, policy_st)
def test_never_disposes_what_must_be_kept(
    items: list[RetentionItem], policy: RetentionPolicy
) -> None:
    result = plan(items, policy, NOW)
    assert [d.evidence_id for d in result] == [i.evidence_id for i in items]
    for it, d in zip(items, result, strict=True):
        assert d.reason
        if d.action == "dispose":
            assert it.case_count == 0
            assert not it.on_hold
            assert not it.disposed
            end = expires_at(it, policy)
            assert end is not None and end <= NOW
        else:
            must_keep = (
                it.disposed
                or it.on_hold
                or it.case_count > 0
                or policy.days_for(it.category) is None
                or it.acquired_at + timedelta(days=policy.days_for(it.category) or 0) > NOW
            )
            assert must_keep, (it, d)
