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

from aiohttp import web
from msgspec import UNSET

from api import models as W
from api import schemas as S  # noqa: F401 - registers LabelInput, which CasePut refers to
from api.auth import principal_of
from api.keys import RUNTIME
from api.openapi import define_structs, json_body, json_response, operation, path, query_params
from api.routes_evidence import label_wire, summary_wire
from api.wire import decode_body, decode_query, respond
from vault.access import decisions
from vault.access.filters import label_of
from vault.access.targets import authorize, case_row, case_target
from vault.cases import links as cases
from vault.errors import BadRequest, Conflict, Forbidden, NotFound
from vault.policy.decide import ROLE_GRANTS, Action
from vault.policy.labels import INTERNAL_LABEL, Label

__all__ = ["routes"]

routes = web.RouteTableDef()

CASE, CASE_PUT, CASE_LIST, CASE_DETAIL, LINK_REQUEST, LINK_RESULT = define_structs(
    W.Case, W.CasePut, W.CaseList, W.CaseDetail, W.LinkRequest, W.LinkResult
)
CASE_ID = path("id", "case id (from the case system; 1-128 printable characters)")
_NO_ROLE = "creating or changing a case needs a role that may link (case_system or admin)"
_TAKEN = "this case id is already registered, to a case you may not change: use another id"


async def _case(request: web.Request, case_id: str) -> W.Case:
    row = await case_row(request.app[RUNTIME].db.pool, case_id)  # verified
    if row is None:  # gone since it was authorized
        raise NotFound()
    return W.Case(
        id=row["id"],
        title=row["title"],
        label=label_wire(label_of(row["label_level"], row["label_caveats"])),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


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
    body = await decode_body(request, W.CasePut)
    title = body.title
    if body.label is None:  # the schema has no null label
        raise BadRequest("label: give a label, or leave it out for the default")
    label = None if body.label is UNSET else Label.from_wire(body.label, "label")
    if await case_target(pool, case_id) is None:
        await cases.create(pool, rt.ledger, principal, case_id, title, label or INTERNAL_LABEL)
        return respond(await _case(request, case_id), status=201)
    try:
        await authorize(pool, rt.ledger, principal, Action.LINK, "case", case_id)
    except NotFound:  # recorded as denied; the id is taken, and case ids are no secret here
        raise Conflict(_TAKEN) from None
    current = await _case(request, case_id)
    if current.title != title:
        await cases.retitle(pool, rt.ledger, principal, case_id, title)
    if label is not None and label_wire(label) != current.label:
        await cases.set_label(pool, rt.ledger, principal, "case", case_id, label)
    return respond(await _case(request, case_id))


@routes.get("/v1/cases")
@operation(
    "List cases",
    tags=["cases"],
    responses={200: json_response(CASE_LIST, "the cases the caller may list")},
)
async def list_cases(request: web.Request) -> web.Response:
    """The cases the caller may list, by id, with their titles (null where the caller may list
    but not read the case's metadata)."""
    principal = await principal_of(request)
    found = await cases.list_cases(request.app[RUNTIME].db.pool, principal)
    items = [
        W.CaseSummary(
            id=c.id,
            title=c.title,
            label=label_wire(c.label),
            created_at=c.created_at,
            updated_at=c.updated_at,
        )
        for c in found
    ]
    return respond(W.CaseList(items))


@routes.get("/v1/cases/{id}")
@operation(
    "One case and its evidence",
    tags=["cases"],
    params=[CASE_ID, *query_params(W.CaseQuery)],
    responses={200: json_response(CASE_DETAIL, "the case"), 404: "no such case"},
)
async def get_case(request: web.Request) -> web.Response:
    """The case (an audited ``read_metadata``), the number of its evidence items the caller
    may list and the first ``limit`` of them (more: ``GET /v1/evidence?case=``)."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    limit = decode_query(request.query, W.CaseQuery).limit
    detail = await cases.show(
        rt.db.pool, rt.ledger, principal, request.match_info["id"], limit=limit
    )
    return respond(
        W.CaseDetail(
            id=detail.id,
            title=detail.title,
            label=label_wire(detail.label),
            created_at=detail.created_at,
            updated_at=detail.updated_at,
            evidence_count=detail.evidence_count,
            evidence=[summary_wire(s) for s in detail.evidence],
        )
    )


@routes.post("/v1/cases/{id}/evidence")
@operation(
    "Link evidence to a case",
    tags=["cases"],
    params=[CASE_ID],
    request=json_body(LINK_REQUEST, "the evidence to link"),
    responses={
        201: json_response(
            LINK_RESULT, "linked (a ledger entry); label_raised: the link raised its label"
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
    eid = (await decode_body(request, W.LinkRequest)).evidence_id
    done = await cases.link_reporting(rt.db.pool, rt.ledger, principal, case_id, eid)
    await rt.extend_locks(eid)
    raised = None
    if done.raised:
        raised = W.LabelRaised(label_wire(done.previous), label_wire(done.label))
    body = W.LinkResult(
        case_id=case_id,
        evidence_id=str(uuid.UUID(eid)),
        ledger_index=done.index,
        linked=True,
        label_raised=raised,
    )
    return respond(body, status=201)


@routes.delete("/v1/cases/{id}/evidence/{evidence_id}")
@operation(
    "Unlink evidence from a case",
    tags=["cases"],
    params=[CASE_ID, path("evidence_id", "evidence id")],
    responses={
        200: json_response(LINK_RESULT, "unlinked (a ledger entry; the history stays)"),
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
    body = W.LinkResult(
        case_id=case_id, evidence_id=str(uuid.UUID(eid)), ledger_index=idx, linked=False
    )
    return respond(body)
