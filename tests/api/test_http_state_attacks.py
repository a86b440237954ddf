"""Tampered access state through the running service: a case's label lowered in SQL (the app in
this process), and an assignment put back after its withdrawal by another process (a real
`evault serve`), are refused over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import asyncpg

from api.config import load
from api.runtime import open_runtime
from tests.api.http_fixtures import app_world, seeded_service
from vault.access import principals


def _sql(dsn: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for s in statements:
                await conn.execute(s)
        finally:
            await conn.close()

    asyncio.run(run())


def _state_failures(metrics: str) -> float:
    """``evault_integrity_failures_total{source="state"}`` (0 before the first one)."""
    for line in metrics.splitlines():
        if line.startswith('evault_integrity_failures_total{source="state"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_attack_silent_declassification_over_http(pg_admin_dsn: str, tmp_path: Path) -> None:
    """In this process (nothing here needs another one): the app behind aiohttp's test client."""
    async with app_world(pg_admin_dsn, tmp_path / "data") as w:
        r = await w.upload("dock1", "secret.mp4", os.urandom(4000))
        assert r.status == 201, r.body
        eid = str(r.json()["evidence_id"])
        body = json.dumps({"evidence_id": eid}).encode()
        assert (await w.call("POST", "/v1/cases/CS/evidence", who="admin", body=body)).status == 201

        async def listed() -> set[str]:
            r = await w.call("GET", "/v1/evidence", who="reviewer")
            assert r.status == 200, r.body
            return {str(i["id"]) for i in r.json()["items"]}

        assert eid not in await listed()  # internal reviewer, secret case
        assert (await w.call("GET", f"/v1/evidence/{eid}", who="reviewer")).status == 404
        before = _state_failures((await w.call("GET", "/metrics")).body.decode())

        conn = await asyncpg.connect(w.dsn)
        try:
            await conn.execute("UPDATE cases SET label_level = 0 WHERE id = 'CS'")
        finally:
            await conn.close()
        assert eid not in await listed()
        r = await w.call("GET", f"/v1/evidence/{eid}", who="reviewer")
        assert r.status == 422 and r.problem()["type"].endswith("state-tampered"), r.body
        assert (await w.call("GET", "/v1/cases/CS", who="reviewer")).status == 422
        after = _state_failures((await w.call("GET", "/metrics")).body.decode())
        assert after > before  # the alarm, not just a refusal


def test_attack_rolled_back_assignment_over_http(pg_admin_dsn: str, tmp_path: Path) -> None:
    """Unassigned by another process (the CLI's runtime), then put back in SQL with its
    genuine tag: the running service refuses it without a restart."""
    with seeded_service(pg_admin_dsn, tmp_path / "data") as w:
        dsn = w.svc.env["EVAULT_DATABASE_DSN"]
        assert w.call("GET", "/v1/cases/C1", who="reviewer").status == 200
        cfg = load(None, str(w.svc.data), environ=w.svc.env)

        async def unassign() -> asyncpg.Record:
            async with open_runtime(cfg) as rt:
                row = await rt.db.pool.fetchrow(
                    "SELECT * FROM principal_cases WHERE principal_id = 'reviewer'"
                    " AND case_id = 'C1'"
                )
                admin = await principals.load(rt.db.pool, "admin")
                await principals.unassign(rt.db.pool, rt.ledger, admin, "reviewer", "C1")
                assert row is not None
                return row

        row = asyncio.run(unassign())
        _sql(
            dsn,
            "INSERT INTO principal_cases (principal_id, case_id, assigned_at, ledger_idx, tag)"
            f" VALUES ('reviewer', 'C1', '{row['assigned_at'].isoformat()}',"
            f" {row['ledger_idx']}, '\\x{bytes(row['tag']).hex()}')",
        )
        assert w.call("GET", "/v1/cases/C1", who="reviewer").status == 404
