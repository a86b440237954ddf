"""Constants shared by the API benchmark modules."""

from __future__ import annotations

from vault.policy.labels import Caveat, Label, Level

MIB = 1 << 20
CHUNK = 20_000  # entries per ledger append while seeding
DOCK = "dock-01"
CS, REVIEWER, DOCK_PRINCIPAL = "bench-case-system", "bench-reviewer", "bench-dock"
INTERNAL = Label(Level.INTERNAL)
PRIVATE = Label(Level.INTERNAL, frozenset({Caveat.PERSONAL_PRIVACY}))
CONFIDENTIAL = Label(Level.CONFIDENTIAL)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")
