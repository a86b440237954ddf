"""Reviewers: verify a file or a hash, the proof of an evidence item, consistency proofs; and
the OpenAPI operations of the ledger read paths and the operations endpoints.

Guarantees:

- ``POST /v1/verify`` hashes the body as it streams (never stored; the same size limit and
  timeouts as uploads) or takes ``?sha256=``. It needs a role that grants ``verify`` at all
  (reviewer, legal_reviewer, auditor; a 403 that depends only on the caller). A match is
  reported only when the caller may ``read_metadata`` on that evidence: a match the caller may
  not see is reported exactly like no match (``held: false``, no ids).
- Every verify is ONE ``accessed`` entry (action ``verify``, target kind ``ledger``, the hash
  as a commitment), whatever the outcome, so the public ledger does not reveal whether a hash
  is held; the entry is indexed to the matches the caller was shown, and it is appended once
  everything the answer needs is read, before it is sent (fail closed: 503 if it cannot be; a
  read that fails leaves no entry).
- ``GET /v1/evidence/{id}/proof`` is an audited ``verify`` decision (``audit.authorize_then``:
  the proof is read before the entry); the proof is the ``c2sp.org/tlog-proof@v1`` text of the
  evidence's ``acquired`` entry.
- ``GET /v1/ledger/consistency`` is public like the hash tiles it is computed from (hashes
  only; entry bundles are not public, see ``api.routes_ledger``).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Annotated

from aiohttp import web
from msgspec import Meta, Struct

from api import metrics, routes_ledger
from api import models as W
from api import schemas as S
from api.auth import principal_of
from api.keys import RUNTIME
from api.openapi import (
    content_response,
    define_structs,
    json_response,
    operation,
    path,
    query_params,
)
from api.streaming import body_chunks
from api.wire import decode_query, respond
from vault import evidence as evrows
from vault.access.decisions import TAMPERED_REASON, record
from vault.access.targets import authorize_then, target_of
from vault.errors import BadRequest, Forbidden, TooLarge
from vault.keys.hostmac import RowTampered
from vault.policy.decide import ROLE_GRANTS, Action, Target, decide

__all__ = ["routes"]

routes = web.RouteTableDef()
_TEXT = {"text/plain": S.STRING}
_MAX_SIZE = (1 << 62) - 1


class VerifyQuery(Struct, forbid_unknown_fields=True):
    sha256: (
        Annotated[
            str,
            Meta(
                pattern="^[0-9a-fA-F]{64}$",
                description="verify a hash instead of a body (then send no body)",
            ),
        ]
        | None
    ) = None


class Match(Struct, kw_only=True):
    evidence_id: W.Uuid
    acquired_at: W.Instant
    ledger_index: W.Index
    tlog_proof: str


class VerifyResult(Struct, kw_only=True):
    sha256: W.Sha256
    size: W.Size | None
    held: bool
    matches: list[Match]
    audit_index: W.Index


# RFC 9162 defines no consistency proof from or to an empty tree: the schema says >= 1, but 0
# is decoded, so that the ledger's answer names the empty tree.
ProofSize = Annotated[int, Meta(ge=0, le=_MAX_SIZE, extra_json_schema={"minimum": 1})]


class ConsistencyQuery(Struct, forbid_unknown_fields=True):
    old: Annotated[ProofSize, Meta(description="older tree size")]
    new: Annotated[ProofSize, Meta(description="newer tree size (at least old)")]


class ConsistencyProof(Struct):
    old: W.Index
    new: W.Index
    proof: list[Annotated[str, Meta(extra_json_schema={"contentEncoding": "base64"})]]


VERIFY_RESULT, CONSISTENCY = define_structs(VerifyResult, ConsistencyProof)


async def _digest_body(request: web.Request) -> tuple[str, int]:
    svc = request.app[RUNTIME].cfg.service
    limit = svc.verify_max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"verify accepts at most {limit} bytes")
    h = hashlib.sha256()
    size = 0
    async for chunk in body_chunks(
        request, svc.upload_chunk_timeout_seconds, svc.upload_total_timeout_seconds
    ):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"verify accepts at most {limit} bytes")
        h.update(chunk)
    return h.hexdigest(), size


@routes.post("/v1/verify")
@operation(
    "Is this file (or hash) held, and since when?",
    tags=["verify"],
    params=query_params(VerifyQuery),
    request={
        "required": False,
        "description": "the file, streamed (omit it when sha256 is given)",
        "content": {"application/octet-stream": {"schema": S.BINARY}},
    },
    responses={
        200: json_response(VERIFY_RESULT, "the answer (also when nothing visible matches)"),
        400: "malformed sha256, or both a body and sha256",
        403: "no role that grants verify",
        408: "the body stalled",
        413: "the body is over service.verify_max_bytes",
    },
)
async def verify(request: web.Request) -> web.Response:
    """Whether content is held, the evidence ids the caller may see, when each was acquired,
    its ledger index and a tlog-proof. Audited, identically for every outcome."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    if not any(Action.VERIFY in ROLE_GRANTS.get(r, {}) for r in principal.roles):
        raise Forbidden("role auditor, legal_reviewer or reviewer required for verify")
    given = decode_query(request.query, VerifyQuery).sha256  # after the role: 403 first
    size: int | None = None
    if given is not None:
        if request.body_exists and (request.content_length or 0) > 0:
            raise BadRequest("give either a body or ?sha256=, not both")
        digest = given.lower()
    else:
        digest, size = await _digest_body(request)
    try:
        rows = await evrows.by_sha256(rt.db.pool, rt.ledger.mac, digest)
    except RowTampered:  # never answer from a forged row: refused, recorded, alarm raised
        await record(
            rt.ledger,
            principal,
            Action.VERIFY,
            "ledger",
            f"sha256:{digest}",
            False,
            TAMPERED_REASON,
        )
        raise
    shown = []
    for r in rows:
        target = await target_of(rt.db.pool, r)
        if decide(principal, Action.READ_METADATA, target).allowed:
            shown.append(r)
    matches = [  # read before the entry: a read that fails leaves no ``accessed`` entry
        Match(
            evidence_id=str(r.id),
            acquired_at=r.acquired_at,
            ledger_index=r.ledger_idx,
            tlog_proof=await rt.ledger.tlog_proof(r.ledger_idx),
        )
        for r in shown
    ]
    audit_idx = await record(
        rt.ledger,
        principal,
        Action.VERIFY,
        "ledger",
        f"sha256:{digest}",
        True,
        "allowed",
        refs=[("evidence", str(r.id)) for r in shown],
    )
    return respond(
        VerifyResult(
            sha256=digest, size=size, held=bool(matches), matches=matches, audit_index=audit_idx
        )
    )


@routes.get("/v1/evidence/{id}/proof")
@operation(
    "The inclusion proof of an evidence item",
    tags=["verify"],
    params=[path("id", "evidence id")],
    responses={
        200: content_response("c2sp.org/tlog-proof@v1 of its acquired entry", _TEXT),
        403: "visible, but verify is not granted",
        404: "no such evidence",
    },
)
async def proof(request: web.Request) -> web.Response:
    """The offline proof (tlog-proof) that the evidence's ``acquired`` entry is in the log."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    eid = request.match_info["id"]

    async def tlog_proof(_item: Target) -> str | None:
        row = await evrows.load_evidence(rt.db.pool, rt.ledger.mac, eid, where="proof")
        if row is None:  # gone since the decision: NotFound, as for a missing one
            return None
        return await rt.ledger.tlog_proof(row.ledger_idx)

    # the proof is read before the entry: a read that fails leaves no ``accessed`` entry
    text = await authorize_then(
        rt.db.pool, rt.ledger, principal, Action.VERIFY, "evidence", eid, tlog_proof
    )
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


@routes.get("/v1/ledger/consistency")
@operation(
    "A consistency proof between two tree sizes",
    tags=["ledger"],
    auth=False,
    params=query_params(ConsistencyQuery),
    responses={
        200: json_response(CONSISTENCY, "RFC 9162 proof, base64 hashes"),
        400: "old or new missing, not an integer or 0 (RFC 9162 defines no proof from an "
        "empty tree), or old > new",
        404: "new exceeds the current tree size",
    },
)
async def consistency(request: web.Request) -> web.Response:
    """RFC 9162 consistency proof from tree size ``old`` to ``new`` (base64 hashes)."""
    q = decode_query(request.query, ConsistencyQuery)
    hashes = await request.app[RUNTIME].ledger.consistency(q.old, q.new)
    return respond(ConsistencyProof(q.old, q.new, [base64.b64encode(h).decode() for h in hashes]))


# -- operations of routes defined elsewhere (ledger read paths, health, metrics) -------------

_OCTETS = {"application/octet-stream": S.BINARY}
(_HEALTH,) = define_structs(routes_ledger.Health)
operation(
    "Liveness", tags=["operations"], auth=False, responses={200: json_response(_HEALTH, "up")}
)(routes_ledger.healthz)
operation(
    "Readiness: database, ledger, watchers, workers",
    tags=["operations"],
    auth=False,
    responses={
        200: json_response(_HEALTH, "ready"),
        503: json_response(_HEALTH, "degraded (checks name what)"),
    },
)(routes_ledger.readyz)
operation(
    "Prometheus metrics",
    tags=["operations"],
    auth=False,
    responses={200: content_response("text exposition format", _TEXT)},
)(metrics.metrics)
operation(
    "The latest signed checkpoint",
    tags=["ledger"],
    auth=False,
    responses={200: content_response("C2SP signed note", _TEXT), 404: "none signed yet"},
)(routes_ledger.checkpoint)
operation(
    "The log's verifier key (C2SP vkey)",
    tags=["ledger"],
    auth=False,
    responses={200: content_response("vkey", _TEXT)},
)(routes_ledger.vkey)
operation(
    "A tlog-tiles hash tile",
    tags=["ledger"],
    auth=False,
    params=[path("path", "<L>/<N>[.p/<W>]")],
    responses={200: content_response("tile bytes", _OCTETS), 404: "no such tile"},
)(routes_ledger.tile)
operation(
    "A tlog-tiles entry bundle (the ledger's entries)",
    tags=["ledger"],
    params=[path("path", "<N>[.p/<W>]")],
    responses={
        200: content_response("entry bundle bytes", _OCTETS),
        403: "the caller may not read ledger entries (see the reason)",
        404: "no such bundle",
    },
)(routes_ledger.entries)
