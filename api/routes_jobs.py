"""Clips on request: ``POST /v1/evidence/{id}/clips`` → 202 and a job to poll.

Guarantees:

- Requesting a clip is an audited ``stream`` decision on the evidence (a clip is a playback
  derivative of its content); the job is queued in the transaction that appends the
  ``accessed`` entry (both or neither); missing and invisible evidence are the same 404. A
  range ending past the probed duration is refused at once (400 naming it, before any entry);
  only while the item is not probed yet does the worker check it (the job then fails).
- The job goes into the PostgreSQL job table (``vault.jobs``), so a worker in any process
  renders it (``ingest.mediajobs.CLIP``) and a crash loses nothing; the requester's id is kept
  in the job's payload.
- ``GET /v1/jobs/{id}`` shows a clip job only to its requester or to a principal allowed
  ``read_metadata`` on its evidence (that decision is audited); anyone else, and any job id
  that is not a clip job, gets the same 404 and leaves a ``denied`` entry (with the real
  reason). The clip itself is then a rendition, read through ``/v1/renditions/{id}/content``
  under its own decision.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from api import models as W
from api import schemas as S
from api.auth import principal_of
from api.keys import RUNTIME
from api.openapi import define_structs, json_body, json_response, operation, path
from api.wire import decode_body, respond
from ingest.mediajobs import CLIP
from vault.access.decisions import guard
from vault.access.targets import authorize_then, evidence_target
from vault.db import Conn
from vault.errors import BadRequest, Conflict, NotFound
from vault.jobs import enqueue, job_status
from vault.policy.decide import Action, Target, not_found_detail
from vault.review.case_footage import probed_duration_ms

__all__ = ["job_fields", "routes", "visible_job"]

routes = web.RouteTableDef()

CLIP_REQUEST, CLIP_JOB = define_structs(W.ClipRequest, W.ClipJob)


def job_fields(row: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the fields every rendition job's wire form has, its payload) from a job row."""
    payload = S.load_json(row["payload"]) or {}
    result = S.load_json(row["result"]) or {}
    rid = result.get("rendition_id") if isinstance(result, dict) else None
    common = {
        "id": row["id"],
        "status": row["status"],
        "evidence_id": str(payload.get("evidence_id")),
        "attempts": row["attempts"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "rendition_id": rid,
        "rendition": None if rid is None else f"/v1/renditions/{rid}/content",
        "error": row["last_error"] if row["status"] == "failed" else None,
    }
    return common, payload


def _job(row: Any) -> W.ClipJob:
    common, payload = job_fields(row)
    return W.ClipJob(**common, kind="clip", start_ms=payload["start_ms"], end_ms=payload["end_ms"])


@routes.post("/v1/evidence/{id}/clips")
@operation(
    "Request a clip",
    tags=["evidence"],
    params=[path("id", "evidence id")],
    request=json_body(CLIP_REQUEST, "the time range, in ms from the recording's start"),
    responses={
        202: json_response(CLIP_JOB, "queued; poll the Location", {"Location": S.STRING}),
        400: "malformed body or range, or a range past the probed duration",
        403: "visible, but streaming it is not granted",
        404: "no such evidence",
    },
)
async def request_clip(request: web.Request) -> web.Response:
    """Queue a frame-exact clip ``[start_ms, end_ms)`` of the original; 202 with the job."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    eid = request.match_info["id"]
    body = await decode_body(request, W.ClipRequest)
    start, end = body.start_ms, body.end_ms
    if start >= end:
        raise BadRequest("start_ms must be before end_ms")
    queued: dict[str, Any] = {}

    async def in_range(_item: Target) -> bool:
        duration = await probed_duration_ms(rt.db.pool, eid)
        if duration is not None and end > duration:  # unknown yet: the worker checks it
            raise BadRequest(
                f"end_ms {end} is beyond the recording's probed duration of {duration} ms"
                f" (clip within 0-{duration})"
            )
        return True

    async def queue(conn: Conn, _ok: bool) -> None:
        payload = {
            "evidence_id": str(uuid.UUID(eid)),  # a stored item's id: a UUID
            "start_ms": start,
            "end_ms": end,
            "requested_by": principal.id,
        }
        job_id = await enqueue(conn, CLIP, payload)
        if job_id is None:  # only a dedupe key can make enqueue insert nothing
            raise Conflict("the job was not queued; retry")
        queued["row"] = await job_status(conn, job_id)

    # read first, then the entry with the job in its transaction: an answer that is not 202
    # leaves no ``accessed`` entry (a range past the duration is refused before it)
    await authorize_then(
        rt.db.pool, rt.ledger, principal, Action.STREAM, "evidence", eid, in_range, commit=queue
    )
    row = queued["row"]
    location = f"/v1/jobs/{row['id']}"
    return respond(_job(row), status=202, headers={"Location": location})


@routes.get("/v1/jobs/{id}")
@operation(
    "A clip job",
    tags=["evidence"],
    params=[path("id", "job id", {"type": "integer", "minimum": 1})],
    responses={200: json_response(CLIP_JOB, "the job"), 404: "no such job (or not yours)"},
)
async def get_job(request: web.Request) -> web.Response:
    """Status of a clip job and, when done, its rendition."""
    return respond(_job(await visible_job(request, CLIP)))


async def visible_job(request: web.Request, kind: str) -> Any:
    """The status row of the job of ``kind`` named by the path's ``id``, if the caller asked
    for it or may read its evidence's metadata; otherwise the same 404 (and ``denied`` entry)
    as for a job that does not exist."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise NotFound(not_found_detail("job"))
    row = await job_status(rt.db.pool, int(raw), kind)
    payload = {} if row is None else (S.load_json(row["payload"]) or {})
    if row is None or payload.get("requested_by") != principal.id:
        # A missing job is a denied read of nothing, answered like the denied read of someone
        # else's job: the same 404. The ledger entry's reason is the real one (no such
        # evidence, or why the item is hidden); the target is a salted commitment.
        eid = None if row is None else str(payload.get("evidence_id"))
        found = None if eid is None else await evidence_target(rt.db.pool, eid, mac=rt.ledger.mac)
        try:
            await guard(
                rt.ledger,
                principal,
                Action.READ_METADATA,
                "evidence",
                eid or f"job:{raw}",
                found,
                refs=None if eid else [],
            )
        except NotFound:
            raise NotFound(not_found_detail("job")) from None
    if row is None:  # guard raised NotFound for it already
        raise NotFound(not_found_detail("job"))
    return row
