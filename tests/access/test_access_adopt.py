"""Adopting access rows written before row tags: once, and never what the ledger contradicts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.access.access_fixtures import ADMIN, add_evidence, add_rendition, open_vault
from tests.vault_fixtures import TEST_MAC
from vault import evidence as evrows
from vault.access import adopt as access_adopt
from vault.access import principals, tokens
from vault.access.listing import get_evidence, list_evidence
from vault.access.principals import PrincipalSpec
from vault.cases import links as cases
from vault.errors import Conflict, NotFound, Unauthenticated
from vault.keys.hostmac import RowTampered
from vault.ops import disposition
from vault.policy.decide import Role
from vault.policy.labels import Label, Level
from vault.statecheck import fsck_state

TABLES = ("principals", "tokens", "principal_cases", "cases", "case_evidence_history")


async def test_rows_from_before_tags_are_adopted_once(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "K", "t", Label(Level.INTERNAL))
        await cases.set_label(pool, ledger, ADMIN, "case", "K", Label(Level.CONFIDENTIAL))
        eid = await add_evidence(ledger)
        await cases.link(pool, ledger, ADMIN, "K", eid)
        spec = PrincipalSpec("rv", frozenset({Role.REVIEWER}), Level.SECRET)
        await principals.add(pool, ledger, ADMIN, spec)
        for case in ("K", "GONE"):
            await principals.assign(pool, ledger, ADMIN, "rv", case)
        gone = await pool.fetchrow("SELECT * FROM principal_cases WHERE case_id = 'GONE'")
        await principals.unassign(pool, ledger, ADMIN, "rv", "GONE")
        issued = await tokens.create(pool, ledger, ADMIN, "rv", timedelta(days=1))
        owner = await asyncpg.connect(pg_dsn)
        try:  # the database as an upgrade finds it: no tags, tokens naming no entry
            await owner.execute("ALTER TABLE case_evidence_history DISABLE TRIGGER ALL")
            for table in TABLES:
                await owner.execute(f"UPDATE {table} SET tag = NULL")
            await owner.execute("ALTER TABLE case_evidence_history ENABLE TRIGGER ALL")
            for trigger in ("append_only", "no_truncate"):
                await owner.execute(
                    "ALTER TABLE case_evidence_history"
                    f" ENABLE ALWAYS TRIGGER case_evidence_history_{trigger}"
                )
            await owner.execute("UPDATE tokens SET ledger_idx = NULL")
            await owner.execute(
                "UPDATE cases SET ledger_idx = (SELECT min(idx) FROM ledger_entries WHERE kind = 'case')"
            )
            await owner.execute(
                "INSERT INTO principal_cases (principal_id, case_id, ledger_idx) VALUES ($1, $2, $3)",
                "rv", "GONE", gone["ledger_idx"],
            )  # fmt: skip
            with pytest.raises(Unauthenticated):
                await tokens.authenticate(pool, issued.token)

            counts = await access_adopt.adopt(owner, ledger, TEST_MAC)
            assert counts == {
                "principals": 1, "tokens": 1, "principal_cases": 1, "cases": 1,
                "case_evidence_history": 1, "evidence": 0, "renditions": 0,
                "skipped": 1,  # the withdrawn assignment
            }  # fmt: skip
            enabled = await owner.fetchval(
                "SELECT tgenabled FROM pg_trigger"
                " WHERE tgname = 'case_evidence_history_append_only'"
            )
            assert enabled == b"A"  # the link history is append-only again, for every role
            rv = await tokens.authenticate(pool, issued.token)
            assert rv.cases == {"K"}
            assert [i.id for i in (await list_evidence(pool, rv, mac=TEST_MAC)).items] == [eid]
            # a row inserted without a tag afterwards is never adopted
            await owner.execute(
                "INSERT INTO principal_cases (principal_id, case_id, ledger_idx) VALUES ($1, $2, $3)",
                "rv", "LATER", gone["ledger_idx"],
            )  # fmt: skip
            with pytest.raises(Conflict):
                await access_adopt.adopt(owner, ledger, TEST_MAC)
            assert (await principals.load(pool, "rv")).cases == {"K"}
            with pytest.raises(NotFound):
                await principals.load(pool, "nobody")
        finally:
            await owner.close()


async def test_evidence_rows_from_before_tags_are_adopted_unless_edited(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Untagged evidence and renditions (as migration 010 leaves them: no tag, ``state_idx`` the
    creating entry's) are tagged with the ledger's newest index; one edited before adoption is
    not, and stays refused; adoption runs once."""
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        relabelled = await add_evidence(ledger)
        await cases.set_label(pool, ledger, ADMIN, "evidence", relabelled, Label(Level.SECRET))
        important = await add_evidence(ledger)
        await disposition.set_category(pool, ledger, ADMIN, important, "important")
        rid = await add_rendition(ledger, important, Label(Level.INTERNAL))
        edited = await add_evidence(ledger)
        owner = await asyncpg.connect(pg_dsn)
        try:
            await owner.execute("UPDATE evidence SET tag = NULL, state_idx = ledger_idx")
            await owner.execute("UPDATE renditions SET tag = NULL, state_idx = ledger_idx")
            await owner.execute(  # an insider's edit from before the upgrade
                "UPDATE evidence SET sha256 = md5(sha256) || md5(sha256) WHERE id = $1::uuid",
                edited,
            )
            with pytest.raises(RowTampered):
                await get_evidence(pool, ledger, ADMIN, relabelled)
            counts = await access_adopt.adopt(owner, ledger, TEST_MAC)
            # the fixture's ``derived`` entry names no rendition_id: fsck --state cannot match
            # the rendition row to the ledger, so it is not adopted either
            assert counts["evidence"] == 2 and counts["renditions"] == 0
            assert counts["skipped"] == 2  # the edited row and that rendition
            assert (await get_evidence(pool, ledger, ADMIN, relabelled)).label.level == Level.SECRET
            row = await evrows.load_evidence(pool, TEST_MAC, important)
            assert row is not None and row.category == "important"
            assert row.state_idx > row.ledger_idx  # the category entry's index
            with pytest.raises(RowTampered):
                await evrows.load_rendition(pool, TEST_MAC, rid)
            with pytest.raises(RowTampered):
                await get_evidence(pool, ledger, ADMIN, edited)
            report = await fsck_state(owner)
            assert (("id", edited),) in {f.key for f in report.findings if f.table == "evidence"}
            assert {f.key for f in report.findings if f.table == "evidence"} == {(("id", edited),)}
            with pytest.raises(Conflict):
                await access_adopt.adopt(owner, ledger, TEST_MAC)
            with pytest.raises(RowTampered):
                await get_evidence(pool, ledger, ADMIN, edited)
        finally:
            await owner.close()
