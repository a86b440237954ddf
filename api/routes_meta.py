"""Who the caller is and what the service is configured with, for the console and clients.

Guarantees:

- ``GET /v1/me`` answers only about the caller itself (its token's principal): id, roles,
  clearance, caveats, assigned cases, officer id, and ``may``: the actions its roles grant at
  all (``vault.policy.decide.granted_actions``). ``may`` says what is worth offering (a player, a
  download button), never what is allowed on a given item: every request is still decided,
  and recorded, on its own.
- ``GET /v1/review/step-types`` lists the enforcement step types that must be recorded
  (``[review] recording_required``), as the coverage report uses them, so a client can offer
  them instead of free text. Any authenticated caller may read it: it is configuration, not
  evidence.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from msgspec import UNSET, Meta, Struct, UnsetType

from api.auth import principal_of
from api.keys import RUNTIME
from api.openapi import define_structs, json_response, operation
from api.wire import respond
from vault.policy.decide import Action, granted_actions

__all__ = ["routes"]

routes = web.RouteTableDef()


class Me(Struct, kw_only=True):
    id: str
    roles: list[str]
    clearance: str
    caveats: list[str]
    cases: list[str]
    officer_id: str | UnsetType | None = UNSET
    may: Annotated[
        list[Annotated[str, Meta(extra_json_schema={"enum": [a.value for a in Action]})]],
        Meta(
            description="actions the caller's roles grant at all (each request is still "
            "decided on its own item)"
        ),
    ]


class StepTypes(Struct):
    recording_required: list[str]


ME, STEP_TYPES = define_structs(Me, StepTypes)


@routes.get("/v1/me")
@operation("The caller", tags=["meta"], responses={200: json_response(ME, "the caller")})
async def me(request: web.Request) -> web.Response:
    """The authenticated principal and the actions its roles grant (see the module docstring)."""
    p = await principal_of(request)
    return respond(
        Me(
            id=p.id,
            roles=sorted(r.value for r in p.roles),
            clearance=p.clearance.slug,
            caveats=sorted(c.value for c in p.caveats),
            cases=sorted(p.cases),
            officer_id=p.officer_id,
            may=sorted(a.value for a in granted_actions(p)),
        )
    )


@routes.get("/v1/review/step-types")
@operation(
    "Enforcement step types that require recording",
    tags=["review"],
    responses={200: json_response(STEP_TYPES, "the configured step types")},
)
async def step_types(request: web.Request) -> web.Response:
    """``[review] recording_required``, in configured order (coverage reports use this list)."""
    await principal_of(request)
    cfg = request.app[RUNTIME].cfg
    return respond(StepTypes(list(cfg.review.recording_required)))
