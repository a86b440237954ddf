"""Redacted copies on request: ``POST /v1/evidence/{id}/redactions`` → 202 and a job to poll.

Guarantees:

- Only reviewers and legal reviewers may ask (403 naming the roles, and a ``denied`` entry, for
  anyone else allowed to stream the item), and the request is an audited ``stream`` decision on
  the evidence: missing and invisible evidence are the same 404. The job is queued in the
  transaction that appends the ``accessed`` entry (both or neither), and what the job needs is
  read before it, so an answer other than 202 leaves no ``accessed`` entry.
- The spec (``docs/redaction.md``) is validated at once: against the probed picture size and
  duration when the item is probed, else on its own (the worker checks it against the probe
  then, and fails the job naming the fields). A bad spec is a 400 whose problem+json lists every
  field at fault (``errors``).
- The job is a PostgreSQL job (``ingest.redactjobs.REDACT``): a worker in any process renders
  it and a crash loses nothing. ``GET /v1/redactions/{job}`` shows it only to its requester or
  to a principal allowed ``read_metadata`` on its evidence (audited), exactly like a clip job;
  when done it names the ``redacted`` rendition, read through ``/v1/renditions/{id}/content``
  under that rendition's own label.
- ``POST /v1/evidence/{id}/redaction-suggestions`` → 202 and a job (``GET
  /v1/redaction-suggestions/{job}``, visible as a redaction job is) whose result lists suggested
  face and plate box tracks (``ingest.media.suggest``), ready to edit into a spec; same roles and
  decision as a redaction. 503 when the detector is not installed.
- ``POST /v1/renditions/{id}/release`` (``{"label": ...}``): a legal reviewer releases a
  redacted copy at a label (``vault.redaction.release``): 201 with the ``released`` rendition,
  whose own label then decides who may read it, within the original's cases.
- ``GET /v1/released``: the released copies the caller may list (``visible_released``), newest
  first; for the publicity role, the only things it can list at all.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from aiohttp import web
from msgspec import Meta, Struct

from api import models as W
from api import schemas as S
from api.auth import principal_of
from api.jsonbody import json_object
from api.keys import RUNTIME
from api.openapi import define, define_structs, json_body, json_response, operation, path
from api.routes_evidence import label_wire
from api.routes_jobs import job_fields, visible_job
from api.wire import decode_body, respond
from ingest.media.suggest import available
from ingest.redactjobs import REDACT, SUGGEST
from vault.access.decisions import record
from vault.access.filters import label_of
from vault.access.targets import authorize_then
from vault.db import Conn
from vault.errors import Conflict, Forbidden, Unavailable
from vault.jobs import enqueue, job_status
from vault.policy.decide import Action, Principal, Role, Target
from vault.policy.labels import Label
from vault.redaction.release import MAX_LISTED, release_copy, visible_released
from vault.redaction.spec import Frame, parse_spec, spec_bytes, spec_json
from vault.review.case_footage import probed_frame

__all__ = ["routes"]

routes = web.RouteTableDef()

_REQUESTERS = frozenset({Role.REVIEWER, Role.LEGAL_REVIEWER})

SPEC = define(
    "RedactionSpec",
    {
        "type": "object",
        "description": "a redaction spec, version 1 (docs/redaction.md)",
        "required": ["version"],
        "properties": {
            "version": {"type": "integer", "enum": [1]},
            "effect": {"type": "string", "enum": ["blur", "pixelate", "solid"]},
            "boxes": {"type": "array", "maxItems": 32, "items": {"type": "object"}},
            "frame_ranges": {"type": "array", "maxItems": 64, "items": {"type": "object"}},
            "mute_ranges": {"type": "array", "maxItems": 64, "items": {"type": "object"}},
            "tone_ranges": {"type": "array", "maxItems": 64, "items": {"type": "object"}},
        },
    },
)

JobStatus = Literal["queued", "running", "done", "failed"]


class RedactionJob(Struct, kw_only=True):
    id: int
    kind: Literal["redaction"]
    status: JobStatus
    evidence_id: W.Uuid
    spec_sha256: W.Sha256
    spec: Annotated[Any, Meta(extra_json_schema=SPEC)]
    attempts: int
    created_at: W.Instant
    updated_at: W.Instant
    rendition_id: W.Uuid | None
    rendition: str | None
    error: str | None


class ReleaseRequest(Struct, forbid_unknown_fields=True):
    label: Annotated[Any, Meta(extra_json_schema=S.LABEL_INPUT)]


class ReleasedCopy(Struct, kw_only=True):
    rendition_id: W.Uuid
    label: W.Label
    ledger_index: W.Index
    content: str


class ReleasedItem(Struct, kw_only=True):
    rendition_id: W.Uuid
    evidence_id: W.Uuid
    label: W.Label
    sha256: str
    size: int
    media_type: str
    created_at: W.Instant
    ledger_index: W.Index
    content: str


class ReleasedCopies(Struct):
    released: Annotated[list[ReleasedItem], Meta(max_length=MAX_LISTED)]


class RedactionSuggestionJob(Struct, kw_only=True):
    id: int
    kind: Literal["redaction-suggestions"]
    status: JobStatus
    evidence_id: W.Uuid
    boxes: Annotated[
        list[dict[str, Any]],
        Meta(description="suggested box tracks, as in a redaction spec's boxes"),
    ]
    error: str | None


JOB, RELEASE_REQUEST, RELEASED, RELEASED_LIST, SUGGESTIONS = define_structs(
    RedactionJob, ReleaseRequest, ReleasedCopy, ReleasedCopies, RedactionSuggestionJob
)


def _job(row: Any) -> RedactionJob:
    common, payload = job_fields(row)
    return RedactionJob(
        **common, kind="redaction", spec_sha256=payload["spec_sha256"], spec=payload.get("spec")
    )


@routes.post("/v1/evidence/{id}/redactions")
@operation(
    "Request a redacted copy",
    tags=["evidence"],
    params=[path("id", "evidence id")],
    request=json_body(SPEC, "what to hide: boxes over time, full-frame ranges, mute ranges"),
    responses={
        202: json_response(JOB, "queued; poll the Location", {"Location": S.STRING}),
        400: "malformed spec: problem+json with `errors`, each naming its field",
        403: "visible, but the caller is no reviewer or legal reviewer, or may not stream it",
        404: "no such evidence",
    },
)
async def request_redaction(request: web.Request) -> web.Response:
    """Queue a redacted copy of the original per the spec; 202 with the job."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    eid = request.match_info["id"]
    body = await json_object(request)

    async def prepare() -> dict[str, Any]:
        width, height, duration = await probed_frame(rt.db.pool, eid)
        spec = parse_spec(body, Frame(width, height, duration))
        canonical = spec_bytes(spec)
        return {
            "evidence_id": str(uuid.UUID(eid)),
            "spec": spec_json(spec),
            "spec_sha256": hashlib.sha256(canonical).hexdigest(),
            "requested_by": principal.id,
        }

    refusal = (
        "redacted copies are requested by a reviewer or legal reviewer; ask one assigned"
        " to the case"
    )
    row = await _stream_then_queue(request, principal, eid, REDACT, refusal, prepare)
    location = f"/v1/redactions/{row['id']}"
    return respond(_job(row), status=202, headers={"Location": location})


@routes.get("/v1/redactions/{id}")
@operation(
    "A redaction job",
    tags=["evidence"],
    params=[path("id", "job id", {"type": "integer", "minimum": 1})],
    responses={200: json_response(JOB, "the job"), 404: "no such job (or not yours)"},
)
async def get_redaction(request: web.Request) -> web.Response:
    """Status of a redaction job and, when done, its redacted copy."""
    row = await visible_job(request, REDACT)
    return respond(_job(row))


@routes.post("/v1/renditions/{id}/release")
@operation(
    "Release a redacted copy at a label",
    tags=["evidence"],
    params=[path("id", "id of a redacted copy (a rendition of kind redacted)")],
    request=json_body(RELEASE_REQUEST, "the label the copy is released at"),
    responses={
        201: json_response(RELEASED, "released: a rendition of kind released"),
        400: "malformed label, or not a redacted copy",
        403: "not a legal reviewer, or a label above the caller's clearance",
        404: "no such rendition",
    },
)
async def release(request: web.Request) -> web.Response:
    """A legal reviewer's release of a redacted copy at a (lower) label; its own entry."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    body = await decode_body(request, ReleaseRequest)
    label = Label.from_wire(body.label, "label")
    done = await release_copy(rt.ledger, principal, request.match_info["id"], label)
    return respond(
        ReleasedCopy(
            rendition_id=str(done.rendition_id),
            label=label_wire(done.label),
            ledger_index=done.ledger_idx,
            content=f"/v1/renditions/{done.rendition_id}/content",
        ),
        status=201,
    )


@routes.get("/v1/released")
@operation(
    "Released redacted copies the caller may list",
    tags=["evidence"],
    responses={200: json_response(RELEASED_LIST, "newest first, at most 1000")},
)
async def released(request: web.Request) -> web.Response:
    """The released copies the caller may list (the publicity role's whole view)."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    copies = await visible_released(rt.db.pool, rt.ledger.mac, principal)
    return respond(
        ReleasedCopies(
            [
                ReleasedItem(
                    rendition_id=str(r.id),
                    evidence_id=str(r.evidence_id),
                    label=label_wire(label_of(r.label_level, r.label_caveats)),
                    sha256=r.sha256,
                    size=r.size,
                    media_type=r.media_type,
                    created_at=r.created_at,
                    ledger_index=r.ledger_idx,
                    content=f"/v1/renditions/{r.id}/content",
                )
                for r in copies
            ]
        )
    )


def _suggestions(row: Any) -> RedactionSuggestionJob:
    payload = S.load_json(row["payload"]) or {}
    result = S.load_json(row["result"]) or {}
    return RedactionSuggestionJob(
        id=row["id"],
        kind="redaction-suggestions",
        status=row["status"],
        evidence_id=str(payload.get("evidence_id")),
        boxes=result.get("boxes", []) if isinstance(result, dict) else [],
        error=row["last_error"] if row["status"] == "failed" else None,
    )


@routes.post("/v1/evidence/{id}/redaction-suggestions")
@operation(
    "Suggest faces and number plates to redact",
    tags=["evidence"],
    params=[path("id", "evidence id")],
    responses={
        202: json_response(SUGGESTIONS, "queued; poll the Location", {"Location": S.STRING}),
        403: "visible, but the caller is no reviewer or legal reviewer, or may not stream it",
        404: "no such evidence",
        503: "the detector (opencv-python-headless, the 'detect' extra) is not installed",
    },
)
async def request_suggestions(request: web.Request) -> web.Response:
    """Queue a search of the original for faces and plates; 202 with the job."""
    principal = await principal_of(request)
    eid = request.match_info["id"]

    async def prepare() -> dict[str, Any]:
        if not available():
            raise Unavailable(
                "face and plate suggestions need opencv-python-headless (the 'detect' extra)"
            )
        return {"evidence_id": str(uuid.UUID(eid)), "requested_by": principal.id}

    refusal = "suggestions are for a reviewer or legal reviewer preparing a redaction"
    row = await _stream_then_queue(request, principal, eid, SUGGEST, refusal, prepare)
    location = f"/v1/redaction-suggestions/{row['id']}"
    return respond(_suggestions(row), status=202, headers={"Location": location})


@routes.get("/v1/redaction-suggestions/{id}")
@operation(
    "A redaction-suggestion job",
    tags=["evidence"],
    params=[path("id", "job id", {"type": "integer", "minimum": 1})],
    responses={200: json_response(SUGGESTIONS, "the job"), 404: "no such job (or not yours)"},
)
async def get_suggestions(request: web.Request) -> web.Response:
    """Status of a suggestion job and, when done, the suggested box tracks."""
    row = await visible_job(request, SUGGEST)
    return respond(_suggestions(row))


async def _stream_then_queue(
    request: web.Request,
    principal: Principal,
    eid: str,
    kind: str,
    refusal: str,
    prepare: Callable[[], Awaitable[dict[str, Any]]],
) -> Any:
    """The audited ``stream`` decision on ``eid`` of a job request, then the job's status row.
    A caller allowed to stream it but without a requesting role is refused: a ``denied`` entry
    with ``refusal`` and 403. Otherwise ``prepare`` reads what the job needs and returns its
    payload (its errors answer without an entry), and the job is queued in the transaction of
    the ``accessed`` entry: both are committed, or neither."""
    rt = request.app[RUNTIME]
    queued: dict[str, Any] = {}

    async def serve(_item: Target) -> dict[str, Any]:
        if not principal.roles & _REQUESTERS:
            await record(rt.ledger, principal, Action.STREAM, "evidence", eid, False, refusal)
            raise Forbidden(refusal)
        return await prepare()

    async def queue(conn: Conn, payload: dict[str, Any]) -> None:
        job_id = await enqueue(conn, kind, payload)
        if job_id is None:  # only a dedupe key can make enqueue insert nothing
            raise Conflict("the job was not queued; retry")
        queued["row"] = await job_status(conn, job_id)

    await authorize_then(
        rt.db.pool, rt.ledger, principal, Action.STREAM, "evidence", eid, serve, commit=queue
    )
    return queued["row"]
