"""The ledger's public read paths (C2SP tlog-tiles) and health endpoints."""

from __future__ import annotations

import asyncio

from aiohttp import web

from api.keys import READINESS, RUNTIME
from api.problems import RETRY_AFTER
from vault.db import is_outage
from vault.errors import NotFound
from verify.errors import MalformedError
from verify.tiles import parse_tile_path

IMMUTABLE = "public, max-age=31536000, immutable"
OCTETS = "application/octet-stream"
READY_TIMEOUT = 5.0  # seconds: a database that takes longer is not ready

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers and the ledger state is readable."""
    rt = request.app[RUNTIME]
    size: int | None = None
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            size = await rt.ledger.size()
        checks = {"database": "ok"}
    except Exception as exc:
        if not is_outage(exc):
            raise
        # a 503 naming the dependency; ready again as soon as the database answers
        checks = {"database": f"unavailable: {type(exc).__name__}"}
    for name, probe in request.app[READINESS].items():
        checks[name] = probe()
    ok = all(v == "ok" for v in checks.values())
    body = {"status": "ok" if ok else "degraded", "checks": checks, "ledger_size": size}
    headers = {} if ok else {"Retry-After": RETRY_AFTER}
    return web.json_response(body, status=200 if ok else 503, headers=headers)


@routes.get("/ledger/checkpoint")
async def checkpoint(request: web.Request) -> web.Response:
    """The latest signed checkpoint (mutable: cached for a second at most)."""
    cp = await request.app[RUNTIME].ledger.latest()
    if cp is None:
        raise NotFound("no checkpoint has been signed yet")
    return web.Response(
        text=cp.note,
        content_type="text/plain",
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=1"},
    )


@routes.get("/ledger/vkey")
async def vkey(request: web.Request) -> web.Response:
    """The log's verifier key (C2SP vkey); verifiers must still obtain it out of band."""
    return web.Response(text=request.app[RUNTIME].signer.vkey + "\n", content_type="text/plain")


@routes.get("/ledger/tile/{path:.+}")
async def tile(request: web.Request) -> web.Response:
    """A hash tile ``<L>/<N>[.p/<W>]`` or an entry bundle ``entries/<N>[.p/<W>]``."""
    try:
        level, index, width = parse_tile_path(request.match_info["path"])
    except MalformedError as exc:
        raise NotFound(f"not a tile path: {exc}") from exc
    ledger = request.app[RUNTIME].ledger
    if level is None:
        body = await ledger.entry_bundle(index, width)
        resp = web.Response(body=body, content_type=OCTETS, headers={"Cache-Control": IMMUTABLE})
        resp.enable_compression()
        return resp
    body = await ledger.tile(level, index, width)
    return web.Response(body=body, content_type=OCTETS, headers={"Cache-Control": IMMUTABLE})
