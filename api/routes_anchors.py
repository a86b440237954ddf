"""Outside anchors of the log: RFC 3161 time-stamps of checkpoints (``[anchors]``).

Guarantees:

- ``/ledger/timestamp/<size>`` and ``/ledger/checkpoint.tsr`` are public like the checkpoint:
  a token says only when a hash existed. They serve the TSA's ``TimeStampResp`` (DER,
  ``application/timestamp-reply``) for the checkpoint of that size, resp. the latest
  checkpoint; 404 while it has none (yet). The message imprint is SHA-256 of the checkpoint
  note's body; ``evault-verify`` and ``openssl ts -verify`` check it.
- :func:`anchors_ctx` runs the time-stamper (``vault.anchors.timestamps``) when ``anchors.tsa_url``
  is set; it reads the configured CA file at start (a missing or unreadable file fails the start).
  A TSA that is down only delays its own tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from api import schemas as S
from api.keys import READINESS, RUNTIME, WORKER
from api.openapi import content_response, operation, path
from vault.anchors.timestamps import Timestamper, timestamp_of
from vault.errors import ConfigError, NotFound
from verify.errors import MalformedError
from verify.timestamp import load_tsa_certs

__all__ = ["anchors_ctx", "routes"]

REPLY_TYPE = "application/timestamp-reply"
routes = web.RouteTableDef()
_REPLY = {REPLY_TYPE: S.BINARY}
_SIZE = {"type": "integer", "minimum": 0}


async def anchors_ctx(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: the time-stamper, when ``anchors.tsa_url`` is set (append it
    after the runtime's context). Every process may run one; one stamps at a time."""
    rt = app[RUNTIME]
    cfg = rt.cfg.anchors
    if not cfg.tsa_enabled or app[WORKER]:  # an API worker: its main process stamps
        yield
        return
    ca_path = rt.cfg.path(Path(cfg.tsa_ca_file))
    try:
        cas = load_tsa_certs(await asyncio.to_thread(ca_path.read_bytes))
    except (OSError, MalformedError) as exc:
        raise ConfigError(f"anchors.tsa_ca_file {ca_path}: {exc}") from exc
    if not cas:
        raise ConfigError(f"anchors.tsa_ca_file {ca_path}: no certificate in it")
    stamper = Timestamper(rt.db.pool, cfg, cas)
    stamper.start()
    app[READINESS]["timestamper"] = lambda: "ok" if stamper.alive() else "stopped"
    try:
        yield
    finally:
        await stamper.stop()


def _reply(token: bytes, cache: str) -> web.Response:
    return web.Response(body=token, content_type=REPLY_TYPE, headers={"Cache-Control": cache})


@routes.get("/ledger/timestamp/{size:[0-9]{1,19}}")
@operation(
    "The RFC 3161 time-stamp of the checkpoint of one tree size",
    tags=["ledger"],
    auth=False,
    params=[path("size", "tree size of a signed checkpoint", _SIZE)],
    responses={
        200: content_response("TimeStampResp (DER); imprint SHA-256 of the note body", _REPLY),
        404: "no time-stamp for a checkpoint of that size (yet)",
    },
)
async def timestamp(request: web.Request) -> web.Response:
    """The TSA's TimeStampResp for the checkpoint of ``size`` (immutable once it exists)."""
    token = await timestamp_of(request.app[RUNTIME].db.pool, int(request.match_info["size"]))
    if token is None:
        raise NotFound("no time-stamp for a checkpoint of that size")
    return _reply(token, "public, max-age=31536000, immutable")


@routes.get("/ledger/checkpoint.tsr")
@operation(
    "The RFC 3161 time-stamp of the latest checkpoint",
    tags=["ledger"],
    auth=False,
    responses={
        200: content_response("TimeStampResp (DER) of /ledger/checkpoint's body", _REPLY),
        404: "the latest checkpoint has no time-stamp (yet)",
    },
)
async def latest_timestamp(request: web.Request) -> web.Response:
    """The TimeStampResp of the latest checkpoint, with its size in ``Evault-Checkpoint-Size``."""
    rt = request.app[RUNTIME]
    cp = await rt.ledger.latest()
    token = None if cp is None else await timestamp_of(rt.db.pool, cp.size)
    if cp is None or token is None:
        raise NotFound("the latest checkpoint has no time-stamp yet")
    resp = _reply(token, "public, max-age=1")
    resp.headers["Evault-Checkpoint-Size"] = str(cp.size)
    return resp
