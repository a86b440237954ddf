"""The OpenAPI 3.1 document covers every route and validates (the running service's conformance
to it under Schemathesis: test_openapi_fuzz.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from aiohttp import web

from api.app import make_app
from api.config import load
from api.openapi import MissingOperation, _openapi_path, build, operation
from tests.api.http_fixtures import World, inprocess_service


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with inprocess_service(pg_admin_dsn, tmp_path_factory.mktemp("openapi") / "data") as w:
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
