"""The one exponential backoff of the service (database connects, jobs, event deliveries,
time-stamp requests, deferred dock files).

Guarantee: ``backoff(attempt, base, cap)`` is ``base * 2**(attempt - 1)`` for 1-based failed
attempts, never more than ``cap``, never negative, and finite for every attempt number (the
exponent is bounded, so no attempt count overflows).
"""

from __future__ import annotations

__all__ = ["backoff"]


def backoff(attempt: int, base: float, cap: float) -> float:
    """Delay after failed attempt ``attempt`` (1-based): ``base * 2^(attempt-1)``, capped."""
    return float(max(0.0, min(cap, base * 2.0 ** min(max(0, attempt - 1), 60))))
