"""Audit: every allowed and denied content decision is in the ledger; no ledger, no access."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.access.access_fixtures import ADMIN, add_evidence, open_vault, person
from vault.access import decisions, targets, trails
from vault.access.listing import get_evidence
from vault.cases import links as cases
from vault.config import LedgerConfig
from vault.errors import Forbidden, NotFound, Unavailable
from vault.keys.hostmac import HostMac
from vault.ledger import Ledger, PreparedEntry
from vault.policy.decide import Action, Role
from vault.policy.labels import Label, Level
from verify.canonical import check_opening
from verify.note import Signer

TEST_MAC = HostMac(bytes([7]) * 32)  # the test suite's host secret (every process)

OFFICER = person("officer-1", {Role.OFFICER}, Level.INTERNAL, (), officer_id="o1")
REVIEWER = person("reviewer-1", {Role.REVIEWER}, Level.CONFIDENTIAL, (), cases={"K1"})


async def _decisions(pool: asyncpg.Pool[asyncpg.Record]) -> list[tuple[str, str, str, str, bool]]:
    """(principal, action, target kind, target id, allowed) of every accessed/denied entry,
    with each commitment checked against its opening."""
    out = []
    rows = await pool.fetch(
        "SELECT idx, kind, data FROM ledger_entries WHERE kind IN ('accessed', 'denied')"
        " ORDER BY idx"
    )
    for r in rows:
        body = json.loads(bytes(r["data"]))
        opened = {}
        for o in await pool.fetch(
            "SELECT field, salt, value FROM ledger_openings WHERE idx = $1", r["idx"]
        ):
            value = json.loads(bytes(o["value"]))
            check_opening(o["field"], value, bytes(o["salt"]), body["commitments"][o["field"]])
            opened[o["field"]] = value
        assert set(body["commitments"]) == {"principal", "target"}
        for secret in (opened["principal"], opened["target"]):  # committed, never written
            assert secret.encode() not in bytes(r["data"])
        out.append(
            (
                opened["principal"],
                body["action"],
                body["target_kind"],
                opened["target"],
                r["kind"] == "accessed",
            )
        )
    return out


async def test_scripted_session_is_fully_audited(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "K1", "title", Label(Level.INTERNAL))
        e1 = await add_evidence(ledger, officer_id="o1")
        e2 = await add_evidence(ledger, label=Label(Level.SECRET), officer_id="o1")
        script: list[tuple[Any, Action | None, str, type[Exception] | None]] = [
            (OFFICER, Action.READ_METADATA, e1, None),
            (OFFICER, Action.STREAM, e1, None),
            (OFFICER, Action.DOWNLOAD, e1, None),
            (OFFICER, Action.EXPORT, e1, Forbidden),
            (OFFICER, Action.READ_METADATA, e2, NotFound),
            (REVIEWER, Action.STREAM, e1, NotFound),  # not linked to K1 yet
            ("link", None, e1, None),
            (REVIEWER, Action.STREAM, e1, None),
            (REVIEWER, Action.VERIFY, e1, None),
            (REVIEWER, Action.DOWNLOAD, e1, Forbidden),
            (REVIEWER, Action.READ_METADATA, "00000000-0000-0000-0000-000000000000", NotFound),
        ]
        expected = []
        for who, action, eid, error in script:
            if who == "link":
                await cases.link(pool, ledger, ADMIN, "K1", eid)
                continue
            assert action is not None
            if error is None:
                await targets.authorize(pool, ledger, who, action, "evidence", eid)
            else:
                with pytest.raises(error):
                    await targets.authorize(pool, ledger, who, action, "evidence", eid)
            expected.append((who.id, action.value, "evidence", eid, error is None))
        assert await _decisions(pool) == expected
        # get_evidence and cases.show are audited reads too
        await get_evidence(pool, ledger, OFFICER, e1)
        await cases.show(pool, ledger, REVIEWER, "K1")
        tail = (await _decisions(pool))[-2:]
        assert tail == [
            ("officer-1", "read_metadata", "evidence", e1, True),
            ("reviewer-1", "read_metadata", "case", "K1", True),
        ]
        # the trail of a principal is found through the openings
        trail = await trails.trail(pool, ledger, ADMIN, principal="officer-1")
        mine = [(e.kind, e.fields["action"]) for e in trail]
        assert mine == [
            ("accessed", "read_metadata"),
            ("accessed", "stream"),
            ("accessed", "download"),
            ("denied", "export"),
            ("denied", "read_metadata"),
            ("accessed", "read_metadata"),
        ]
        # an auditor below e2's level does not see the entry that names it
        low = person("aud", {Role.AUDITOR}, Level.INTERNAL, ())
        assert len(await trails.trail(pool, ledger, low, principal="officer-1")) == 5
        evidence_trail = await trails.trail(pool, ledger, ADMIN, evidence=e1)
        kinds = [e.kind for e in evidence_trail]
        assert kinds[0] == "acquired" and "linked" in kinds and kinds.count("accessed") >= 6
        case_trail = await trails.trail(pool, ledger, ADMIN, case="K1")
        assert [e.kind for e in case_trail][:3] == ["case", "linked", "accessed"]
        with pytest.raises(NotFound):  # a reviewer has no case-independent view of the ledger
            await trails.trail(pool, ledger, REVIEWER, principal="officer-1")


class FailingLedger:
    """A ledger whose appends fail the way a lost database does."""

    mac = TEST_MAC

    def __init__(self) -> None:
        self.calls = 0

    async def append(
        self,
        entries: Sequence[PreparedEntry],
        *,
        effect: Any = None,
        wait_checkpoint: bool = False,
        within: float | None = None,
    ) -> list[int]:
        self.calls += 1
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")


class StuckLedger:
    mac = TEST_MAC

    async def append(
        self,
        entries: Sequence[PreparedEntry],
        *,
        effect: Any = None,
        wait_checkpoint: bool = False,
        within: float | None = None,
    ) -> list[int]:
        await asyncio.sleep(3600)
        return []


async def test_content_requests_fail_closed_without_the_ledger(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decisions, "RECORD_TIMEOUT", 0.5)
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "K1", "title", Label(Level.INTERNAL))
        eid = await add_evidence(ledger, officer_id="o1")
        failing = FailingLedger()
        before = await pool.fetchval("SELECT count(*) FROM ledger_entries")
        for action in (Action.READ_METADATA, Action.STREAM, Action.DOWNLOAD, Action.VERIFY):
            with pytest.raises(Unavailable):
                await targets.authorize(pool, failing, OFFICER, action, "evidence", eid)
        with pytest.raises(Unavailable):  # a denial that cannot be recorded fails closed too
            await targets.authorize(pool, failing, OFFICER, Action.EXPORT, "evidence", eid)
        with pytest.raises(Unavailable):
            await get_evidence(pool, failing, OFFICER, eid)
        with pytest.raises(Unavailable):
            await cases.show(pool, failing, ADMIN, "K1")
        with pytest.raises(Unavailable):
            await targets.authorize(pool, StuckLedger(), OFFICER, Action.STREAM, "evidence", eid)
        # a real ledger whose pool has gone away
        dead_pool = await asyncpg.create_pool(db.dsn, min_size=1, max_size=1)
        await dead_pool.close()
        dead = Ledger(
            dead_pool, Signer.generate("x"), LedgerConfig(), tmp_path / "cp.log", mac=TEST_MAC
        )
        try:
            with pytest.raises(Unavailable):
                await targets.authorize(pool, dead, OFFICER, Action.STREAM, "evidence", eid)
        finally:
            # the sequencer task died on the closed pool (its append would hang without our
            # deadline); close() re-raises that task's error
            with contextlib.suppress(asyncpg.InterfaceError):
                await dead.close()
        assert failing.calls == 7
        assert await pool.fetchval("SELECT count(*) FROM ledger_entries") == before
        # with the ledger back, the same request goes through and is recorded
        await targets.authorize(pool, ledger, OFFICER, Action.STREAM, "evidence", eid)
        assert (await _decisions(pool))[-1] == ("officer-1", "stream", "evidence", eid, True)
