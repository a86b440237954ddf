"""A client's mistake is never a 5xx, an error never leaks, and no answer or ledger entry tells
apart a missing thing from one the caller may not see — over real HTTP against `evault serve`
running under ``python -O`` (so nothing relies on an ``assert``)."""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from api.config import load
from api.runtime import open_runtime
from tests.api.http_fixtures import World, seeded_service
from vault.access import principals, tokens
from vault.policy.decide import Role
from vault.policy.labels import Level

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("badinput")
    with seeded_service(pg_admin_dsn, tmp / "data", {"PYTHONOPTIMIZE": "1"}) as w:
        for name in ("loose.mp4", "linked.mp4"):
            data = os.urandom(2000)
            r = w.upload("dock1", name, data)
            assert r.status == 201, r.body
            w.evidence[name] = r.json()
        body = json.dumps({"evidence_id": w.evidence["linked.mp4"]["evidence_id"]}).encode()
        assert w.call("POST", "/v1/cases/C1/evidence", who="casesys", body=body).status == 201
        w.tokens["low_auditor"] = asyncio.run(_add_low_auditor(w))
        yield w


async def _add_low_auditor(w: World) -> str:
    """An auditor cleared for internal only: the secret case CS is invisible to it."""
    cfg = load(None, str(w.svc.data), environ=w.svc.env)
    async with open_runtime(cfg) as rt:
        admin = await principals.load(rt.db.pool, "admin")
        spec = principals.PrincipalSpec(
            id="low_auditor", roles=frozenset({Role.AUDITOR}), clearance=Level.INTERNAL
        )
        await principals.add(rt.db.pool, rt.ledger, admin, spec)
        issued = await tokens.create(rt.db.pool, rt.ledger, admin, "low_auditor", timedelta(days=1))
        return issued.token


def _db(w: World) -> str:
    return w.svc.env["EVAULT_DATABASE_DSN"]


async def _sql(dsn: str, *statements: str) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return [await conn.fetch(s) for s in statements]
    finally:
        await conn.close()


def ledger_tail(w: World, after: int) -> list[dict[str, Any]]:
    """Public fields of the entries after index ``after`` (time and commitments removed)."""
    (rows,) = asyncio.run(
        _sql(_db(w), f"SELECT idx, data FROM ledger_entries WHERE idx > {after} ORDER BY idx")
    )
    out = []
    for r in rows:
        body = json.loads(bytes(r["data"]))
        out.append({k: v for k, v in body.items() if k not in ("time", "commitments")})
    return out


def ledger_size(w: World) -> int:
    (rows,) = asyncio.run(_sql(_db(w), "SELECT coalesce(max(idx), -1) AS n FROM ledger_entries"))
    return int(rows[0]["n"])


def assert_client_error(r: Any, status: int = 400) -> dict[str, Any]:
    assert r.status == status, (r.status, r.body[:300])
    return dict(r.problem())


# -- client mistakes are 4xx ------------------------------------------------------------------


def test_attack_deeply_nested_json_is_400_on_every_json_route(world: World) -> None:
    w = world
    eid = w.evidence["loose.mp4"]["evidence_id"]
    routes = [
        ("PUT", "/v1/cases/C1", "casesys"),
        ("POST", "/v1/cases/C1/evidence", "casesys"),
        ("POST", "/v1/cases/C1/coverage", "legal"),
        ("POST", "/v1/cases/C1/exports", "legal"),
        ("POST", f"/v1/evidence/{eid}/clips", "casesys"),
    ]
    bodies = [b"[" * 100_000, b'{"a":' * 100_000, b'{"title":' + b"[" * 65 + b"]" * 65 + b"}"]
    for method, path, who in routes:
        for body in bodies:
            problem = assert_client_error(w.call(method, path, who=who, body=body))
            assert "nested deeper than 64" in problem["detail"]
    # still reasonable nesting is fine and reaches the route's own checks
    r = w.call("PUT", "/v1/cases/C1", who="casesys", body=b'{"title": [[[1]]]}')
    assert r.status == 400 and "title" in r.problem()["detail"]


def test_attack_lone_surrogate_or_nul_in_json_is_400_and_nothing_is_stored(world: World) -> None:
    w = world
    for body in [
        b'{"title": "\\ud800"}',
        b'{"title": "a\\u0000b"}',
        b'{"title": "\xed\xa0\x80"}',  # a surrogate encoded as raw bytes
        b'{"title": "ok", "\\udfff": 1}',  # in a key
        b'{"title": "\xff"}',  # not UTF-8 at all
    ]:
        assert_client_error(w.call("PUT", "/v1/cases/NEWSURR", who="casesys", body=body))
    assert w.call("GET", "/v1/cases/NEWSURR", who="casesys").status == 404
    eid = w.evidence["loose.mp4"]["evidence_id"]
    body = json.dumps({"evidence_id": eid + "\x00"}).encode()
    assert_client_error(w.call("POST", "/v1/cases/C1/evidence", who="casesys", body=body))


def test_attack_nul_in_path_or_query_is_400(world: World) -> None:
    w = world
    for path in [
        "/v1/evidence/%00",
        "/v1/cases/a%00b",
        "/v1/cases/a%00b/evidence",
        "/v1/renditions/%00/content",
        "/v1/jobs/%00",
        "/v1/evidence?officer=a%00b",
        "/v1/evidence?case=a%00b",
        "/v1/evidence?device=a%00b",
        "/v1/evidence?dock=a%00b",
        "/v1/evidence?a%00=1",
    ]:
        for who in ("casesys", "reviewer"):
            r = w.call("GET", path, who=who)
            assert r.status == 400, (path, r.status, r.body[:200])
            assert "NUL" in r.problem()["detail"]
    # without credentials too: never a 5xx
    assert w.call("GET", "/v1/evidence/%00").status == 400


def test_attack_dock_file_name_with_nul_is_400_not_retry_forever(world: World) -> None:
    w = world
    data = os.urandom(500)
    r = w.upload("dock1", "a%00b.mp4", data)
    assert_client_error(r)
    assert "Retry-After" not in r.headers and "retry-after" not in r.headers
    sidecar = base64.b64encode(json.dumps({"officer_id": "O\x00"}).encode()).decode()
    assert_client_error(w.upload("dock1", "fine.mp4", data, **{"X-Evault-Sidecar": sidecar}))
    deep = base64.b64encode(b"[" * 4000).decode()
    assert_client_error(w.upload("dock1", "fine.mp4", data, **{"X-Evault-Sidecar": deep}))
    # the same content with a storable name is taken at once
    assert w.upload("dock1", "fine.mp4", data).status == 201


# -- existence oracles --------------------------------------------------------------------------


def test_attack_put_case_as_auditor_is_403_whatever_exists(world: World) -> None:
    """The role is checked first: an auditor cannot tell an invisible case from a free id."""
    w = world
    body = json.dumps({"title": "probe"}).encode()
    before = ledger_size(w)
    hidden = w.call("PUT", "/v1/cases/CS", who="low_auditor", body=body)
    new = w.call("PUT", "/v1/cases/NEVER-MADE", who="low_auditor", body=body)
    visible = w.call("PUT", "/v1/cases/C1", who="low_auditor", body=body)
    assert hidden.status == new.status == visible.status == 403
    assert hidden.problem() == new.problem() == visible.problem()
    tail = ledger_tail(w, before)
    assert len(tail) == 3 and tail[0] == tail[1] == tail[2]
    assert tail[0]["kind"] == "denied" and tail[0]["action"] == "link"
    # the malformed body is not even looked at before the role
    assert w.call("PUT", "/v1/cases/CS", who="low_auditor", body=b"[").status == 403
    assert w.call("GET", "/v1/cases/NEVER-MADE", who="casesys").status == 404


def test_attack_put_case_below_its_label_never_claims_no_such_case(world: World) -> None:
    """case_system (confidential) and the secret case CS: ids are the case system's own, so the
    id is reported as taken (409), never as missing, and nothing about the case is revealed."""
    w = world
    body = json.dumps({"title": "overwrite attempt"}).encode()
    r = w.call("PUT", "/v1/cases/CS", who="casesys", body=body)
    problem = assert_client_error(r, 409)
    assert "Secret case" not in r.body.decode() and "secret" not in problem["detail"].lower()
    created = w.call("PUT", "/v1/cases/C-NEW-1", who="casesys", body=body)
    assert created.status == 201 and created.json()["title"] == "overwrite attempt"
    again = w.call("PUT", "/v1/cases/C-NEW-1", who="casesys", body=body)
    assert again.status == 200
    # the secret case is untouched
    legal = w.call("GET", "/v1/cases/CS", who="legal")
    assert legal.status == 200 and legal.json()["title"] == "Secret case"


def test_attack_other_principals_job_and_missing_job_look_the_same(world: World) -> None:
    w = world
    eid = w.evidence["loose.mp4"]["evidence_id"]
    body = json.dumps({"start_ms": 0, "end_ms": 500}).encode()
    r = w.call("POST", f"/v1/evidence/{eid}/clips", who="casesys", body=body)
    assert r.status == 202, r.body
    job = r.json()["id"]
    assert w.call("GET", f"/v1/jobs/{job}", who="casesys").status == 200
    before = ledger_size(w)
    theirs = w.call("GET", f"/v1/jobs/{job}", who="reviewer")
    missing = w.call("GET", f"/v1/jobs/{job + 100_000}", who="reviewer")
    assert theirs.status == missing.status == 404
    assert theirs.problem() == missing.problem()
    tail = ledger_tail(w, before)
    assert len(tail) == 2, tail  # one denied entry each: the same ledger effect
    assert [t["kind"] for t in tail] == ["denied", "denied"]
    # The entries record the real reasons (which only roles that may read entries see); the
    # caller's answer above is the same.
    assert {k: v for k, v in tail[0].items() if k != "reason"} == {
        k: v for k, v in tail[1].items() if k != "reason"
    }


# -- faults inside the service -----------------------------------------------------------------


def test_unexpected_error_is_problem_json_with_request_id_logged_once(world: World) -> None:
    """A fault the code does not expect (here: a column renamed under the running service)
    is a 500 problem+json that names nothing internal, and one traceback in the log."""
    w = world
    dsn = _db(w)
    asyncio.run(_sql(dsn, "ALTER TABLE cases RENAME COLUMN title TO title_gone"))
    try:
        rid = "fault-1234"
        r = w.call("GET", "/v1/cases/C1", who="casesys", headers={"X-Request-Id": rid})
    finally:
        asyncio.run(_sql(dsn, "ALTER TABLE cases RENAME COLUMN title_gone TO title"))
    assert r.status == 500 and r.headers["x-request-id"] == rid
    body = json.loads(r.body)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert body["request_id"] == rid and body["status"] == 500
    for internal in ("title_gone", "KeyError", "Traceback", "cases"):
        assert internal not in r.body.decode()
    log = (Path(w.svc.data) / "serve.log").read_text()
    assert log.count(f"request {rid} failed with an unexpected error") == 1
    at = log.index(f"request {rid} failed")
    assert "Traceback" in log[at : at + 400]
    assert w.call("GET", "/v1/cases/C1", who="casesys").status == 200


def test_bug_while_recording_a_decision_is_not_reported_as_an_outage(world: World) -> None:
    """A refused append (not the database being down) is a 500, not a 503 'retry later'."""
    w = world
    dsn = _db(w)
    eid = w.evidence["loose.mp4"]["evidence_id"]
    asyncio.run(_sql(dsn, "ALTER TABLE ledger_refs RENAME TO ledger_refs_gone"))
    try:
        r = w.call("GET", f"/v1/evidence/{eid}", who="casesys")
    finally:
        asyncio.run(_sql(dsn, "ALTER TABLE ledger_refs_gone RENAME TO ledger_refs"))
    assert r.status == 500, (r.status, r.body)
    assert "retry-after" not in r.headers and r.problem()["status"] == 500
    assert w.call("GET", f"/v1/evidence/{eid}", who="casesys").status == 200


def test_no_assert_guards_production_paths() -> None:
    """``python -O`` strips asserts: checks after authorization must be real ones."""
    found = []
    for path in [
        *ROOT.glob("api/*.py"),
        *ROOT.glob("vault/access/*.py"),
        ROOT / "vault/cases/links.py",
    ]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assert):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_request_id_is_in_every_problem(world: World) -> None:
    w = world
    for method, path in [("GET", "/v1/evidence/%00"), ("GET", "/nowhere"), ("DELETE", "/readyz")]:
        r = w.call(method, path, headers={"X-Request-Id": "rid-77"})
        assert r.status < 500 and r.headers["x-request-id"] == "rid-77"
        assert json.loads(r.body)["request_id"] == "rid-77"
        assert re.match(r"application/problem\+json", r.headers["content-type"])


async def test_error_after_the_response_started_cuts_the_stream_short() -> None:
    """A stream failing midway cannot be turned into a problem (its status line is out): the
    connection is dropped, so the client sees a short body, never a problem glued to it."""
    from aiohttp import ClientPayloadError, ClientSession, web
    from aiohttp.test_utils import TestServer

    from api import problems

    async def half(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b"x" * 10)
        raise OSError("the disk went away midway")

    async def broken(request: web.Request) -> web.StreamResponse:
        raise ZeroDivisionError("a bug")

    app = web.Application(middlewares=[problems.problem_middleware])
    problems.setup(app)
    app.router.add_get("/half", half)
    app.router.add_get("/broken", broken)
    async with TestServer(app) as server, ClientSession() as session:
        async with session.get(server.make_url("/half")) as r:
            assert r.status == 200
            with pytest.raises(ClientPayloadError):
                await r.read()
        async with session.get(server.make_url("/broken")) as r:
            assert r.status == 500 and r.content_type == "application/problem+json"
            assert "a bug" not in await r.text()
