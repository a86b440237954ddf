"""Evidence for the case system: list, one item, its content and its renditions' content.

Guarantees:

- ``GET /v1/evidence`` lists only what the caller may list (``visibility.list_evidence``: the
  filter is applied inside SQL, so pages and cursors never reveal an invisible item); filtering
  by a case the caller may not see yields an empty page, exactly like an unknown case.
- ``GET /v1/evidence/{id}`` is an audited ``read_metadata`` decision; its renditions are those
  the caller may list. Missing and invisible items are the same 404, byte for byte (apart from
  the request id).
- Content (``/v1/evidence/{id}/content``, ``/v1/renditions/{id}/content``) is decided and
  recorded in the ledger (``stream``, or ``download`` with ``?download=true``) BEFORE the object
  is opened or a byte is sent; if the decision cannot be recorded the request fails (503). The
  Range requests of one playback share the ``accessed`` entry of its first request
  (``vault.access.sessions``, ``service.playback_session_seconds``); each is still decided.
  Bytes are read only through ``vault.storage.content.ContentStore`` (plain or sealed objects
  alike); Range, ETag and If-None-Match follow ``api.streaming``.
- The bytes served are those of the verified row the decision was made on
  (``vault.access.serving``): a row edited in the database is refused (422); evidence that scrub
  found failing is refused (422 naming the failure) unless an auditor or admin asks with
  ``?integrity_override=true``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from api import models as W
from api import schemas as S
from api.auth import principal_of
from api.keys import READ_GATE, READ_POOL, RUNTIME, SESSIONS
from api.openapi import (
    content_response,
    define_structs,
    json_response,
    operation,
    path,
    query_params,
)
from api.streaming import content_disposition, send_content
from api.wire import decode_query, respond
from vault import evidence as evrows
from vault.access.filters import label_of
from vault.access.listing import (
    EvidenceQuery,
    EvidenceSummary,
    get_evidence_with,
    list_evidence,
    visible_renditions,
)
from vault.access.serving import evidence_bytes, rendition_bytes
from vault.errors import NotFound
from vault.policy.decide import Action
from vault.policy.labels import Caveat, Label, Level
from vault.storage.content import ContentStore

__all__ = ["CONTENT", "content_ctx", "label_wire", "routes", "summary_wire"]

CONTENT: web.AppKey[ContentStore] = web.AppKey("content_store", ContentStore)

routes = web.RouteTableDef()

MEDIA_TYPES: Mapping[str, str] = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "avi": "video/x-msvideo",
    "mkv": "video/x-matroska",
    "ts": "video/mp2t",
    "wav": "audio/wav",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "mp3": "audio/mpeg",
    "amr": "audio/amr",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "json": "application/json",
}
OCTETS = "application/octet-stream"


async def content_ctx(app: web.Application) -> AsyncIterator[None]:
    """The content store every HTTP read goes through."""
    rt = app[RUNTIME]
    app[CONTENT] = rt.storage.content  # plain and sealed objects alike
    yield


_LABELS: dict[Label, W.Label] = {}  # labels are immutable; a handful exist


def label_wire(label: Label) -> W.Label:
    """The wire form of a label (sorted caveats)."""
    out = _LABELS.get(label)
    if out is None:
        out = W.Label(label.level.slug, [c.value for c in label.sorted_caveats])
        if len(_LABELS) < 1024:
            _LABELS[label] = out
    return out


def summary_wire(s: EvidenceSummary) -> W.EvidenceSummary:
    """The wire form of an evidence summary."""
    return W.EvidenceSummary(
        id=s.id,
        sha256=s.sha256,
        size=s.size,
        file_name=s.file_name,
        dock_id=s.dock_id,
        device_id=s.device_id,
        officer_id=s.officer_id,
        recorded_at=s.recorded_at,
        acquired_at=s.acquired_at,
        label=label_wire(s.label),
        category=s.category,  # type: ignore[arg-type]  # the column's check constraint
        media_status=s.media_status,
        disposed_at=s.disposed_at,
        cases=list(s.cases),
    )


def _filters(q: W.EvidenceQuery) -> EvidenceQuery:
    return EvidenceQuery(
        case_id=q.case,
        officer_id=q.officer,
        device_id=q.device,
        dock_id=q.dock,
        acquired_from=q.acquired_from,
        acquired_to=q.acquired_to,
        recorded_from=q.recorded_from,
        recorded_to=q.recorded_to,
        level=None if q.level is None else Level.parse(q.level),
        caveats=frozenset(Caveat.parse(c) for c in q.caveat),
        status=q.status,
        unlinked=W.flag(q.unlinked),
    )


(EVIDENCE_PAGE, EVIDENCE_DETAIL) = define_structs(W.EvidencePage, W.EvidenceDetail)


@routes.get("/v1/evidence")
@operation(
    "List evidence",
    tags=["evidence"],
    params=query_params(W.EvidenceQuery),
    responses={200: json_response(EVIDENCE_PAGE, "one page"), 400: "a malformed filter"},
)
async def list_items(request: web.Request) -> web.Response:
    """The evidence the caller may list, filtered, oldest acquisition first, keyset-paginated:
    pass ``next_cursor`` back as ``cursor`` for the next page (null: no more)."""
    principal = await principal_of(request)
    q = decode_query(request.query, W.EvidenceQuery)
    limit, cursor, query = q.limit, q.cursor, _filters(q)
    pool = request.app.get(READ_POOL)
    mac = request.app[RUNTIME].ledger.mac
    if pool is None:
        db = request.app[RUNTIME].db.pool
        page = await list_evidence(db, principal, query, limit=limit, cursor=cursor, mac=mac)
    else:
        async with request.app[READ_GATE]:  # connections first come, first served
            page = await list_evidence(pool, principal, query, limit=limit, cursor=cursor, mac=mac)
    return respond(W.EvidencePage([summary_wire(s) for s in page.items], page.next_cursor))


@routes.get("/v1/evidence/{id}")
@operation(
    "One evidence item",
    tags=["evidence"],
    params=[path("id", "evidence id")],
    responses={200: json_response(EVIDENCE_DETAIL, "the item"), 404: "no such evidence"},
)
async def get_item(request: web.Request) -> web.Response:
    """Metadata, media status and probe, and the renditions the caller may list (an audited
    ``read_metadata``)."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    eid = request.match_info["id"]
    pool, mac = rt.db.pool, rt.ledger.mac

    async def details(
        summary: EvidenceSummary,
    ) -> tuple[evrows.Evidence, list[evrows.Rendition]] | None:
        row = await evrows.load_evidence(pool, mac, summary.id)
        if row is None:  # gone since it was decided on
            return None
        return row, await visible_renditions(pool, mac, principal, summary.id)

    # Everything read before the entry: a read failing leaves no ``accessed`` entry behind.
    summary, (row, renditions) = await get_evidence_with(pool, rt.ledger, principal, eid, details)
    return respond(
        W.EvidenceDetail(
            **{f: getattr(summary_wire(summary), f) for f in W.EvidenceSummary.__struct_fields__},
            ledger_index=row.ledger_idx,
            extension=row.extension,
            media_reason=row.media_reason,
            probe=S.load_json(row.probe),
            integrity=row.integrity,  # type: ignore[arg-type]  # the column's check constraint
            last_scrub_at=row.last_scrub_at,
            recorded_after_acquired=_recorded_after_acquired(summary),
            renditions=[
                W.Rendition(
                    id=str(r.id),
                    kind=r.kind,  # type: ignore[arg-type]  # the column's check constraint
                    sha256=r.sha256,
                    size=r.size,
                    media_type=r.media_type,
                    label=label_wire(label_of(r.label_level, r.label_caveats)),
                    params=S.load_json(r.params),
                    created_at=r.created_at,
                    ledger_index=r.ledger_idx,
                    content=f"/v1/renditions/{r.id}/content",
                )
                for r in renditions
            ],
        )
    )


def _recorded_after_acquired(s: EvidenceSummary) -> bool:
    """The recording time is later than the acquisition: the recorder's clock or zone is
    wrong, so its times are not to be trusted (ingest logs and counts it too)."""
    return s.recorded_at is not None and s.recorded_at > s.acquired_at


def _content_query(request: web.Request) -> tuple[Action, str, bool]:
    q = decode_query(request.query, W.ContentQuery)
    download = W.flag(q.download)
    action, kind = (Action.DOWNLOAD, "attachment") if download else (Action.STREAM, "inline")
    return action, kind, W.flag(q.integrity_override)


_CONTENT_PARAMS = [
    *query_params(W.ContentQuery),
    S.RANGE_HEADER,
    S.IF_NONE_MATCH,
    S.IF_RANGE,
]
_CONTENT_RESPONSES: Mapping[int | str, Any] = {
    200: content_response("the whole content", {"*/*": S.BINARY}, S.CONTENT_HEADERS),
    206: content_response("one byte range", {"*/*": S.BINARY}, S.CONTENT_HEADERS),
    304: "not modified: If-None-Match matched the ETag",
    403: "visible, but streaming or downloading it is not granted",
    404: "no such item (or none the caller may see), or its content was disposed of",
    416: "the range lies outside the content (Content-Range: bytes */size)",
    422: "the stored row does not verify, or the content failed its integrity check",
}


async def _open(request: web.Request, sha256: str) -> Any:
    try:
        return await request.app[CONTENT].open(sha256, reuse=True)
    except NotFound:
        raise NotFound("the content is no longer held (disposed of)") from None


@routes.get("/v1/evidence/{id}/content")
@operation(
    "The original recording",
    tags=["evidence"],
    params=[path("id", "evidence id"), *_CONTENT_PARAMS],
    responses=_CONTENT_RESPONSES,
)
async def evidence_content(request: web.Request) -> web.StreamResponse:
    """The original bytes, with Range, a strong ETag (its SHA-256) and If-None-Match; every
    request is an audited ``stream`` or ``download`` decision made before any byte is sent."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    action, kind, override = _content_query(request)
    eid = request.match_info["id"]
    row = await evidence_bytes(
        rt.db.pool,
        rt.ledger,
        principal,
        action,
        eid,
        override=override,
        sessions=request.app.get(SESSIONS),
    )
    obj = await _open(request, row.sha256)
    ext = (row.extension or "").lower()
    return await send_content(
        request,
        obj,
        sha256=row.sha256,
        media_type=MEDIA_TYPES.get(ext, OCTETS),
        disposition=content_disposition(
            kind, row.file_name, f"{row.sha256}.{ext}" if ext else row.sha256
        ),
    )


@routes.get("/v1/renditions/{id}/content")
@operation(
    "A rendition's content (proxy, poster, clip, fingerprint)",
    tags=["evidence"],
    params=[path("id", "rendition id"), *_CONTENT_PARAMS],
    responses=_CONTENT_RESPONSES,
)
async def rendition_content(request: web.Request) -> web.StreamResponse:
    """A rendition's bytes, as for the original; its label is at least its source's."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    action, kind, override = _content_query(request)
    rid = request.match_info["id"]
    row, _source = await rendition_bytes(
        rt.db.pool,
        rt.ledger,
        principal,
        action,
        rid,
        override=override,
        sessions=request.app.get(SESSIONS),
    )
    obj = await _open(request, row.sha256)
    ext = {v: k for k, v in MEDIA_TYPES.items()}.get(row.media_type, "bin")
    name = f"{row.evidence_id}-{row.kind}.{ext}"
    return await send_content(
        request,
        obj,
        sha256=row.sha256,
        media_type=row.media_type or OCTETS,
        disposition=content_disposition(kind, name, name),
    )
