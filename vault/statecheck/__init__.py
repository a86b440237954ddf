"""``evault ledger fsck --state``: the state the ledger implies, compared with the tables.

A row tag catches a row changed to a value the service never wrote; it does not catch a row put
back to an earlier genuine value, or a row deleted. Replaying the ledger does: the ledger says
what every row that decides access or points at bytes must hold now.

- :mod:`vault.statecheck.replay`: pure replay of entries and openings into a derived state.
- :mod:`vault.statecheck.compare`: pure comparison of stored rows with it, as findings.
- :mod:`vault.statecheck.db`: both against PostgreSQL, in one snapshot, streamed.
"""

from vault.statecheck.compare import NOT_RECORDED_COLUMNS, compare
from vault.statecheck.db import StateReport, fsck_state
from vault.statecheck.replay import DerivedState, Finding, OpeningRow, Replayer, replay

__all__ = [
    "NOT_RECORDED_COLUMNS",
    "DerivedState",
    "Finding",
    "OpeningRow",
    "Replayer",
    "StateReport",
    "compare",
    "fsck_state",
    "replay",
]
