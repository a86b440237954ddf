"""No leak: a principal one level below an item, lacking one caveat, or not assigned to its case
sees no trace of it — in lists, counts, filtered searches, errors, the audit trail, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.access.access_fixtures import ADMIN, add_evidence, add_rendition, open_vault
from vault.access import principals, targets, trails
from vault.access.listing import EvidenceQuery, count_evidence, get_evidence, list_evidence
from vault.cases import links as cases
from vault.errors import EvaultError, NotFound
from vault.ops import disposition
from vault.ops.retention import RetentionPolicy
from vault.policy.decide import Action, Principal, Role
from vault.policy.labels import Caveat, Label, Level

T0 = datetime(2025, 3, 1, tzinfo=UTC)
PRIVACY = frozenset({Caveat.PERSONAL_PRIVACY})
SECRET = Label(Level.SECRET, PRIVACY)

VIEWER = Principal(
    id="viewer",
    clearance=Level.SECRET,
    caveats=PRIVACY,
    roles=frozenset({Role.REVIEWER, Role.AUDITOR}),
    cases=frozenset({"K1"}),
)
BLIND = {
    "below": replace(VIEWER, id="below", clearance=Level.CONFIDENTIAL),
    "lacking": replace(VIEWER, id="lacking", caveats=frozenset()),
    "unassigned": replace(
        VIEWER, id="unassigned", roles=frozenset({Role.REVIEWER}), cases=frozenset()
    ),
}
QUERIES = [
    EvidenceQuery(),
    EvidenceQuery(case_id="K1"),
    EvidenceQuery(officer_id="o1"),
    EvidenceQuery(device_id="rec-9"),
    EvidenceQuery(dock_id="dock-09"),
    EvidenceQuery(acquired_from=T0, acquired_to=T0 + timedelta(hours=1)),
    EvidenceQuery(recorded_from=T0 - timedelta(days=1)),
    EvidenceQuery(level=Level.SECRET),
    EvidenceQuery(caveats=PRIVACY),
    EvidenceQuery(status="ready"),
    EvidenceQuery(disposed=False),
]


def _error(exc: EvaultError) -> tuple[type, int, str, str]:
    return (type(exc), exc.status, exc.detail, str(exc))


async def _raised(coro: Any) -> tuple[type, int, str, str]:
    with pytest.raises(EvaultError) as info:
        await coro
    return _error(info.value)


async def test_no_trace_in_queries_errors_and_trails(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "K1", "the case", Label(Level.INTERNAL))
        hidden = await add_evidence(
            ledger, label=SECRET, officer_id="o1", device_id="rec-9", dock_id="dock-09",
            acquired_at=T0, recorded_at=T0,
        )  # fmt: skip
        shown = await add_evidence(ledger, acquired_at=T0 - timedelta(days=1))
        rendition = await add_rendition(ledger, hidden, SECRET)
        for eid in (hidden, shown):
            await cases.link(pool, ledger, ADMIN, "K1", eid)
        nowhere = str(uuid.uuid4())

        # the one who may see it does see it everywhere
        assert hidden in {i.id for i in (await list_evidence(pool, VIEWER, mac=ledger.mac)).items}
        assert (await get_evidence(pool, ledger, VIEWER, hidden)).id == hidden

        for name, p in BLIND.items():
            for q in QUERIES:
                page = await list_evidence(pool, p, q, limit=1000, mac=ledger.mac)
                ids = [i.id for i in page.items]
                assert hidden not in ids, (name, q)
                assert await count_evidence(pool, p, q) == len(ids), (name, q)
                for item in page.items:
                    assert item.label.dominates(Label(Level.PUBLIC))
            assert "K1" in {c.id for c in await cases.list_cases(pool, p)} or name == "unassigned"
            missing = {
                "get": _raised(get_evidence(pool, ledger, p, nowhere)),
                "stream": _raised(targets.authorize(pool, ledger, p, Action.STREAM, "evidence", nowhere)),
                "rendition": _raised(targets.authorize(pool, ledger, p, Action.STREAM, "rendition", nowhere)),
                "label": _raised(cases.set_label(pool, ledger, p, "evidence", nowhere, SECRET)),
                "trail": _raised(trails.trail(pool, ledger, p, evidence=nowhere)),
            }  # fmt: skip
            invisible = {
                "get": _raised(get_evidence(pool, ledger, p, hidden)),
                "stream": _raised(targets.authorize(pool, ledger, p, Action.STREAM, "evidence", hidden)),
                "rendition": _raised(targets.authorize(pool, ledger, p, Action.STREAM, "rendition", rendition)),
                "label": _raised(cases.set_label(pool, ledger, p, "evidence", hidden, SECRET)),
                "trail": _raised(trails.trail(pool, ledger, p, evidence=hidden)),
            }  # fmt: skip
            for key in missing:
                want = await missing[key]
                assert await invisible[key] == want, (name, key)
                assert want[0] is NotFound
        # unassigned: the case itself is as unknown as a case that does not exist
        p = BLIND["unassigned"]
        assert await _raised(cases.show(pool, ledger, p, "K1")) == await _raised(
            cases.show(pool, ledger, p, "K-none")
        )
        assert (
            await list_evidence(pool, p, EvidenceQuery(case_id="K1"), mac=ledger.mac)
        ).items == []
        assert await count_evidence(pool, p, EvidenceQuery(case_id="K1")) == 0
        # the callers got the same answer; the ledger's denied entries record the real reason
        denied = [
            json.loads(bytes(r["data"]))
            for r in await pool.fetch("SELECT data FROM ledger_entries WHERE kind = 'denied'")
        ]
        reasons = {d["reason"] for d in denied}
        assert "Not found" not in reasons
        assert "no such evidence" in reasons and "no such rendition" in reasons
        assert any(r.startswith("clearance ") and " below label " in r for r in reasons)
        assert any(r.startswith("caveat ") for r in reasons)
        assert any(r.startswith("not assigned to any of its cases") for r in reasons)
        # a retention report for an admin below the item's level does not list it
        low_admin = replace(ADMIN, id="low-admin", clearance=Level.CONFIDENTIAL)
        report = await disposition.report(pool, ledger, low_admin, RetentionPolicy())
        assert hidden not in {d.evidence_id for d in report}
        # the trail of the case, read by an auditor who may not see the item, omits it
        trail = await trails.trail(pool, ledger, BLIND["below"], case="K1")
        assert trail and all(e.fields.get("evidence_id") != hidden for e in trail)
        assert not any(hidden in json.dumps(e.opened) for e in trail)


def _evault(data: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "api.cli", "--data", str(data), *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


async def test_cli_listings_leak_nothing(pg_dsn: str, tmp_path: Path) -> None:
    env = dict(os.environ, EVAULT_DATABASE_DSN=pg_dsn)
    data = tmp_path / "data"
    assert _evault(data, env, "init")[0] == 0
    async with open_vault(pg_dsn, tmp_path, data=data) as (ledger, db):
        pool = db.pool
        hidden = await add_evidence(ledger, label=SECRET, acquired_at=T0 - timedelta(days=400))
        await principals.add(pool, ledger, ADMIN, principals.PrincipalSpec(
            "below", frozenset({Role.ADMIN, Role.AUDITOR}), Level.CONFIDENTIAL, PRIVACY))  # fmt: skip
    assert _evault(data, env, "case", "add", "K1", "--title", "T", "--label", "secret")[0] == 0
    assert _evault(data, env, "case", "link", "K1", hidden)[0] == 0
    assert hidden in _evault(data, env, "case", "show", "K1")[1]
    other = str(uuid.uuid4())
    for real, fake in (
        (["case", "show", "K1"], ["case", "show", "K404"]),
        (["audit", "--case", "K1"], ["audit", "--case", "K404"]),
        (["audit", "--evidence", hidden], ["audit", "--evidence", other]),
        (["case", "link", "K1", hidden], ["case", "link", "K1", other]),
    ):
        got = _evault(data, env, *real, "--as", "below")
        assert got == _evault(data, env, *fake, "--as", "below"), real
        assert got[0] == 2 and "Not found" in got[2]
    code, out, _ = _evault(data, env, "retention", "report", "--as", "below")
    assert code == 0 and hidden not in out
    assert hidden in _evault(data, env, "retention", "report")[1]
