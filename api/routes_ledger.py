"""The ledger's read paths (C2SP tlog-tiles) and health endpoints.

Guarantees:

- The signed checkpoint, the verifier key and the hash tiles ``/ledger/tile/<L>/<N>[.p/<W>]``
  are public: hashes and signatures disclose nothing, and they are all a witness or a
  consistency check needs.
- Entry bundles ``/ledger/tile/entries/<N>[.p/<W>]`` hold the entries themselves (evidence ids,
  labels, hashes, sizes, times of everything): they need a bearer token (401 without one) of a
  principal ``vault.access.decisions.guard_entries`` allows (403 otherwise, recorded as
  ``denied``), and are served ``private`` so no shared cache hands them to anyone else. The
  token is checked before the path is even parsed, so an anonymous caller learns nothing, not
  even which exist.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from aiohttp import web
from msgspec import UNSET, Struct, UnsetType

from api.auth import principal_of
from api.keys import READINESS, RUNTIME
from api.problems import RETRY_AFTER
from api.wire import respond
from vault.access.decisions import guard_entries
from vault.db import is_outage
from vault.errors import NotFound
from verify.errors import MalformedError
from verify.tiles import parse_tile_path

IMMUTABLE = "public, max-age=31536000, immutable"
PRIVATE_IMMUTABLE = "private, max-age=31536000, immutable"
OCTETS = "application/octet-stream"
READY_TIMEOUT = 5.0  # seconds: a database that takes longer is not ready

routes = web.RouteTableDef()


class Health(Struct, kw_only=True):
    """Liveness (``status`` alone) or readiness (each check "ok" or what is wrong)."""

    status: Literal["ok", "degraded"]
    checks: dict[str, str] | UnsetType = UNSET
    ledger_size: int | UnsetType | None = UNSET


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return respond(Health(status="ok"))


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
    body = Health(status="ok" if ok else "degraded", checks=checks, ledger_size=size)
    headers = {} if ok else {"Retry-After": RETRY_AFTER}
    return respond(body, status=200 if ok else 503, headers=headers)


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


@routes.get("/ledger/tile/entries/{path:.+}")
async def entries(request: web.Request) -> web.Response:
    """An entry bundle ``entries/<N>[.p/<W>]``: for readers of the ledger's entries only."""
    path = "entries/" + request.match_info["path"]
    await guard_entries(request.app[RUNTIME].ledger, await principal_of(request), path)
    return await _tile(request, path, entries_allowed=True)


@routes.get("/ledger/tile/{path:.+}")
async def tile(request: web.Request) -> web.Response:
    """A hash tile ``<L>/<N>[.p/<W>]`` (public)."""
    return await _tile(request, request.match_info["path"], entries_allowed=False)


async def _tile(request: web.Request, path: str, *, entries_allowed: bool) -> web.Response:
    try:
        level, index, width = parse_tile_path(path)
    except MalformedError as exc:
        raise NotFound(f"not a tile path: {exc}") from exc
    ledger = request.app[RUNTIME].ledger
    if level is None:
        if not entries_allowed:  # only the entries route (token checked) serves entries
            raise NotFound("entry bundles are served at /ledger/tile/entries/ only")
        body = await ledger.entry_bundle(index, width)
        # Compressed when the client accepts it: caches must key on Accept-Encoding too.
        headers = {"Cache-Control": PRIVATE_IMMUTABLE, "Vary": "Authorization, Accept-Encoding"}
        resp = web.Response(body=body, content_type=OCTETS, headers=headers)
        resp.enable_compression()
        return resp
    body = await ledger.tile(level, index, width)
    return web.Response(body=body, content_type=OCTETS, headers={"Cache-Control": IMMUTABLE})
