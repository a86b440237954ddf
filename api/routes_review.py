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
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web
from msgspec import UNSET, Meta, Struct, UnsetType

from api import models as W
from api import schemas as S
from api.auth import principal_of
from api.jsonbody import json_object
from api.keys import PARTS, READINESS, RUNTIME, WORKER
from api.openapi import (
    define,
    define_structs,
    json_body,
    json_response,
    operation,
    path,
    query_params,
)
from api.routes_evidence import CONTENT
from api.wire import decode_query, respond
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
    if "api" not in app[PARTS] or not cfg.subscribers or app[WORKER]:
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


class ReportQuery(Struct, forbid_unknown_fields=True):
    mode: Annotated[
        Literal["now", "scrub"],
        Meta(
            description="now: re-hash every stored original (default); scrub: the last "
            "scrub's result"
        ),
    ] = "now"


class IntegrityReport(Struct, kw_only=True):
    format: str
    case_id: str
    generated_at: W.Instant | UnsetType = UNSET
    requested_by: str | UnsetType = UNSET
    mode: Literal["now", "scrub"]
    audit_index: W.Index | UnsetType = UNSET
    log: dict[str, Any] | UnsetType = UNSET
    evidence: list[dict[str, Any]]
    exports: list[dict[str, Any]] | UnsetType = UNSET
    verdict: Literal["ok", "failed"]
    reasons: list[str]


class IntegrityReportResponse(Struct):
    """The body is the signed canonical bytes of ``vault.review.integrity_report`` (never
    re-encoded: ``signature`` signs them); this Struct describes them."""

    report: IntegrityReport
    signature: Annotated[
        str,
        Meta(
            description="C2SP signed note by the log key; text: 'evidence-vault integrity "
            "report v1', then the SHA-256 hex of the canonical report JSON."
        ),
    ]


class Span(Struct):
    start: W.Instant
    end: W.Instant


class FootageSpan(Struct, kw_only=True):
    evidence_id: str
    officer_id: str | None
    start: W.Instant
    end: W.Instant


class StepReport(Struct, kw_only=True):
    index: W.Index
    type: str
    start: W.Instant
    end: W.Instant
    officer: str | None
    requires_recording: bool
    status: Literal["covered", "partial", "uncovered"]
    duration_ms: W.Size
    covered_ms: W.Size
    covered: list[Span]
    gaps: list[Span]
    footage: list[FootageSpan]


class Unplaced(Struct):
    evidence_id: str
    reason: str


class CoverageReport(Struct, kw_only=True):
    case_id: str
    match_officer: bool
    recording_required: list[str]
    steps: list[StepReport]
    lacking_footage: list[W.Index]
    incomplete: list[W.Index]
    unplaced_evidence: list[Unplaced]


DeliveryStatus = Literal["pending", "delivered", "failed"]


class DeliveriesQuery(Struct, forbid_unknown_fields=True):
    subscriber: Annotated[str, Meta(description="only this subscriber's deliveries")] | None = None
    status: Annotated[DeliveryStatus, Meta(description="only this state")] | None = None
    limit: Annotated[int, Meta(ge=1, le=1000, description="page size")] = 100
    before: (
        Annotated[int, Meta(ge=1, le=2**63 - 1, description="next_before of the previous page")]
        | None
    ) = None


class Delivery(Struct, kw_only=True):
    id: W.Index
    event_id: W.Index
    type: str
    subscriber: str
    status: DeliveryStatus
    attempts: W.Size
    next_attempt_at: W.Instant | None
    last_status: int | None
    last_error: str | None
    delivered_at: W.Instant | None
    created_at: W.Instant


class DeliveryPage(Struct):
    items: list[Delivery]
    next_before: W.Index | None


INTEGRITY_REPORT, COVERAGE_REPORT, DELIVERY_PAGE = define_structs(
    IntegrityReportResponse, CoverageReport, DeliveryPage
)
COVERAGE_REQUEST = define(  # parsed by vault.review.coverage.parse_steps (its rules)
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


@routes.get("/v1/cases/{id}/integrity-report")
@operation(
    "Signed integrity report of a case (legal review)",
    tags=["legal review"],
    params=[CASE_ID, *query_params(ReportQuery)],
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
    chosen: Mode = decode_query(request.query, ReportQuery).mode
    signed = await integrity_report(
        rt.ledger, request.app[CONTENT], principal, case_id_of(request), mode=chosen
    )
    body = b'{"report":' + signed.data + b',"signature":' + json.dumps(signed.signature).encode()
    return web.Response(body=body + b"}", content_type="application/json", charset="utf-8")


def _utc(t: datetime) -> datetime:
    """In UTC (``Z``), with exactly the precision of ``t`` (coverage is exact to the µs)."""
    return t.astimezone(UTC)


def _span(a: datetime, b: datetime) -> Span:
    return Span(_utc(a), _utc(b))


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
    out_steps = [
        StepReport(
            index=sc.index,
            type=sc.step.type,
            start=_utc(sc.step.start),
            end=_utc(sc.step.end),
            officer=sc.step.officer,
            requires_recording=sc.requires_recording,
            status=sc.status,
            duration_ms=_ms(sc.step.start, sc.step.end),
            covered_ms=sum(_ms(a, b) for a, b in sc.covered),
            covered=[_span(a, b) for a, b in sc.covered],
            gaps=[_span(a, b) for a, b in sc.gaps],
            footage=[
                FootageSpan(
                    evidence_id=f.evidence_id,
                    officer_id=f.officer_id,
                    start=_utc(f.start),
                    end=_utc(f.end),
                )
                for f in sc.footage
            ],
        )
        for sc in report.steps
    ]
    return respond(
        CoverageReport(
            case_id=case_id,
            match_officer=match,
            recording_required=list(required),
            steps=out_steps,
            lacking_footage=list(report.lacking_footage),
            incomplete=list(report.incomplete),
            unplaced_evidence=[Unplaced(e, r) for e, r in found.unplaced],
        )
    )


@routes.get("/v1/events/deliveries")
@operation(
    "Event delivery history (admin)",
    tags=["events"],
    params=query_params(DeliveriesQuery),
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
    q = decode_query(request.query, DeliveriesQuery)
    subscriber, limit = q.subscriber, q.limit
    if subscriber is not None and not (len(subscriber) <= 128 and subscriber.isprintable()):
        raise BadRequest("subscriber: at most 128 printable characters")
    rows = await delivery_history(
        rt.db.pool, subscriber=subscriber, status=q.status, limit=limit, before=q.before
    )
    items = msgspec.convert(rows, list[Delivery])  # the times: RFC 3339 text from vault
    next_before = items[-1].id if len(items) == limit else None
    return respond(DeliveryPage(items, next_before))
