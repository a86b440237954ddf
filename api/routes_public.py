"""Routes for the publicity module (公示): publication-safe numbers only.

Access (a choice, documented in docs/configuration.md): by default a token is required and the
caller must be allowed ``read_metadata`` on the system with case-independent reach — roles
``case_system`` (the publicity module itself), ``auditor`` or ``admin``; the decision is made
by ``access.decide`` and recorded like every ``read_metadata``. With ``[publicity]
public_statistics = true`` the route answers anyone, without a token: what it returns is meant
for publication (``vault.review.statistics`` says what is counted; nothing identifies a person, case
or place).
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from msgspec import Meta, Struct

from api.auth import principal_of
from api.keys import RUNTIME
from api.openapi import define_structs, json_response, operation, query_params
from api.wire import decode_query, respond
from vault.access import decisions
from vault.errors import Forbidden
from vault.policy.decide import Action, Target, decide
from vault.policy.labels import PUBLIC_LABEL
from vault.review.statistics import FIRST_YEAR, LAST_YEAR, year_statistics

__all__ = ["routes"]

routes = web.RouteTableDef()

Count = Annotated[int, Meta(ge=0)]
Year = Annotated[int, Meta(ge=FIRST_YEAR, le=LAST_YEAR)]


class StatisticsQuery(Struct, forbid_unknown_fields=True):
    year: Annotated[Year, Meta(description="calendar year in [publicity] timezone")]


class YearStatistics(Struct, kw_only=True, forbid_unknown_fields=True):
    year: Year
    recordings: Count
    recordings_without_duration: Count
    footage_seconds: Count
    footage_hours: Annotated[float, Meta(ge=0)]
    cases_with_footage: Count
    verifications: Count
    denials: Count


(STATISTICS,) = define_structs(YearStatistics)


@routes.get("/v1/public/statistics")
@operation(
    "Yearly statistics for publication (publicity)",
    tags=["publicity"],
    params=query_params(StatisticsQuery),
    responses={
        200: json_response(STATISTICS, "the year's totals"),
        400: "missing or invalid year",
        403: "a role other than case_system, auditor or admin",
    },
)
async def statistics_route(request: web.Request) -> web.Response:
    """Totals of one calendar year, numbers only: recordings (by recording start), hours of
    footage, cases with footage, integrity verifications, access denials. Needs a token of a
    case_system, auditor or admin principal unless ``[publicity] public_statistics`` is set."""
    rt = request.app[RUNTIME]
    year = decode_query(request.query, StatisticsQuery).year
    publicity = rt.cfg.publicity
    if not publicity.public_statistics:
        principal = await principal_of(request)
        decision = decide(principal, Action.READ_METADATA, Target("system", PUBLIC_LABEL))
        await decisions.record(
            rt.ledger,
            principal,
            Action.READ_METADATA,
            "system",
            "statistics",
            decision.allowed,
            decision.recorded,
            refs=[],
        )
        if not decision.allowed:  # the route's existence is no secret: 403, never 404
            raise Forbidden("statistics need role case_system, auditor or admin")
    s = await year_statistics(rt.db.pool, year, publicity.timezone, mac=rt.ledger.mac)
    return respond(
        YearStatistics(
            year=s.year,
            recordings=s.recordings,
            recordings_without_duration=s.recordings_without_duration,
            footage_seconds=s.footage_seconds,
            footage_hours=s.footage_hours,
            cases_with_footage=s.cases_with_footage,
            verifications=s.verifications,
            denials=s.denials,
        )
    )
