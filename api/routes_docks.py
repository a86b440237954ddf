"""Docks push recordings over HTTP: ``PUT /v1/docks/{dock}/files/{name}``.

Guarantees:

- Authorised before a byte of the body is read: the caller must be allowed ``upload`` on the
  dock (``access.decide``: the ``dock`` role with the dock among its ``dock_ids``). An unknown
  dock and a dock the caller may not even list are the same 404; a principal that may list it
  but not upload gets 403. Denials are recorded in the ledger (``decisions.guard``).
- ``X-Content-SHA256`` (64 hex digits) is required: 400 without it, before reading. A
  ``Content-Length`` over the limit (the dock's ``max_bytes``) is 413 before reading; a body
  that passes the limit while streaming is 413 at that point.
- The body goes through the same acquisition path as a dock file
  (``Acquirer.acquire_stream``): hashed while stored, a hash mismatch is 422 and nothing is
  kept (no object, no row, no entry); the same content again is a ``reoffered`` record, not a
  second copy (200 instead of 201), so a retry after a lost response is safe.
- A body that stalls for ``service.upload_chunk_timeout_seconds`` or runs past
  ``service.upload_total_timeout_seconds`` is 408; nothing is kept.
- ``X-Evault-Sidecar`` (optional): base64 of a JSON object with ``device_id``, ``officer_id``,
  ``recorded_at`` (ISO 8601), ``seq`` — the same fields a dock's ``<name>.json`` carries.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from api import jsonbody
from api.auth import principal_of
from api.keys import RUNTIME
from api.openapi import binary_body, define, header, json_response, operation, path
from api.streaming import body_chunks
from ingest.acquire import Acquirer
from ingest.service import open_acquirer
from vault.access import decisions
from vault.errors import BadRequest, NotFound, TooLarge
from vault.policy.decide import Action, Target
from vault.policy.labels import PUBLIC_LABEL

__all__ = ["ACQUIRER", "RECEIPT", "acquirer_ctx", "routes"]

ACQUIRER: web.AppKey[Acquirer] = web.AppKey("http_acquirer", Acquirer)
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_MAX_SIDECAR = 6000

routes = web.RouteTableDef()

RECEIPT = define(
    "Receipt",
    {
        "type": "object",
        "description": "What the vault took: the dock's proof of delivery.",
        "required": ["sha256", "size", "evidence_id", "ledger_index", "kind", "checkpoint"],
        "properties": {
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "size": {"type": "integer", "minimum": 0},
            "evidence_id": {"type": "string", "format": "uuid"},
            "ledger_index": {"type": "integer", "minimum": 0},
            "kind": {"type": "string", "enum": ["acquired", "reoffered"]},
            "checkpoint": {"type": "string", "description": "signed checkpoint note"},
            "dock_id": {"type": "string"},
            "time": {"type": "string"},
            "source_name": {"type": "string"},
        },
    },
)


async def acquirer_ctx(app: web.Application) -> AsyncIterator[None]:
    """An Acquirer for HTTP pushes (no watchers), opened on the app's runtime."""
    rt = app[RUNTIME]
    app[ACQUIRER] = open_acquirer(rt.cfg, rt.ledger, rt.storage)
    yield


def _expected_sha256(request: web.Request) -> str:
    value = request.headers.get("X-Content-SHA256")
    if value is None or not _SHA256.match(value.strip()):
        raise BadRequest("X-Content-SHA256: the body's SHA-256 as 64 hex digits is required")
    return value.strip().lower()


def _sidecar(request: web.Request) -> dict[str, Any] | None:
    raw = request.headers.get("X-Evault-Sidecar")
    if raw is None:
        return None
    if len(raw) > _MAX_SIDECAR:
        raise BadRequest("X-Evault-Sidecar: at most 6000 characters")
    try:
        decoded = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("X-Evault-Sidecar: base64 of a JSON object expected") from exc
    data = jsonbody.parse(decoded)
    if not isinstance(data, dict):
        raise BadRequest("X-Evault-Sidecar: base64 of a JSON object expected")
    return data


@routes.put("/v1/docks/{dock}/files/{name}")
@operation(
    "Push a recording from a dock",
    tags=["docks"],
    params=[
        path("dock", "dock id"),
        path("name", "the file name as on the recorder (parsed for device, officer, time)"),
        header(
            "X-Content-SHA256",
            "SHA-256 of the body, 64 hex digits",
            {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
            required=True,
        ),
        header("X-Evault-Sidecar", "base64 of a JSON object: device_id, officer_id, ..."),
    ],
    request=binary_body("the recording, streamed"),
    responses={
        201: json_response(RECEIPT, "acquired: a new evidence item", {"Location": {}}),
        200: json_response(RECEIPT, "re-offered: this content is already held"),
        400: "missing or malformed X-Content-SHA256 or sidecar, or disallowed extension",
        403: "the caller may see the dock but may not upload to it",
        404: "no such dock (or none the caller may see)",
        408: "the upload stalled or took too long; nothing was kept",
        413: "over the dock's size limit; nothing was kept",
        422: "the body does not match X-Content-SHA256; nothing was kept",
    },
)
async def put_file(request: web.Request) -> web.Response:
    """Stream a recording into the vault through the dock acquisition path; the response is
    the receipt. Idempotent: the same content again is recorded as a re-offer."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    acquirer = request.app[ACQUIRER]
    dock_id = request.match_info["dock"]
    dock = acquirer.docks.get(dock_id)
    found = None if dock is None else Target("dock", PUBLIC_LABEL, dock_id=dock_id)
    await decisions.guard(rt.ledger, principal, Action.UPLOAD, "dock", dock_id[:200], found)
    if dock is None:  # guard raises NotFound for a missing dock; never proceed without one
        raise NotFound()
    expected = _expected_sha256(request)
    sidecar = _sidecar(request)
    length = request.content_length
    if length is not None and length > dock.max_bytes:
        raise TooLarge(f"{length} bytes is over this dock's {dock.max_bytes}-byte limit")
    svc = rt.cfg.service
    chunks = body_chunks(
        request, svc.upload_chunk_timeout_seconds, svc.upload_total_timeout_seconds
    )
    receipt = await acquirer.acquire_stream(
        dock_id, request.match_info["name"], chunks, expected, dock.max_bytes, sidecar
    )
    created = receipt.kind == "acquired"
    headers = {"Location": f"/v1/evidence/{receipt.evidence_id}"} if created else {}
    return web.json_response(receipt.to_json(), status=201 if created else 200, headers=headers)
