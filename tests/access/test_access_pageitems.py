"""Listed items remembered once verified (``vault.access.pageitems``), attacked after a listing.

A listing verifies each item's rows in full the first time and remembers the result under a
keyed fingerprint of everything it selected; these tests change rows behind the service's back
*after* an item was listed (so it is remembered) and check that the next listing does not use
what it remembered: an edited row is verified again (left out, alarm), and a case row put back to
the very values that were remembered is refused by the mirror's floor.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from tests.access.access_fixtures import ADMIN, add_evidence, open_vault
from tests.access.test_access_state_attacks import ROLES, alarms, failures, insider, reviewer
from tests.vault_fixtures import TEST_MAC
from vault.access.listing import list_evidence
from vault.cases import links as cases
from vault.keys.hostmac import HostMac
from vault.policy.labels import Label, Level


def test_fingerprints_tell_types_and_processes_apart() -> None:
    mac = HostMac.generate()
    one = mac.fingerprint(("evidence", 1))
    assert one is not None and one == mac.fingerprint(("evidence", 1))
    assert one != mac.fingerprint(("evidence", True))
    assert one != mac.fingerprint(("evidence", 1.0))
    assert mac.fingerprint(("x", "1")) != mac.fingerprint(("x", Decimal("1")))
    assert mac.fingerprint(("x", ["a", "b"])) != mac.fingerprint(("x", ["ab"]))
    assert HostMac.generate().fingerprint(("evidence", 1)) != one  # a key per process


async def test_a_listed_item_is_not_verified_again(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        await cases.create(db.pool, ledger, ADMIN, "K", "t", Label(Level.INTERNAL))
        eids = [await add_evidence(ledger) for _ in range(3)]
        for eid in eids:
            await cases.link(db.pool, ledger, ADMIN, "K", eid)
        rv = await reviewer(ledger, db, "rv", Level.INTERNAL, "K")
        first = await list_evidence(db.pool, rv, mac=TEST_MAC)
        assert sorted(i.id for i in first.items) == sorted(eids)
        computed = []
        row = TEST_MAC.row

        def counting(*args: object, **kwargs: object) -> bytes:
            computed.append(args[0])
            return row(*args, **kwargs)  # type: ignore[arg-type]

        TEST_MAC.row = counting  # type: ignore[method-assign]
        try:
            again = await list_evidence(db.pool, rv, mac=TEST_MAC)
        finally:
            del TEST_MAC.row
        assert again == first
        assert computed == []  # every item came from what the first listing verified


@pytest.mark.parametrize("role", ROLES)
async def test_attack_evidence_row_edited_after_listing_is_left_out(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        await cases.create(db.pool, ledger, ADMIN, "K", "t", Label(Level.INTERNAL))
        eid = await add_evidence(ledger, officer_id="OFF-1")
        await cases.link(db.pool, ledger, ADMIN, "K", eid)
        rv = await reviewer(ledger, db, "rv", Level.INTERNAL, "K")
        assert [i.officer_id for i in (await list_evidence(db.pool, rv, mac=TEST_MAC)).items] == [
            "OFF-1"
        ]
        before = failures()
        async with insider(pg_dsn, db, role) as conn:
            await conn.execute(
                "UPDATE evidence SET officer_id = 'OFF-2' WHERE id = $1", uuid.UUID(eid)
            )
        page = await list_evidence(db.pool, rv, mac=TEST_MAC)
        assert page.items == [] and page.tampered == (eid,)
        assert failures() > before


async def test_attack_link_row_edited_after_listing_is_left_out(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Only the superuser can: the app role may not update link history at all."""
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        await cases.create(db.pool, ledger, ADMIN, "K", "t", Label(Level.INTERNAL))
        eid = await add_evidence(ledger)
        await cases.link(db.pool, ledger, ADMIN, "K", eid)
        rv = await reviewer(ledger, db, "rv", Level.INTERNAL, "K")
        assert [i.id for i in (await list_evidence(db.pool, rv, mac=TEST_MAC)).items] == [eid]
        async with insider(pg_dsn, db, "superuser") as conn:
            await conn.execute(
                "UPDATE case_evidence_history SET principal_id = 'someone' WHERE evidence_id = $1",
                uuid.UUID(eid),
            )
        page = await list_evidence(db.pool, rv, mac=TEST_MAC)
        assert page.items == [] and page.tampered == (eid,)
        assert await alarms(db, "case_evidence_history") == 1


@pytest.mark.parametrize("role", ROLES)
async def test_attack_case_put_back_to_the_listed_row_is_refused(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "K", "t", Label(Level.INTERNAL))
        eid = await add_evidence(ledger)
        await cases.link(pool, ledger, ADMIN, "K", eid)
        rv = await reviewer(ledger, db, "rv", Level.INTERNAL, "K")
        old = await pool.fetchrow("SELECT * FROM cases WHERE id = 'K'")
        assert [i.id for i in (await list_evidence(pool, rv, mac=TEST_MAC)).items] == [eid]
        await cases.set_label(pool, ledger, ADMIN, "case", "K", Label(Level.SECRET))
        assert (await list_evidence(pool, rv, mac=TEST_MAC)).items == []

        async with insider(pg_dsn, db, role) as conn:  # exactly the row the first page read
            await conn.execute(
                "UPDATE cases SET label_level = $2, ledger_idx = $3, tag = $4 WHERE id = $1",
                "K",
                old["label_level"],
                old["ledger_idx"],
                old["tag"],
            )
        page = await list_evidence(pool, rv, mac=TEST_MAC)
        assert page.items == [] and page.tampered == (eid,)
        assert await alarms(db, "cases") == 1
