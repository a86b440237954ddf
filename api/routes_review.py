"""Routes for the legal-review module (法制审核) and for event delivery.

Guarantees (the rules live in ``vault.review.integrity_report``, ``vault.review.coverage`` and
``vault.dispatch``):

- ``GET /v1/cases/{id}/integrity-report`` answers ``{"report": {...}, "signature": "<note>"}``
  where the ``report`` member is, byte for byte, the canonical JSON that the note signs
  (``verify.report_note.verify_report`` / ``verify_report_response`` check it with the vkey).
  It needs ``read_metadata`` on the case; the check is recorded as action ``verify``.
- ``POST /v1/cases/{id}/coverage`` is an audited ``read_metadata`` on the case and uses only
  the case's footage the caller may list; the steps that require recording come from
  ``[review] recording_required``.
- ``GET /v1/events/deliveries`` needs ``administer`` (admin); it shows delivery states, never
  event payloads.
- ``dispatch_ctx`` runs the event dispatcher (``vault.dispatch``) in every process serving the
  ``api`` part when subscribers are configured; their secrets are read at start (a missing
  secret file stops the start).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from api import schemas as S
from api.auth import principal_of
from api.keys import PARTS, READINESS, RUNTIME
from api.openapi import define, json_body, json_response, operation, path, query
from api.routes_evidence import CONTENT
from api.routes_jobs import json_object
from api.wire import int_param
from vault.access import decisions, targets
from vault.config_events import subscriber_secret
from vault.dispatch import Dispatcher, delivery_history
from vault.errors import BadRequest, Forbidden, NotFound
from vault.policy.decide import Action, Target, decide, not_found_detail
from vault.policy.labels import PUBLIC_LABEL
from vault.review.case_footage import CaseFootage, case_footage
from vault.review.coverage import coverage, parse_steps
from vault.review.integrity_report import Mode, integrity_report

__all__ = ["dispatch_ctx", "routes"]

routes = web.RouteTableDef()


async def dispatch_ctx(app: web.Application) -> AsyncIterator[None]:
    """The event dispatcher, for the lifetime of the application (see the module docstring)."""
    rt = app[RUNTIME]
    cfg = rt.cfg
    if "api" not in app[PARTS] or not cfg.subscribers:
        yield
        return
    secrets = {s.id: subscriber_secret(s, cfg.data) for s in cfg.subscribers}
    dispatcher = Dispatcher(rt.db.pool, cfg.subscribers, secrets, cfg.events)
    dispatcher.start()
    app[READINESS]["event_dispatcher"] = lambda: "ok" if dispatcher.alive() else "stopped"
    try:
        yield
    finally:
        await dispatcher.stop()


CASE_ID = path("id", "case id (from the case system)")
_NULL_TIME = S.nullable(S.DATE_TIME)
_SPAN = {
    "type": "object",
    "required": ["start", "end"],
    "properties": {"start": S.DATE_TIME, "end": S.DATE_TIME},
}
INTEGRITY_REPORT = define(
    "IntegrityReportResponse",
    {
        "type": "object",
        "required": ["report", "signature"],
        "properties": {
            "signature": {
                "type": "string",
                "description": "C2SP signed note by the log key; text: 'evidence-vault "
                "integrity report v1', then the SHA-256 hex of the canonical report JSON.",
            },
            "report": {
                "type": "object",
                "required": ["format", "case_id", "mode", "evidence", "verdict", "reasons"],
                "properties": {
                    "format": S.STRING,
                    "case_id": S.STRING,
                    "generated_at": S.DATE_TIME,
                    "requested_by": S.STRING,
                    "mode": {"type": "string", "enum": ["now", "scrub"]},
                    "audit_index": S.INDEX,
                    "log": {"type": "object"},
                    "evidence": {"type": "array", "items": {"type": "object"}},
                    "exports": {"type": "array", "items": {"type": "object"}},
                    "verdict": {"type": "string", "enum": ["ok", "failed"]},
                    "reasons": {"type": "array", "items": S.STRING},
                },
            },
        },
    },
)
COVERAGE_REQUEST = define(
    "CoverageRequest",
    {
        "type": "object",
        "required": ["steps"],
        "properties": {
            "match_officer": {
                "type": "boolean",
                "description": "count only footage by the step's officer (default false)",
            },
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": {
                    "type": "object",
                    "required": ["type", "start", "end"],
                    "properties": {
                        "type": {"type": "string", "minLength": 1, "maxLength": 128},
                        "start": S.DATE_TIME,
                        "end": S.DATE_TIME,
                        "officer": {"type": "string", "minLength": 1, "maxLength": 128},
                    },
                },
            },
        },
    },
)
COVERAGE_REPORT = define(
    "CoverageReport",
    {
        "type": "object",
        "required": ["case_id", "steps", "lacking_footage", "incomplete", "unplaced_evidence"],
        "properties": {
            "case_id": S.STRING,
            "match_officer": {"type": "boolean"},
            "recording_required": {"type": "array", "items": S.STRING},
            "lacking_footage": {"type": "array", "items": S.INDEX},
            "incomplete": {"type": "array", "items": S.INDEX},
            "unplaced_evidence": {"type": "array", "items": {"type": "object"}},
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": S.INDEX,
                        "type": S.STRING,
                        "start": S.DATE_TIME,
                        "end": S.DATE_TIME,
                        "officer": S.nullable(S.STRING),
                        "requires_recording": {"type": "boolean"},
                        "status": {"type": "string", "enum": ["covered", "partial", "uncovered"]},
                        "covered_ms": {"type": "integer", "minimum": 0},
                        "duration_ms": {"type": "integer", "minimum": 0},
                        "covered": {"type": "array", "items": _SPAN},
                        "gaps": {"type": "array", "items": _SPAN},
                        "footage": {"type": "array", "items": {"type": "object"}},
                    },
                },
            },
        },
    },
)
DELIVERY_PAGE = define(
    "DeliveryPage",
    {
        "type": "object",
        "required": ["items", "next_before"],
        "properties": {
            "next_before": S.nullable(S.INDEX),
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": S.INDEX,
                        "event_id": S.INDEX,
                        "type": S.STRING,
                        "subscriber": S.STRING,
                        "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
                        "attempts": {"type": "integer", "minimum": 0},
                        "next_attempt_at": _NULL_TIME,
                        "last_status": S.nullable({"type": "integer"}),
                        "last_error": S.nullable(S.STRING),
                        "delivered_at": _NULL_TIME,
                        "created_at": S.DATE_TIME,
                    },
                },
            },
        },
    },
)


@routes.get("/v1/cases/{id}/integrity-report")
@operation(
    "Signed integrity report of a case (legal review)",
    tags=["legal review"],
    params=[
        CASE_ID,
        query(
            "mode",
            "now: re-hash every stored original (default); scrub: the last scrub's result",
            {"type": "string", "enum": ["now", "scrub"]},
        ),
    ],
    responses={
        200: json_response(INTEGRITY_REPORT, "the report and its signed note"),
        400: "unknown mode",
        404: "no such case, or one the caller may not see",
    },
)
async def integrity_report_route(request: web.Request) -> web.Response:
    """Per evidence item of the case the caller may list: the stored hash re-checked (now, or
    at the last scrub), inclusion of its ``acquired`` entry proven against a verified
    checkpoint, and its custody timeline; an overall verdict with reasons. The ``report``
    member is the exact canonical JSON that ``signature`` (a signed note by the log key) signs:
    archive the whole response and check it later with ``verify.report_note`` and the vkey."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    mode = request.query.get("mode", "now")
    if mode not in ("now", "scrub"):
        raise BadRequest("mode: now or scrub")
    chosen: Mode = "now" if mode == "now" else "scrub"
    signed = await integrity_report(
        rt.ledger, request.app[CONTENT], principal, case_id_of(request), mode=chosen
    )
    body = b'{"report":' + signed.data + b',"signature":' + json.dumps(signed.signature).encode()
    return web.Response(body=body + b"}", content_type="application/json", charset="utf-8")


def _utc(t: datetime) -> str:
    """RFC 3339 in UTC with exactly the precision of ``t`` (coverage is exact to the µs)."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _span(a: datetime, b: datetime) -> dict[str, str]:
    return {"start": _utc(a), "end": _utc(b)}


def _ms(a: datetime, b: datetime) -> int:
    return (b - a) // timedelta(milliseconds=1)


def case_id_of(request: web.Request) -> str:
    """The case id of the path; NotFound for one no case can have (1-128 characters, no
    control characters), exactly like an unknown case."""
    case_id = request.match_info["id"]
    if not 0 < len(case_id) <= 128 or any(unicodedata.category(c) == "Cc" for c in case_id):
        raise NotFound(not_found_detail("case"))
    return case_id


@routes.post("/v1/cases/{id}/coverage")
@operation(
    "Footage coverage of a case's enforcement steps (legal review)",
    tags=["legal review"],
    params=[CASE_ID],
    request=json_body(COVERAGE_REQUEST, "the case's enforcement steps"),
    responses={
        200: json_response(COVERAGE_REPORT, "coverage per step"),
        400: "malformed steps",
        404: "no such case, or one the caller may not see",
    },
)
async def coverage_route(request: web.Request) -> web.Response:
    """For each step: the footage covering it (the case's evidence the caller may list, placed
    at its recording start for its probed duration, merged across files), the covered
    intervals and the gaps, which together tile the step exactly; and which steps lack
    footage although their type requires recording (``[review] recording_required``)."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    case_id = case_id_of(request)
    steps, match = parse_steps(await json_object(request))
    pool = rt.db.pool

    async def footage(_case: Target) -> CaseFootage:
        return await case_footage(pool, principal, case_id, mac=rt.ledger.mac)

    # the footage is read before the entry: a read that fails leaves no ``accessed`` entry
    found = await targets.authorize_then(
        pool, rt.ledger, principal, Action.READ_METADATA, "case", case_id, footage
    )
    required = rt.cfg.review.recording_required
    report = coverage(steps, found.placed, required, match_officer=match)
    out_steps = []
    for sc in report.steps:
        out_steps.append(
            {
                "index": sc.index,
                "type": sc.step.type,
                "start": _utc(sc.step.start),
                "end": _utc(sc.step.end),
                "officer": sc.step.officer,
                "requires_recording": sc.requires_recording,
                "status": sc.status,
                "duration_ms": _ms(sc.step.start, sc.step.end),
                "covered_ms": sum(_ms(a, b) for a, b in sc.covered),
                "covered": [_span(a, b) for a, b in sc.covered],
                "gaps": [_span(a, b) for a, b in sc.gaps],
                "footage": [
                    {
                        "evidence_id": f.evidence_id,
                        "officer_id": f.officer_id,
                        **_span(f.start, f.end),
                    }
                    for f in sc.footage
                ],
            }
        )
    return web.json_response(
        {
            "case_id": case_id,
            "match_officer": match,
            "recording_required": list(required),
            "steps": out_steps,
            "lacking_footage": list(report.lacking_footage),
            "incomplete": list(report.incomplete),
            "unplaced_evidence": [{"evidence_id": e, "reason": r} for e, r in found.unplaced],
        },
        dumps=lambda v: json.dumps(v, ensure_ascii=False),
    )


@routes.get("/v1/events/deliveries")
@operation(
    "Event delivery history (admin)",
    tags=["events"],
    params=[
        query("subscriber", "only this subscriber's deliveries"),
        query(
            "status",
            "only this state",
            {"type": "string", "enum": ["pending", "delivered", "failed"]},
        ),
        query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 1000}),
        query("before", "next_before of the previous page", {"type": "integer", "minimum": 1}),
    ],
    responses={200: json_response(DELIVERY_PAGE, "deliveries, newest first"), 403: "admin only"},
)
async def deliveries_route(request: web.Request) -> web.Response:
    """Deliveries of events to the configured subscribers, newest first: state, attempts,
    the last HTTP status or error, and when it was delivered. Payloads are never shown."""
    principal = await principal_of(request)
    rt = request.app[RUNTIME]
    decision = decide(principal, Action.ADMINISTER, Target("system", PUBLIC_LABEL))
    if not decision.allowed:  # recorded like every refused action; 403: the route is no secret
        await decisions.record(
            rt.ledger,
            principal,
            Action.ADMINISTER,
            "system",
            "event-deliveries",
            False,
            decision.recorded,
            refs=[],
        )
        raise Forbidden("the delivery history needs role admin")
    q = request.query
    status = q.get("status")
    if status is not None and status not in ("pending", "delivered", "failed"):
        raise BadRequest("status: pending, delivered or failed")
    subscriber = q.get("subscriber")
    if subscriber is not None and not (len(subscriber) <= 128 and subscriber.isprintable()):
        raise BadRequest("subscriber: at most 128 printable characters")
    limit = int_param(q, "limit", 100, 1, 1000)
    before = int_param(q, "before", 0, 1, 2**63 - 1) if "before" in q else None
    items: list[dict[str, Any]] = await delivery_history(
        rt.db.pool, subscriber=subscriber, status=status, limit=limit, before=before
    )
    next_before = items[-1]["id"] if len(items) == limit else None
    return web.json_response({"items": items, "next_before": next_before})
