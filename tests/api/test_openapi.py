"""The OpenAPI 3.1 document covers every route, validates, and the running service conforms to
it under Schemathesis (no server error, documented statuses, content types and schemas)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from aiohttp import web
from http_fixtures import World, seeded_service

from api.app import make_app
from api.config import load
from api.openapi import MissingOperation, _openapi_path, build, operation

# Bounded so the whole module stays well under 90 s on 2 cores.
MAX_EXAMPLES = 25
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "unsupported_method",
    ]
)


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with seeded_service(pg_admin_dsn, tmp_path_factory.mktemp("openapi") / "data") as w:
        r = w.upload("dock1", "one.mp4", os.urandom(2000))
        assert r.status == 201
        link = json.dumps({"evidence_id": r.json()["evidence_id"]}).encode()
        assert w.call("POST", "/v1/cases/C1/evidence", who="casesys", body=link).status == 201
        yield w


def test_every_route_is_in_the_served_document(world: World) -> None:
    doc = world.call("GET", "/openapi.json").json()
    app = make_app(load(None, str(world.svc.data), environ=world.svc.env))
    routes = {
        (r.method.lower(), _openapi_path(r.resource.canonical))
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    assert len(routes) >= 20
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    missing = routes - documented
    assert not missing, f"routes missing from /openapi.json: {sorted(missing)}"
    assert documented == routes
    assert doc == json.loads(json.dumps(build(app)))


def test_document_is_valid_openapi_3_1(world: World) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    doc = world.call("GET", "/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    validator.validate(doc)
    assert "ProblemDetails" in doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "default" in op["responses"], (method, path)
            assert op["summary"] and op["operationId"], (method, path)


def test_undocumented_route_fails_loudly() -> None:
    app = web.Application()

    async def documented(request: web.Request) -> web.Response:
        return web.Response()

    async def undocumented(request: web.Request) -> web.Response:
        return web.Response()

    operation("ok", responses={200: "ok"}, auth=False)(documented)
    app.router.add_get("/a/{x:.+}", documented)
    assert "/a/{x}" in build(app)["paths"]
    app.router.add_post("/b", undocumented)
    with pytest.raises(MissingOperation, match="POST /b"):
        build(app)


@pytest.mark.parametrize("who", ["admin", "reviewer"])
def test_schemathesis_conformance(world: World, who: str) -> None:
    pytest.importorskip(
        "schemathesis", reason="schemathesis is not installed (pip install -e .[dev])"
    )
    seed = os.environ.get("EVAULT_SCHEMATHESIS_SEED", "20261126")
    cmd = [
        sys.executable,
        "-c",
        "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "run",
        world.svc.url + "/openapi.json",
        "-H",
        f"Authorization: Bearer {world.tokens[who]}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--request-timeout",
        "20",
        "--no-shrink",
        "--seed",
        seed,
        # One worker: with several, hypothesis' lambda descriptions call ast.parse from
        # threads, which trips a CPython 3.11 bug ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=world.svc.env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    assert "passed" in out
    # And the service is still healthy afterwards.
    assert world.call("GET", "/readyz").status == 200
