"""Evidence rows edited in the database (DESIGN §7), against the service over HTTP (the app in
this process, behind aiohttp's test client).

A database insider, as the service's own role ``evault_app`` and as the superuser, edits what
decides access or which bytes an id serves; every such edit is refused (422, never the tampered
value), recorded as a ``denied`` entry and raised as an alarm. Undoing the edit makes the row
verify again (tags are deterministic). Content of evidence that scrub found failing is refused
unless an auditor or admin asks for it explicitly, which the ``accessed`` entry records.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from tests.api.http_fixtures import AppWorld, app_world
from vault.access import principals, tokens
from vault.access.decisions import TAMPERED_REASON
from vault.cases import links as cases
from vault.policy.decide import Role
from vault.policy.labels import Level

ROLES = ["evault_app", "superuser"]
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AppWorld]:
    tmp = tmp_path_factory.mktemp("evstate")
    async with app_world(pg_admin_dsn, tmp / "data") as w:
        secret_sidecar = base64.b64encode(json.dumps({"label": "secret"}).encode()).decode()
        for name, extra in [
            ("a.mp4", {}),
            ("b.mp4", {}),
            ("s.mp4", {"X-Evault-Sidecar": secret_sidecar}),
            ("o.mp4", {}),
        ]:
            data = os.urandom(4096)
            r = await w.upload("dock1", name, data, **extra)
            assert r.status == 201, r.body
            w.evidence[name] = r.json()
            w.content[name] = data
        w.tokens["forensic"] = await _setup(w)
        yield w


async def _setup(w: AppWorld) -> str:
    """Link a, b and the secret s to the internal case C1 (the reviewer is assigned to it);
    add a principal that is an auditor and a legal reviewer (may stream, may override)."""
    db, ledger = w.rt.db.pool, w.rt.ledger
    admin = await principals.load(db, "admin")
    for name in ("a.mp4", "b.mp4", "s.mp4"):
        await cases.link(db, ledger, admin, "C1", eid(w, name))
    spec = principals.PrincipalSpec(
        id="forensic",
        roles=frozenset({Role.AUDITOR, Role.LEGAL_REVIEWER}),
        clearance=Level.TOP_SECRET,
        caveats=frozenset(),
    )
    await principals.add(db, ledger, admin, spec)
    await principals.assign(db, ledger, admin, "forensic", "C1")
    issued = await tokens.create(db, ledger, admin, "forensic", timedelta(days=1))
    return issued.token


def eid(w: AppWorld, name: str) -> str:
    return str(w.evidence[name]["evidence_id"])


@asynccontextmanager
async def insider(w: AppWorld, role: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection as the app role or as the superuser (triggers bypassed)."""
    conn: asyncpg.Connection[Any] = await asyncpg.connect(w.dsn)
    try:
        if role == "evault_app":
            await conn.execute("SET ROLE evault_app")
        else:
            await conn.execute("ALTER TABLE evidence DISABLE TRIGGER ALL")
        yield conn
    finally:
        if role != "evault_app":
            await conn.execute("ALTER TABLE evidence ENABLE TRIGGER ALL")
        await conn.close()


async def rows(w: AppWorld, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(w.dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def state_failures(w: AppWorld) -> float:
    text = (await w.call("GET", "/metrics")).body.decode()
    m = re.search(r'^evault_integrity_failures_total\{source="state"\} (\S+)$', text, re.M)
    return 0.0 if m is None else float(m[1])


async def denied_tampered(w: AppWorld) -> int:
    found = await rows(w, "SELECT data FROM ledger_entries WHERE kind = 'denied' ORDER BY idx")
    return sum(json.loads(bytes(r["data"])).get("reason") == TAMPERED_REASON for r in found)


async def alarm_events(w: AppWorld, evidence_id: str) -> int:
    found = await rows(w, "SELECT payload FROM event_outbox WHERE type = 'integrity.failure'")
    payloads = [json.loads(r["payload"]) for r in found]
    return sum(p.get("source") == "state" and p.get("key") == [evidence_id] for p in payloads)


def assert_tampered(w: AppWorld, reply: Any) -> None:
    assert reply.status == 422, (reply.status, reply.body[:300])
    assert reply.problem()["type"].endswith("/state-tampered")


async def _execute(w: AppWorld, role: str, *statements: tuple[str, tuple[object, ...]]) -> None:
    async with insider(w, role) as conn, conn.transaction():
        for sql, args in statements:
            await conn.execute(sql, *args)


# -- attack: lowering a label in the database ------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
async def test_attack_label_lowered_in_the_database_is_refused(world: AppWorld, role: str) -> None:
    w = world
    s = eid(w, "s.mp4")
    before = await w.call("GET", f"/v1/evidence/{s}/content", who="reviewer")
    assert before.status == 404  # secret, the reviewer is cleared for internal only
    failures, denials = await state_failures(w), await denied_tampered(w)
    await _execute(w, role, ("UPDATE evidence SET label_level = 0 WHERE id = $1::uuid", (s,)))
    try:
        r = await w.call("GET", f"/v1/evidence/{s}/content", who="reviewer")
        assert_tampered(w, r)
        assert w.content["s.mp4"] not in r.body
        meta = await w.call("GET", f"/v1/evidence/{s}", who="reviewer")
        assert_tampered(w, meta)
        listed = await w.call("GET", "/v1/evidence", who="reviewer", params={"case": "C1"})
        assert listed.status == 200 and s not in {i["id"] for i in listed.json()["items"]}
        assert await denied_tampered(w) >= denials + 2  # content and metadata: each a denied entry
        assert await state_failures(w) >= failures + 3  # the listing raised it too
        assert await alarm_events(w, s) >= 1
    finally:
        await _execute(w, role, ("UPDATE evidence SET label_level = 3 WHERE id = $1::uuid", (s,)))
    assert (await w.call("GET", f"/v1/evidence/{s}/content", who="reviewer")).status == 404
    assert (await w.call("GET", f"/v1/evidence/{s}/content", who="legal")).status == 200


# -- attack: swapping the content hashes of two rows ------------------------------------------


@pytest.mark.parametrize("role", ROLES)
async def test_attack_swapped_hashes_serve_no_bytes(world: AppWorld, role: str) -> None:
    w = world
    a, b = eid(w, "a.mp4"), eid(w, "b.mp4")
    sha_a, sha_b = w.evidence["a.mp4"]["sha256"], w.evidence["b.mp4"]["sha256"]
    swap = "UPDATE evidence SET sha256 = $2 WHERE id = $1::uuid"
    tmp = "0" * 64
    await _execute(w, role, (swap, (a, tmp)), (swap, (b, sha_a)), (swap, (a, sha_b)))
    try:
        for who in ("reviewer", "legal", "casesys"):
            r = await w.call("GET", f"/v1/evidence/{a}/content", who=who)
            assert_tampered(w, r)
            assert r.headers.get("etag") is None and w.content["b.mp4"] not in r.body
        # also once scrub has flagged A: still refused as tampered, never B's bytes
        await _execute(
            w, role, ("UPDATE evidence SET integrity = 'mismatch' WHERE id = $1::uuid", (a,))
        )
        r = await w.call("GET", f"/v1/evidence/{a}/content", who="forensic",
                   params={"integrity_override": "true"})  # fmt: skip
        assert_tampered(w, r)
        # the lookup by hash answers from no forged row
        v = await w.call("POST", "/v1/verify", who="reviewer", params={"sha256": sha_b})
        assert v.status == 422
    finally:
        await _execute(
                w, role, (swap, (a, tmp)), (swap, (b, sha_b)), (swap, (a, sha_a)),
                ("UPDATE evidence SET integrity = 'ok' WHERE id = $1::uuid", (a,)),
            )  # fmt: skip
    r = await w.call("GET", f"/v1/evidence/{a}/content", who="reviewer")
    assert r.status == 200 and r.body == w.content["a.mp4"] and sha_a in r.headers["etag"]


# -- attack: editing who recorded it, on which device, when ----------------------------------


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("column", "value"),
    [("officer_id", "OFF1"), ("device_id", "FORGED-1"), ("recorded_at", "2020-01-01T00:00:00Z")],
)
async def test_attack_edited_recording_facts_are_detected(
    world: AppWorld, role: str, column: str, value: str
) -> None:
    w = world
    o = eid(w, "o.mp4")
    found = await rows(w, f"SELECT {column} FROM evidence WHERE id = $1::uuid", o)
    original = found[0][column]
    cast = "::timestamptz" if column == "recorded_at" else ""
    sql = f"UPDATE evidence SET {column} = $2{cast} WHERE id = $1::uuid"
    arg: object = value
    if column == "recorded_at":
        arg = datetime.fromisoformat(value)
    await _execute(w, role, (sql, (o, arg)))
    try:
        for who in ("auditor", "admin"):
            r = await w.call("GET", f"/v1/evidence/{o}", who=who)
            assert_tampered(w, r)
            assert b"FORGED" not in r.body and b"OFF1" not in r.body and b"2020-01-01" not in r.body
            listed = await w.call("GET", "/v1/evidence", who=who)
            assert listed.status == 200
            assert o not in {i["id"] for i in listed.json()["items"]}
        if column == "officer_id":  # the forged recorder sees nothing of it either
            mine = (await w.call("GET", "/v1/evidence", who="officer")).json()["items"]
            assert o not in {i["id"] for i in mine}
            assert (await w.call("GET", f"/v1/evidence/{o}/content", who="officer")).status == 422
    finally:
        await _execute(
            w, role, (f"UPDATE evidence SET {column} = $2 WHERE id = $1::uuid", (o, original))
        )
    assert (await w.call("GET", f"/v1/evidence/{o}", who="auditor")).status == 200


# -- content served is content logged: scrub failures ----------------------------------------


async def test_content_that_failed_scrub_is_refused_unless_overridden(world: AppWorld) -> None:
    w = world
    a = eid(w, "a.mp4")
    await _execute(
        w,
        "evault_app",
        ("UPDATE evidence SET integrity = 'mismatch' WHERE id = $1::uuid", (a,)),
    )
    try:
        r = await w.call("GET", f"/v1/evidence/{a}/content", who="reviewer")
        assert r.status == 422 and "mismatch" in r.problem()["detail"]
        assert r.problem()["type"].endswith("/integrity-failed")
        r = await w.call("GET", f"/v1/evidence/{a}/content", who="reviewer",
                   params={"integrity_override": "true"})  # fmt: skip
        assert r.status == 422  # not an auditor or admin: the override does not apply
        r = await w.call("GET", f"/v1/evidence/{a}/content", who="forensic",
                   params={"integrity_override": "true"})  # fmt: skip
        assert r.status == 200 and r.body == w.content["a.mp4"]
        found = await rows(
            w, "SELECT data FROM ledger_entries WHERE kind IN ('accessed', 'denied')"
        )
        bodies = [json.loads(bytes(x["data"])) for x in found]
        assert any(
            b.get("integrity_override") == "mismatch" for b in bodies if b["kind"] == "accessed"
        )
        assert any(b.get("reason", "").startswith("integrity: the evidence failed") for b in bodies)
    finally:
        await _execute(
            w, "evault_app", ("UPDATE evidence SET integrity = 'ok' WHERE id = $1::uuid", (a,))
        )
    assert (await w.call("GET", f"/v1/evidence/{a}/content", who="reviewer")).status == 200
