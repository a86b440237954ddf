"""Case exports through the API: ``POST /v1/cases/{id}/exports`` → 202 and a job, then a download.

Guarantees:

- Asking is an audited ``export`` decision on the case; the job is queued in the transaction
  that appends its ``accessed`` entry, so both are committed or neither (an answer of 503
  leaves no entry and no job; missing and invisible cases are the same 404). The package
  itself is built by a worker as the requesting principal (``vault.review.exportjobs``), so it
  holds only what that principal may export, and every item decision is recorded again there.
- A job and its package are shown only to the principal who asked; anyone else, and any job
  that is not an export job, gets the same 404.
- The package is the same self-verifying zip as ``evault export --zip``; check it with
  ``evault-verify``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from aiohttp import web
from msgspec import Meta, Struct

from api import schemas as S
from api.auth import principal_of
from api.keys import RUNTIME
from api.openapi import content_response, define_structs, json_body, json_response, operation, path
from api.wire import decode_body, respond
from vault.access.targets import authorize_then
from vault.db import Conn
from vault.errors import BadRequest, Conflict, NotFound
from vault.jobs import enqueue, job_status
from vault.policy.decide import Action, Target, not_found_detail
from vault.review.export import RENDITION_KINDS
from vault.review.exportjobs import EXPORT

__all__ = ["EXPORTS_DIR", "routes"]

EXPORTS_DIR = Path("exports")  # under the data directory
routes = web.RouteTableDef()

JobStatus = Literal["queued", "running", "done", "failed"]


class ExportRequest(Struct, forbid_unknown_fields=True):
    renditions: Annotated[
        list[Annotated[str, Meta(extra_json_schema={"enum": list(RENDITION_KINDS)})]],
        Meta(extra_json_schema={"uniqueItems": True}),
    ] = []
    originals: Annotated[
        bool, Meta(description="false: leave the originals out (share redacted copies only)")
    ] = True


class ExportJob(Struct, kw_only=True):
    id: int
    kind: Literal["export"]
    status: JobStatus
    case_id: str
    renditions: list[str]
    package: str | None
    size: int | None
    manifest_sha256: str | None
    error: str | None


EXPORT_REQUEST, EXPORT_JOB = define_structs(ExportRequest, ExportJob)


def _job(row: Any) -> ExportJob:
    payload = S.load_json(row["payload"]) or {}
    result = S.load_json(row["result"]) or {}
    done = row["status"] == "done" and isinstance(result, dict)
    return ExportJob(
        id=row["id"],
        kind="export",
        status=row["status"],
        case_id=payload["case_id"],
        renditions=payload.get("renditions", []),
        package=f"/v1/exports/{row['id']}/package" if done else None,
        size=result.get("size") if done else None,
        manifest_sha256=result.get("manifest_sha256") if done else None,
        error=row["last_error"] if row["status"] == "failed" else None,
    )


async def _own_job(request: web.Request) -> Any:
    principal = await principal_of(request)
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise NotFound(not_found_detail("export"))
    row = await job_status(request.app[RUNTIME].db.pool, int(raw), EXPORT)
    payload = None if row is None else (S.load_json(row["payload"]) or {})
    if row is None or payload is None or payload.get("requested_by") != principal.id:
        raise NotFound(not_found_detail("export"))
    return row


@routes.post("/v1/cases/{id}/exports")
@operation(
    "Export a case as a package",
    tags=["cases"],
    params=[path("id", "case id")],
    request=json_body(
        EXPORT_REQUEST, "renditions to include besides the originals", required=False
    ),
    responses={
        202: json_response(EXPORT_JOB, "queued; poll the Location", {"Location": S.STRING}),
        400: "malformed body",
        403: "visible, but exporting it is not granted",
        404: "no such case",
    },
)
async def request_export(request: web.Request) -> web.Response:
    """Queue a package of the case for the caller; 202 with the job."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    case_id = request.match_info["id"]
    body = await decode_body(request, ExportRequest) if request.can_read_body else ExportRequest()
    kinds, originals = body.renditions, body.originals
    if not all(k in RENDITION_KINDS for k in kinds):
        raise BadRequest(f"renditions: a list drawn from {list(RENDITION_KINDS)}")
    if len(set(kinds)) != len(kinds):
        raise BadRequest("renditions: each kind at most once")
    if not (originals or kinds):
        raise BadRequest("originals: without originals, name renditions")
    payload: dict[str, Any] = {
        "case_id": case_id,
        "requested_by": principal.id,
        "renditions": sorted(set(kinds)),
    }
    if not originals:
        payload["originals"] = False
    queued: dict[str, Any] = {}

    async def nothing_to_read(_case: Target) -> bool:
        return True

    async def queue(conn: Conn, _ok: bool) -> None:
        # in the entry's transaction: the job is queued with its ``accessed`` entry, or neither
        job_id = await enqueue(conn, EXPORT, payload, dedupe_key=f"export:{uuid.uuid4()}")
        if job_id is None:  # only a dedupe key can make enqueue insert nothing
            raise Conflict("the job was not queued; retry")
        queued["row"] = await job_status(conn, job_id)

    await authorize_then(
        rt.db.pool,
        rt.ledger,
        principal,
        Action.EXPORT,
        "case",
        case_id,
        nothing_to_read,
        commit=queue,
    )  # a failure to read or queue answers without an ``accessed`` entry
    row = queued["row"]
    location = f"/v1/exports/{row['id']}"
    return respond(_job(row), status=202, headers={"Location": location})


@routes.get("/v1/exports/{id}")
@operation(
    "An export job",
    tags=["cases"],
    params=[path("id", "job id", {"type": "integer", "minimum": 1})],
    responses={200: json_response(EXPORT_JOB, "the job"), 404: "no such job (or not yours)"},
)
async def get_export(request: web.Request) -> web.Response:
    """Status of one of the caller's export jobs and, when done, where its package is."""
    return respond(_job(await _own_job(request)))


@routes.get("/v1/exports/{id}/package")
@operation(
    "Download an export package",
    tags=["cases"],
    params=[path("id", "job id", {"type": "integer", "minimum": 1})],
    responses={
        200: content_response(
            "the package (zip)", {"application/zip": {"type": "string", "format": "binary"}}
        ),
        404: "no such package (or not yours, or not ready)",
    },
)
async def download_export(request: web.Request) -> web.StreamResponse:
    """The package zip of one of the caller's finished export jobs."""
    row = await _own_job(request)
    result = S.load_json(row["result"]) or {}
    name = result.get("file") if row["status"] == "done" and isinstance(result, dict) else None
    if not isinstance(name, str) or "/" in name:
        raise NotFound(f"{NotFound.title}: the package is not ready (job {row['status']})")
    cfg = request.app[RUNTIME].cfg
    file = cfg.path(EXPORTS_DIR) / name
    headers = {"Content-Disposition": f'attachment; filename="case-export-{row["id"]}.zip"'}
    return web.FileResponse(file, headers={**headers, "Content-Type": "application/zip"})
