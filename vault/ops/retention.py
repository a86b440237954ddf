"""Retention: which evidence may be disposed of now, and why everything else is kept.

``plan(items, policy, now)`` returns one ``Disposition`` per item, in input order. Guarantees:

- ``dispose`` only when ALL hold: not already disposed, no legal hold, linked to no case, not
  permanent (an ``important`` item under a policy with ``important_days=None``), and its
  retention period is over (``now >= acquired_at + period``).
- Every ``keep`` carries a non-empty reason naming every rule that keeps it, in this order:
  ``"already disposed"`` (alone), ``"legal hold"``, ``"linked to N case(s)"``,
  ``"permanent: important"``, ``"retained until YYYY-MM-DD"`` (UTC date the period ends).
- Times must be timezone-aware; the decision is exact to the instant, the text gives the date.

Pure: no I/O, no clock (``now`` is passed in), no state. Carrying out a plan (ledger
``retention``/``disposed`` entries, deletion) is the caller's job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from vault.errors import ConfigError

__all__ = ["Disposition", "RetentionItem", "RetentionPolicy", "expires_at", "plan"]

Category = Literal["ordinary", "important"]
DispositionAction = Literal["dispose", "keep"]


@dataclass(frozen=True)
class RetentionPolicy:
    """Retention periods in days; ``important_days=None`` keeps important items forever."""

    ordinary_days: int = 183  # six months
    important_days: int | None = None

    def __post_init__(self) -> None:
        if self.ordinary_days < 1:
            raise ConfigError(f"retention ordinary_days must be ≥ 1, got {self.ordinary_days}")
        if self.important_days is not None and self.important_days < self.ordinary_days:
            raise ConfigError(
                f"retention important_days ({self.important_days}) must be ≥ ordinary_days "
                f"({self.ordinary_days}), or empty for permanent"
            )

    def days_for(self, category: Category) -> int | None:
        """The period for ``category`` in days; ``None`` means permanent."""
        return self.ordinary_days if category == "ordinary" else self.important_days


@dataclass(frozen=True)
class RetentionItem:
    """What retention needs to know about one piece of evidence."""

    evidence_id: str
    acquired_at: datetime
    category: Category
    case_count: int
    on_hold: bool
    disposed: bool


@dataclass(frozen=True)
class Disposition:
    """The plan for one item: ``dispose`` or ``keep``, with a reason a person can read."""

    evidence_id: str
    action: DispositionAction
    reason: str


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def expires_at(item: RetentionItem, policy: RetentionPolicy) -> datetime | None:
    """The instant the item's retention period ends; ``None`` when it is kept permanently."""
    days = policy.days_for(item.category)
    return None if days is None else item.acquired_at + timedelta(days=days)


def _decide(item: RetentionItem, policy: RetentionPolicy, now: datetime) -> Disposition:
    _require_aware(item.acquired_at, f"acquired_at of {item.evidence_id}")
    if item.case_count < 0:
        raise ValueError(f"case_count of {item.evidence_id} is negative")
    if item.category not in ("ordinary", "important"):
        raise ValueError(f"unknown retention category {item.category!r}")
    if item.disposed:
        return Disposition(item.evidence_id, "keep", "already disposed")
    reasons: list[str] = []
    if item.on_hold:
        reasons.append("legal hold")
    if item.case_count:
        reasons.append(f"linked to {item.case_count} case{'s' if item.case_count != 1 else ''}")
    end = expires_at(item, policy)
    if end is None:
        reasons.append(f"permanent: {item.category}")
    elif now < end:
        reasons.append(f"retained until {_day(end)}")
    if reasons or end is None:
        return Disposition(item.evidence_id, "keep", "; ".join(reasons))
    return Disposition(item.evidence_id, "dispose", f"{item.category} retention ended {_day(end)}")


def _day(instant: datetime) -> str:
    return instant.astimezone(UTC).date().isoformat()


def plan(
    items: Iterable[RetentionItem], policy: RetentionPolicy, now: datetime
) -> list[Disposition]:
    """One ``Disposition`` per item, in order (see the module docstring for the rules).
    Raises ``ValueError`` on naive times, negative case counts or a repeated evidence id."""
    _require_aware(now, "now")
    seen: set[str] = set()
    out: list[Disposition] = []
    for item in items:
        if item.evidence_id in seen:
            raise ValueError(f"evidence {item.evidence_id} appears twice in one plan")
        seen.add(item.evidence_id)
        out.append(_decide(item, policy, now))
    return out
