"""Cases for the case system: create or update, list, show, link and unlink evidence.

Guarantees (the rules themselves live in ``vault.cases.links`` and ``vault.policy.decide``):

- ``PUT /v1/cases/{id}`` first checks the role: a caller none of whose roles may ``link``
  (only ``case_system`` and ``admin`` may) gets 403, recorded as denied, whatever the id, so
  the answer never depends on whether a case exists. Then it creates the case (201) when no
  case has that id, else updates it (200): a changed title is a ``retitled`` entry (needs
  ``link``), a changed label a ``labelled`` entry (needs ``label``: admin or an assigned legal
  reviewer). Nothing is written when nothing changed.
- Case ids are assigned by the case system, which knows them all: to the roles that may create
  cases, which ids exist is not secret (titles, labels and evidence are). An id taken by a case
  the caller may not see is therefore 409 (the id is taken; recorded as denied), never a
  silent merge and never a 404 that would claim there is no such case.
- ``GET /v1/cases`` lists only cases the caller may list; ``GET /v1/cases/{id}`` is an audited
  ``read_metadata`` and shows only the case's evidence the caller may list.
- Linking and unlinking need ``link`` on both the case and the evidence; each is one ledger
  entry with its history row; repeating one is 409 (the history is never rewritten). A link
  that raises the evidence's effective label (the case's label is above it) says so in the
  response (``label_raised``: from, to), beside the ``labelled`` entry that records it.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from api import schemas as S
from api.auth import principal_of
from api.keys import RUNTIME
from api.openapi import define, json_body, json_response, operation, path, query
from api.routes_evidence import int_param, summary_json
from api.routes_jobs import json_object
from vault.access import decisions
from vault.access.filters import label_of
from vault.access.targets import authorize, case_row, case_target
from vault.cases import links as cases
from vault.errors import BadRequest, Conflict, Forbidden, NotFound
from vault.policy.decide import ROLE_GRANTS, Action
from vault.policy.labels import INTERNAL_LABEL, Label

__all__ = ["routes"]

routes = web.RouteTableDef()

CASE = define(
    "Case",
    {
        "type": "object",
        "required": ["id", "title", "label", "created_at", "updated_at"],
        "properties": {
            "id": S.STRING,
            "title": S.STRING,
            "label": S.LABEL,
            "created_at": S.DATE_TIME,
            "updated_at": S.DATE_TIME,
        },
    },
)
CASE_PUT = define(
    "CasePut",
    {
        "type": "object",
        "required": ["title"],
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": cases.MAX_TITLE},
            "label": S.LABEL_INPUT,
        },
    },
)
LINK_REQUEST = define(
    "LinkRequest",
    {"type": "object", "required": ["evidence_id"], "properties": {"evidence_id": S.UUID}},
)
CASE_ID = path("id", "case id (from the case system; 1-128 printable characters)")
_NO_ROLE = "creating or changing a case needs a role that may link (case_system or admin)"
_TAKEN = "this case id is already registered, to a case you may not change: use another id"


async def _case_json(request: web.Request, case_id: str) -> dict[str, Any]:
    row = await case_row(request.app[RUNTIME].db.pool, case_id)  # verified
    if row is None:  # gone since it was authorized
        raise NotFound()
    return {
        "id": row["id"],
        "title": row["title"],
        "label": label_of(row["label_level"], row["label_caveats"]).to_json(),
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


@routes.put("/v1/cases/{id}")
@operation(
    "Create or update a case",
    tags=["cases"],
    params=[CASE_ID],
    request=json_body(
        CASE_PUT,
        "title, and optionally the label (default internal): 'secret+personal_privacy' or "
        '{"level": "secret", "caveats": ["personal_privacy"]}',
    ),
    responses={
        201: json_response(CASE, "created"),
        200: json_response(CASE, "updated, or unchanged"),
        400: "malformed body or case id",
        403: "not allowed to create, retitle or relabel it, or a label above your clearance",
        409: "the id is taken by a case the caller may not see, or changed concurrently",
    },
)
async def put_case(request: web.Request) -> web.Response:
    """Register a case from the case system, or change its title or label."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    pool = rt.db.pool
    case_id = request.match_info["id"]
    if not any(Action.LINK in ROLE_GRANTS.get(role, {}) for role in principal.roles):
        # The role first: without one that may link, the answer never depends on the case.
        await decisions.record(rt.ledger, principal, Action.LINK, "case", case_id, False, _NO_ROLE)
        raise Forbidden(_NO_ROLE)
    body = await json_object(request)
    title = body.get("title")
    if not isinstance(title, str):
        raise BadRequest("title: a string is required")
    if "label" in body and body["label"] is None:  # the schema has no null label
        raise BadRequest("label: give a label, or leave it out for the default")
    label = None if "label" not in body else Label.from_wire(body["label"], "label")
    if await case_target(pool, case_id) is None:
        await cases.create(pool, rt.ledger, principal, case_id, title, label or INTERNAL_LABEL)
        return web.json_response(await _case_json(request, case_id), status=201)
    try:
        await authorize(pool, rt.ledger, principal, Action.LINK, "case", case_id)
    except NotFound:  # recorded as denied; the id is taken, and case ids are no secret here
        raise Conflict(_TAKEN) from None
    current = await _case_json(request, case_id)
    if current["title"] != title:
        await cases.retitle(pool, rt.ledger, principal, case_id, title)
    if label is not None and label.to_json() != current["label"]:
        await cases.set_label(pool, rt.ledger, principal, "case", case_id, label)
    return web.json_response(await _case_json(request, case_id))


@routes.get("/v1/cases")
@operation(
    "List cases",
    tags=["cases"],
    responses={
        200: json_response(
            {
                "type": "object",
                "required": ["items"],
                "properties": {"items": {"type": "array", "items": S.CASE_SUMMARY}},
            },
            "the cases the caller may list",
        )
    },
)
async def list_cases(request: web.Request) -> web.Response:
    """The cases the caller may list, by id, with their titles (null where the caller may list
    but not read the case's metadata)."""
    principal = await principal_of(request)
    found = await cases.list_cases(request.app[RUNTIME].db.pool, principal)
    items = [
        {
            "id": c.id,
            "title": c.title,
            "label": c.label.to_json(),
            "created_at": c.created_at.isoformat(),
            "updated_at": c.updated_at.isoformat(),
        }
        for c in found
    ]
    return web.json_response({"items": items})


@routes.get("/v1/cases/{id}")
@operation(
    "One case and its evidence",
    tags=["cases"],
    params=[
        CASE_ID,
        query("limit", "evidence shown", {"type": "integer", "minimum": 1, "maximum": 1000}),
    ],
    responses={200: json_response(S.CASE_DETAIL, "the case"), 404: "no such case"},
)
async def get_case(request: web.Request) -> web.Response:
    """The case (an audited ``read_metadata``), the number of its evidence items the caller
    may list and the first ``limit`` of them (more: ``GET /v1/evidence?case=``)."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    limit = int_param(request.query, "limit", 100, 1, 1000)
    detail = await cases.show(
        rt.db.pool, rt.ledger, principal, request.match_info["id"], limit=limit
    )
    return web.json_response(
        {
            "id": detail.id,
            "title": detail.title,
            "label": detail.label.to_json(),
            "created_at": detail.created_at.isoformat(),
            "updated_at": detail.updated_at.isoformat(),
            "evidence_count": detail.evidence_count,
            "evidence": [summary_json(s) for s in detail.evidence],
        }
    )


def _evidence_id(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 256:
        raise BadRequest("evidence_id: a string is required")
    return value


@routes.post("/v1/cases/{id}/evidence")
@operation(
    "Link evidence to a case",
    tags=["cases"],
    params=[CASE_ID],
    request=json_body(LINK_REQUEST, "the evidence to link"),
    responses={
        201: json_response(
            S.LINK_RESULT, "linked (a ledger entry); label_raised: the link raised its label"
        ),
        400: "malformed body",
        403: "linking is not granted",
        404: "no such case or evidence",
        409: "already linked, or the evidence was disposed of",
    },
)
async def link(request: web.Request) -> web.Response:
    """Link an evidence item to the case."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    case_id = request.match_info["id"]
    eid = _evidence_id((await json_object(request)).get("evidence_id"))
    done = await cases.link_reporting(rt.db.pool, rt.ledger, principal, case_id, eid)
    await rt.extend_locks(eid)
    raised = None
    if done.raised:
        raised = {"from": done.previous.to_json(), "to": done.label.to_json()}
    body = {
        "case_id": case_id,
        "evidence_id": str(uuid.UUID(eid)),
        "ledger_index": done.index,
        "linked": True,
        "label_raised": raised,
    }
    return web.json_response(body, status=201)


@routes.delete("/v1/cases/{id}/evidence/{evidence_id}")
@operation(
    "Unlink evidence from a case",
    tags=["cases"],
    params=[CASE_ID, path("evidence_id", "evidence id")],
    responses={
        200: json_response(S.LINK_RESULT, "unlinked (a ledger entry; the history stays)"),
        403: "linking is not granted",
        404: "no such case or evidence",
        409: "not linked",
    },
)
async def unlink(request: web.Request) -> web.Response:
    """Unlink an evidence item from the case."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    case_id = request.match_info["id"]
    eid = request.match_info["evidence_id"]
    idx = await cases.unlink(rt.db.pool, rt.ledger, principal, case_id, eid)
    body = {
        "case_id": case_id,
        "evidence_id": str(uuid.UUID(eid)),
        "ledger_index": idx,
        "linked": False,
    }
    return web.json_response(body)
