"""Witness cosignatures over HTTP: this service as a C2SP tlog-witness, and the cosignatures
its own checkpoints collected.

Guarantees:

- ``POST /add-checkpoint`` exists only with ``witness.enabled`` (404 otherwise); it answers as
  c2sp.org/tlog-witness says (``vault.anchors.witness``): 200 with ``cosignature/v1`` lines,
  409 with the size last cosigned as ``text/x.tlog.size``, 400/403/404/422 as problem+json.
  Public like the checkpoint: a request authenticates by the log signature it carries.
- ``/ledger/cosignatures/<size>`` and ``/ledger/cosigned-checkpoint`` are public: cosignature
  lines stored for that size, and the newest cosigned checkpoint with its lines appended (a
  note that verifies with the log key and with each witness key); 404 while there are none.
- :func:`witness_ctx` starts the witness client (``vault.anchors.cosigners``) when
  ``[[anchors.witnesses]]`` is set and loads (creating once) the witness key when
  ``witness.enabled``; a witness that is down delays only its own cosignatures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from api.config import Config
from api.keys import READINESS, RUNTIME, WORKER
from api.openapi import content_response, operation, path
from api.runtime import Runtime
from vault.anchors.cosigners import Cosigners, cosignatures_of, cosigned_checkpoint
from vault.anchors.witness import TEXT_SIZE, Witness, WitnessConflict, load_cosigner
from vault.errors import NotFound, TooLarge

__all__ = ["WITNESS", "routes", "witness_ctx", "witness_key_path", "witness_name"]

WITNESS: web.AppKey[Witness] = web.AppKey("witness", Witness)
routes = web.RouteTableDef()
_TEXT = {"text/plain": {"type": "string"}}
_SIZE = {"type": "integer", "minimum": 0}
MAX_REQUEST = 64 << 10


def witness_name(cfg: Config) -> str:
    """witness.name, or the ledger origin + ``/witness``."""
    return cfg.witness.name or cfg.ledger.origin + "/witness"


def witness_key_path(cfg: Config) -> Path:
    return cfg.path(cfg.witness.key_file)


def make_witness(rt: Runtime) -> Witness:
    """The witness of ``rt``'s configuration (its key created once if absent)."""
    cfg = rt.cfg
    cosigner = load_cosigner(witness_key_path(cfg), witness_name(cfg))
    logs = {log.origin: log.verifier for log in cfg.witness.logs}
    return Witness(rt.db.pool, cosigner, logs, cfg.path(cfg.witness.state_file))


async def witness_ctx(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context (after the runtime's): the witness, the witness client."""
    rt = app[RUNTIME]
    if rt.cfg.witness.enabled:
        app[WITNESS] = make_witness(rt)
    client = None
    if rt.cfg.anchors.witnesses and not app[WORKER]:  # an API worker: its main process asks
        client = Cosigners(rt.db.pool, rt.cfg.anchors)
        client.start()
        app[READINESS]["witnesses"] = lambda: "ok" if client.alive() else "stopped"
    try:
        yield
    finally:
        if client is not None:
            await client.stop()


@routes.post("/add-checkpoint")
@operation(
    "Cosign a checkpoint of a witnessed log (C2SP tlog-witness)",
    tags=["ledger"],
    auth=False,
    request=None,
    responses={
        200: content_response("cosignature/v1 note signature line(s)", _TEXT),
        400: "malformed request, or old size above the checkpoint's",
        413: "request over 64 KiB",
        403: "no valid signature by the log's key",
        404: "not a witnessed log (or witness.enabled is false)",
        409: content_response(
            "old size is not the size last cosigned (the body says it), or a fork",
            {TEXT_SIZE: {"type": "string"}},
        ),
        422: "the consistency proof does not verify",
    },
)
async def add_checkpoint(request: web.Request) -> web.Response:
    """Body: ``old <size>``, consistency proof lines (base64), a blank line, the checkpoint."""
    witness = request.app.get(WITNESS)
    if witness is None:
        raise NotFound("this service is not a witness (witness.enabled is false)")
    body = await request.content.read(MAX_REQUEST + 1)
    if len(body) > MAX_REQUEST:
        raise TooLarge(f"an add-checkpoint request is at most {MAX_REQUEST} bytes")
    try:
        line = await witness.add_checkpoint(body)
    except WitnessConflict as exc:
        return web.Response(status=409, text=f"{exc.size}\n", content_type=TEXT_SIZE)
    return web.Response(text=line, content_type="text/plain")


@routes.get("/ledger/cosignatures/{size:[0-9]{1,19}}")
@operation(
    "Witnesses' cosignatures of the checkpoint of one tree size",
    tags=["ledger"],
    auth=False,
    params=[path("size", "tree size of a signed checkpoint", _SIZE)],
    responses={
        200: content_response("cosignature/v1 note signature lines", _TEXT),
        404: "no cosignature for a checkpoint of that size (yet)",
    },
)
async def cosignatures(request: web.Request) -> web.Response:
    """The stored cosignature lines of the checkpoint of ``size``."""
    size = int(request.match_info["size"])
    lines = await cosignatures_of(request.app[RUNTIME].db.pool, size)
    if not lines:
        raise NotFound("no cosignature for a checkpoint of that size")
    return web.Response(text="".join(lines), content_type="text/plain")


@routes.get("/ledger/cosigned-checkpoint")
@operation(
    "The newest checkpoint witnesses cosigned, with their cosignatures",
    tags=["ledger"],
    auth=False,
    responses={
        200: content_response("the checkpoint note with cosignature lines appended", _TEXT),
        404: "no checkpoint has a cosignature yet",
    },
)
async def cosigned(request: web.Request) -> web.Response:
    """The checkpoint note plus its cosignature lines; its size in ``Evault-Checkpoint-Size``."""
    found = await cosigned_checkpoint(request.app[RUNTIME].db.pool)
    if found is None:
        raise NotFound("no checkpoint has a cosignature yet")
    resp = web.Response(text=found.note, content_type="text/plain")
    resp.headers["Evault-Checkpoint-Size"] = str(found.checkpoint.size)
    resp.headers["Cache-Control"] = "public, max-age=1"
    return resp
