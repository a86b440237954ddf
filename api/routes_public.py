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

from aiohttp import web

from api.auth import principal_of
from api.keys import RUNTIME
from api.openapi import define, json_response, operation, query
from vault.access import decisions
from vault.errors import BadRequest, Forbidden
from vault.policy.decide import Action, Target, decide
from vault.policy.labels import PUBLIC_LABEL
from vault.review.statistics import FIRST_YEAR, LAST_YEAR, year_statistics

__all__ = ["routes"]

routes = web.RouteTableDef()

_COUNT = {"type": "integer", "minimum": 0}
STATISTICS = define(
    "YearStatistics",
    {
        "type": "object",
        "required": [
            "year",
            "recordings",
            "recordings_without_duration",
            "footage_seconds",
            "footage_hours",
            "cases_with_footage",
            "verifications",
            "denials",
        ],
        "additionalProperties": False,
        "properties": {
            "year": {"type": "integer", "minimum": FIRST_YEAR, "maximum": LAST_YEAR},
            "recordings": _COUNT,
            "recordings_without_duration": _COUNT,
            "footage_seconds": _COUNT,
            "footage_hours": {"type": "number", "minimum": 0},
            "cases_with_footage": _COUNT,
            "verifications": _COUNT,
            "denials": _COUNT,
        },
    },
)


@routes.get("/v1/public/statistics")
@operation(
    "Yearly statistics for publication (publicity)",
    tags=["publicity"],
    params=[
        query(
            "year",
            "calendar year in [publicity] timezone",
            {"type": "integer", "minimum": FIRST_YEAR, "maximum": LAST_YEAR},
            required=True,
        )
    ],
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
    raw = request.query.get("year", "")
    if not (raw.isascii() and raw.isdigit() and len(raw) == 4):
        raise BadRequest(f"year: a four-digit year from {FIRST_YEAR} to {LAST_YEAR} is required")
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
    stats = await year_statistics(rt.db.pool, int(raw), publicity.timezone, mac=rt.ledger.mac)
    return web.json_response(stats.to_json())
