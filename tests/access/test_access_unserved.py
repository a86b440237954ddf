"""An ``accessed`` entry committed though its request was answered with an error (the COMMIT's
answer lost: tests/ledger/test_ledger_indoubt.py) is followed by its ``unserved`` entry, and the
item's trail shows both, in that order."""

from __future__ import annotations

from pathlib import Path

from tests.access.access_fixtures import ADMIN, add_evidence, open_vault, person
from vault.access import targets, trails
from vault.ledger.indoubt import InDoubt
from vault.policy.decide import Action, Role
from vault.policy.labels import Level
from verify.merkle import leaf_hash

OFFICER = person("officer-1", {Role.OFFICER}, Level.INTERNAL, (), officer_id="o1")


async def test_trail_shows_the_unserved_entry_after_the_decision_it_names(
    pg_dsn: str, tmp_path: Path
) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        eid = await add_evidence(ledger, officer_id="o1")
        await targets.authorize(db.pool, ledger, OFFICER, Action.STREAM, "evidence", eid)
        row = await db.pool.fetchrow(
            "SELECT idx, data FROM ledger_entries WHERE kind = 'accessed' ORDER BY idx DESC"
        )
        # What a lost COMMIT answer leaves: the entry committed, its doubt recorded.
        ledger.doubts.record([InDoubt(row["idx"], leaf_hash(bytes(row["data"])), "accessed")])
        assert await ledger.resolver.resolve_pending() == 1
        assert await ledger.resolver.resolve_pending() == 0 and not ledger.doubts.pending()
        async with db.pool.acquire() as conn:
            trail = await trails.trail(conn, ledger, ADMIN, evidence=eid)
        kinds = [e.kind for e in trail]
        at = [e.idx for e in trail].index(row["idx"])
        assert kinds[at : at + 2] == ["accessed", "unserved"], kinds
        assert kinds.count("unserved") == 1
        unserved = trail[at + 1]
        assert unserved.fields["entry"] == row["idx"]
        assert unserved.fields["entry_kind"] == "accessed"
        assert unserved.fields["answered"] == "error"
