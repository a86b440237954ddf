"""Attacks on the stored access state, on real PostgreSQL, by the app role and by the superuser.

The database is not trusted: each test changes rows behind the service's back, the way an
insider could (``evault_app``: INSERT/UPDATE where the role may; the superuser: anything,
triggers disabled), and checks that the service refuses the change (fails closed), raises the
alarm and records the refusal.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.access.access_fixtures import ADMIN, add_evidence, open_vault
from tests.vault_fixtures import TEST_MAC
from vault.access import decisions, principals, targets, tokens
from vault.access import state as access_state
from vault.access.listing import get_evidence, list_evidence
from vault.access.principals import PrincipalSpec
from vault.access.state import AccessState
from vault.cases import links as cases
from vault.db import Database
from vault.errors import Unauthenticated
from vault.keys.hostmac import RowTampered
from vault.ledger import Ledger
from vault.metrics import INTEGRITY_FAILURES
from vault.policy.decide import Action, Role
from vault.policy.labels import Label, Level

ROLES = ["app", "superuser"]


@asynccontextmanager
async def insider(dsn: str, db: Database, role: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection acting as the app role, or as the superuser with every trigger off."""
    conn = await asyncpg.connect(dsn)
    try:
        if role == "app":
            await conn.execute(f"SET ROLE {db.app_role}")
        else:
            for table in ("tokens", "principal_cases", "cases", "case_evidence_history"):
                await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        yield conn
    finally:
        await conn.close()


def failures() -> float:
    value: float = INTEGRITY_FAILURES.labels("state")._value.get()
    return value


async def alarms(db: Database, table: str) -> int:
    rows = await db.pool.fetch("SELECT payload FROM event_outbox WHERE type = 'integrity.failure'")
    found = [json.loads(r["payload"]) for r in rows]
    return sum(1 for p in found if p.get("source") == "state" and p.get("table") == table)


async def denials(db: Database) -> list[str]:
    rows = await db.pool.fetch("SELECT data FROM ledger_entries WHERE kind = 'denied'")
    return [json.loads(bytes(r["data"]))["reason"] for r in rows]


async def reviewer(
    ledger: Ledger, db: Database, pid: str, clearance: Level, *assigned: str
) -> principals.Principal:
    spec = PrincipalSpec(pid, frozenset({Role.REVIEWER}), clearance)
    await principals.add(db.pool, ledger, ADMIN, spec)
    for case in assigned:
        await principals.assign(db.pool, ledger, ADMIN, pid, case, force=True)  # maybe below
    return await principals.load(db.pool, pid)


def restart(db: Database) -> AccessState:
    """What a restarted service has: a fresh mirror, replayed from the ledger on first use."""
    return access_state.install(AccessState(TEST_MAC, db.pool))


@pytest.mark.parametrize("role", ROLES)
async def test_attack_silent_declassification_is_refused(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "K", "a secret case", Label(Level.SECRET))
        eid = await add_evidence(ledger)  # internal on its own
        await cases.link(pool, ledger, ADMIN, "K", eid)
        rv = await reviewer(ledger, db, "rv", Level.INTERNAL, "K")
        assert "K" in rv.cases and (await list_evidence(pool, rv, mac=TEST_MAC)).items == []
        before = failures()

        async with insider(pg_dsn, db, role) as conn:
            await conn.execute("UPDATE cases SET label_level = 0 WHERE id = 'K'")

        assert (
            await list_evidence(pool, rv, mac=TEST_MAC)
        ).items == []  # the SQL filter was fooled; not us
        assert "K" not in [c.id for c in await cases.list_cases(pool, rv)]
        with pytest.raises(RowTampered):
            await get_evidence(pool, ledger, rv, eid)
        with pytest.raises(RowTampered):
            await cases.show(pool, ledger, rv, "K")
        assert decisions.TAMPERED_REASON in await denials(db)  # the decision asked is refused
        assert failures() > before
        assert await alarms(db, "cases") == 1  # announced once, however often it is read


@pytest.mark.parametrize("role", ROLES)
async def test_attack_case_label_rolled_back_is_refused(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "K", "t", Label(Level.INTERNAL))
        eid = await add_evidence(ledger)
        await cases.link(pool, ledger, ADMIN, "K", eid)
        rv = await reviewer(ledger, db, "rv", Level.INTERNAL, "K")
        old = await pool.fetchrow("SELECT * FROM cases WHERE id = 'K'")
        await cases.set_label(pool, ledger, ADMIN, "case", "K", Label(Level.SECRET))
        assert (await list_evidence(pool, rv, mac=TEST_MAC)).items == []

        async with insider(pg_dsn, db, role) as conn:  # the earlier, genuine row and tag
            await conn.execute(
                "UPDATE cases SET label_level = $2, ledger_idx = $3, tag = $4 WHERE id = $1",
                "K",
                old["label_level"],
                old["ledger_idx"],
                old["tag"],
            )
        for _ in range(2):  # online, then after a restart (the mirror replayed)
            assert (await list_evidence(pool, rv, mac=TEST_MAC)).items == []
            with pytest.raises(RowTampered):
                await targets.authorize(pool, ledger, rv, Action.READ_METADATA, "evidence", eid)
            restart(db)


@pytest.mark.parametrize("role", ROLES)
async def test_attack_rolled_back_assignment_is_refused(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "K", "t", Label(Level.INTERNAL))
        eid = await add_evidence(ledger)
        await cases.link(pool, ledger, ADMIN, "K", eid)
        await reviewer(ledger, db, "rv", Level.INTERNAL, "K")
        issued = await tokens.create(pool, ledger, ADMIN, "rv", timedelta(days=1))
        rv = await tokens.authenticate(pool, issued.token)
        assert [i.id for i in (await list_evidence(pool, rv, mac=TEST_MAC)).items] == [eid]
        row = await pool.fetchrow("SELECT * FROM principal_cases WHERE principal_id = 'rv'")
        # another process, whose mirror was read before the unassignment
        elsewhere = AccessState(TEST_MAC, pool)
        await elsewhere.refresh()
        await principals.unassign(pool, ledger, ADMIN, "rv", "K")

        async with insider(pg_dsn, db, role) as conn:  # same ledger_idx, same tag
            await conn.execute(
                "INSERT INTO principal_cases (principal_id, case_id, assigned_at, ledger_idx, tag)"
                " VALUES ($1, $2, $3, $4, $5)",
                *row.values(),
            )
        before = failures()
        # online, in the process that unassigned; in another once notified; after a restart
        for step in ("here", "elsewhere", "restart"):
            if step == "elsewhere":
                access_state.install(elsewhere).changed()  # NOTIFY evault_auth heard
            elif step == "restart":
                restart(db)
            assert "K" not in (await principals.load(pool, "rv")).cases, step
            rv = await tokens.authenticate(pool, issued.token)
            assert "K" not in rv.cases, step
            assert (await list_evidence(pool, rv, mac=TEST_MAC)).items == [], step
        assert failures() > before
        assert await alarms(db, "principal_cases") == 3  # once in each of the three mirrors


@pytest.mark.parametrize("role", ROLES)
async def test_attack_minted_token_is_refused(pg_dsn: str, tmp_path: Path, role: str) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        spec = PrincipalSpec("chief", frozenset({Role.ADMIN}), Level.TOP_SECRET)
        await principals.add(pool, ledger, ADMIN, spec)
        genuine = await tokens.create(pool, ledger, ADMIN, "chief", timedelta(days=1))
        real = await pool.fetchrow("SELECT * FROM tokens WHERE id = $1", genuine.id)
        mine = tokens.PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()[:43]
        before = failures()

        async with insider(pg_dsn, db, role) as conn:
            await conn.execute(
                "INSERT INTO tokens (id, principal_id, token_hash, expires_at, ledger_idx, tag)"
                " VALUES ($1, 'chief', $2, $3, $4, $5)",
                "tok_" + secrets.token_hex(8),
                hashlib.sha256(mine.encode()).digest(),
                datetime.now(UTC) + timedelta(days=30),
                real["ledger_idx"],
                real["tag"] if role == "superuser" else None,  # a genuine tag, copied
            )
        with pytest.raises(Unauthenticated):
            await tokens.authenticate(pool, mine)
        with pytest.raises(Unauthenticated):
            await tokens.authenticate(pool, mine, tokens.TokenCache())
        assert (await tokens.authenticate(pool, genuine.token)).id == "chief"
        assert failures() > before
        assert await alarms(db, "tokens") == 1


@pytest.mark.parametrize("role", ROLES)
async def test_attack_unrevoked_token_is_refused(pg_dsn: str, tmp_path: Path, role: str) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await reviewer(ledger, db, "rv", Level.INTERNAL)
        issued = await tokens.create(pool, ledger, ADMIN, "rv", timedelta(days=1))
        live = await pool.fetchrow("SELECT * FROM tokens WHERE id = $1", issued.id)
        await tokens.authenticate(pool, issued.token)
        await tokens.revoke(pool, ledger, ADMIN, issued.id)
        with pytest.raises(Unauthenticated):
            await tokens.authenticate(pool, issued.token)

        async with insider(pg_dsn, db, role) as conn:  # back as it was, with its earlier tag
            await conn.execute(
                "UPDATE tokens SET revoked_at = NULL, ledger_idx = $2, tag = $3 WHERE id = $1",
                issued.id,
                live["ledger_idx"],
                live["tag"],
            )
        for _ in range(2):  # online, then after a restart
            with pytest.raises(Unauthenticated):
                await tokens.authenticate(pool, issued.token)
            restart(db)


@pytest.mark.parametrize("role", ROLES)
async def test_attack_forged_link_grants_no_need_to_know(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "K", "t", Label(Level.INTERNAL))
        await cases.create(pool, ledger, ADMIN, "S", "t", Label(Level.SECRET))
        mine, other, both = [await add_evidence(ledger) for _ in range(3)]
        await cases.link(pool, ledger, ADMIN, "K", mine)
        for case in ("K", "S"):
            await cases.link(pool, ledger, ADMIN, case, both)
        rv = await reviewer(ledger, db, "rv", Level.INTERNAL, "K")
        assert [i.id for i in (await list_evidence(pool, rv, mac=TEST_MAC)).items] == [mine]
        genuine = await pool.fetchrow(
            "SELECT * FROM case_evidence_history WHERE evidence_id = $1", uuid.UUID(mine)
        )
        unused = await pool.fetch(
            "SELECT idx FROM ledger_entries WHERE idx NOT IN"
            " (SELECT ledger_idx FROM case_evidence_history) ORDER BY idx DESC LIMIT 2"
        )

        async with insider(pg_dsn, db, role) as conn:
            # a link that grants need-to-know, and an unlink that lifts a secret case's label
            for (idx,), (case, eid, action) in zip(
                unused, (("K", other, "linked"), ("S", both, "unlinked")), strict=True
            ):
                await conn.execute(
                    "INSERT INTO case_evidence_history (ledger_idx, case_id, evidence_id,"
                    " action, principal_id, tag) VALUES ($1, $2, $3, $4, 'admin', $5)",
                    idx,
                    case,
                    uuid.UUID(eid),
                    action,
                    genuine["tag"] if role == "superuser" else None,
                )
        assert [i.id for i in (await list_evidence(pool, rv, mac=TEST_MAC)).items] == [mine]
        for eid in (other, both):
            with pytest.raises(RowTampered):
                await targets.authorize(pool, ledger, rv, Action.READ_METADATA, "evidence", eid)
        assert await alarms(db, "case_evidence_history") == 2


async def test_legitimate_changes_keep_verifying(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        before = failures()
        await cases.create(pool, ledger, ADMIN, "K", "t", Label(Level.INTERNAL))
        await cases.retitle(pool, ledger, ADMIN, "K", "another title")
        eid = await add_evidence(ledger)
        await cases.link(pool, ledger, ADMIN, "K", eid)
        await cases.unlink(pool, ledger, ADMIN, "K", eid)
        await cases.link(pool, ledger, ADMIN, "K", eid)
        rv = await reviewer(ledger, db, "rv", Level.SECRET, "K")
        await principals.unassign(pool, ledger, ADMIN, "rv", "K")
        await principals.assign(pool, ledger, ADMIN, "rv", "K")
        await principals.disable(pool, ledger, ADMIN, "rv")
        await principals.enable(pool, ledger, ADMIN, "rv")
        issued = await tokens.create(pool, ledger, ADMIN, "rv", timedelta(days=1))
        await cases.set_label(pool, ledger, ADMIN, "case", "K", Label(Level.CONFIDENTIAL))
        for _ in range(2):  # in this process, and after a restart
            rv = await tokens.authenticate(pool, issued.token)
            assert rv.cases == {"K"} and rv.active
            assert [i.id for i in (await list_evidence(pool, rv, mac=TEST_MAC)).items] == [eid]
            assert (await cases.show(pool, ledger, rv, "K")).title == "another title"
            listed = await principals.list_principals(pool, ledger, ADMIN)
            assert [p.principal.cases for p in listed] == [frozenset({"K"})]
            restart(db)
        await tokens.revoke(pool, ledger, ADMIN, issued.id)
        await tokens.revoke(pool, ledger, ADMIN, issued.id)  # again: still verifies, revoked
        with pytest.raises(Unauthenticated):
            await tokens.authenticate(pool, issued.token)
        assert failures() == before


@pytest.mark.parametrize("role", ROLES)
async def test_attack_principal_raised_or_reenabled_is_refused(
    pg_dsn: str, tmp_path: Path, role: str
) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await reviewer(ledger, db, "rv", Level.INTERNAL)
        issued = await tokens.create(pool, ledger, ADMIN, "rv", timedelta(days=1))
        active = await pool.fetchrow("SELECT * FROM principals WHERE id = 'rv'")
        async with insider(pg_dsn, db, role) as conn:  # cleared for top secret, made an admin
            await conn.execute(
                "UPDATE principals SET clearance = 4, roles = '{admin}' WHERE id = 'rv'"
            )
        with pytest.raises(Unauthenticated):
            await tokens.authenticate(pool, issued.token)
        with pytest.raises(RowTampered):
            await principals.load(pool, "rv")
        async with insider(pg_dsn, db, role) as conn:
            await conn.execute(
                "UPDATE principals SET clearance = $1, roles = $2 WHERE id = 'rv'",
                active["clearance"],
                active["roles"],
            )
        assert (await tokens.authenticate(pool, issued.token)).clearance == Level.INTERNAL
        await principals.disable(pool, ledger, ADMIN, "rv")
        async with insider(pg_dsn, db, role) as conn:  # enabled again, with its earlier tag
            await conn.execute(
                "UPDATE principals SET active = true, ledger_idx = $1, tag = $2 WHERE id = 'rv'",
                active["ledger_idx"],
                active["tag"],
            )
        for _ in range(2):  # online, then after a restart
            with pytest.raises(Unauthenticated):
                await tokens.authenticate(pool, issued.token)
            with pytest.raises(RowTampered):
                await principals.load(pool, "rv")
            restart(db)


async def test_a_tampered_principal_can_still_be_disabled(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await reviewer(ledger, db, "rv", Level.INTERNAL)
        async with insider(pg_dsn, db, "app") as conn:
            await conn.execute("UPDATE principals SET clearance = 4 WHERE id = 'rv'")
        idx = await principals.disable(pool, ledger, ADMIN, "rv")
        row = await pool.fetchrow("SELECT active, ledger_idx, tag FROM principals WHERE id = 'rv'")
        assert (row["active"], row["ledger_idx"], row["tag"]) == (False, idx, None)
        with pytest.raises(RowTampered):  # still refused: nothing vouches for its values
            await principals.enable(pool, ledger, ADMIN, "rv")
