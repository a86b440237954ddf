"""The OpenAPI 3.1 document, generated from the router: one ``@operation`` per handler.

Guarantees:

- ``build(app)`` walks ``app.router`` and describes every route (HEAD routes that aiohttp adds
  for a GET are covered by the GET). A route whose handler carries no ``@operation`` makes it
  raise ``MissingOperation`` naming the method and path: ``setup(app)`` builds the document at
  startup, so a service with an undocumented route does not start, and a test fails.
- Every operation gets a ``default`` problem+json response (``ProblemDetails``); one with
  ``auth=True`` also gets the bearer security requirement and a 401 response. Path templates
  with regular expressions (``{path:.+}``) are published as plain ``{path}``.
- The document is built once per application and served, unchanged, at ``GET /openapi.json``.

Usage (for route modules)::

    (RECEIPT,) = define_structs(Receipt)                   # components from msgspec Structs
    OTHER = define("Other", {...json schema...})           # or written by hand; both a $ref
    @routes.get("/v1/things/{id}")
    @operation("One thing", tags=["things"], params=[path("id")],
               responses={200: json_response(RECEIPT, "the thing"), 404: "no such thing"})
    async def thing(request): ...

Query parameters are declared by a Struct (``params=query_params(ThingQuery)``), which the
handler decodes (``api.wire.decode_query``); component names are unique (a second, different
schema under one name fails at import).

A ``responses`` value that is a string is a description: for a status ≥ 400 it becomes a
problem+json response, for others a response without content. ``request`` is a requestBody
object (``json_body`` / ``binary_body``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec
from aiohttp import web

from api.models import ProblemDetails
from vault.errors import BadRequest

__all__ = [
    "OPENAPI",
    "PROBLEM",
    "MissingOperation",
    "Operation",
    "Param",
    "binary_body",
    "build",
    "content_response",
    "define",
    "define_structs",
    "header",
    "json_body",
    "json_response",
    "operation",
    "path",
    "query",
    "query_names",
    "query_params",
    "ref",
    "setup",
    "unknown_query_middleware",
]

Schema = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Callable[..., Any])

_ATTR = "__evault_operation__"
PROBLEM_TYPE = "application/problem+json"
_SCHEMAS: dict[str, Schema] = {}
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)


class MissingOperation(RuntimeError):
    """A route has no ``@operation``: document it (the message names the route)."""


def define(name: str, schema: Schema) -> Schema:
    """Register component schema ``name`` (once; the same name twice must be the same schema)
    and return a ``$ref`` to it."""
    if name in _SCHEMAS and _SCHEMAS[name] != schema:
        raise ValueError(f"schema {name} defined twice, differently")
    _SCHEMAS[name] = schema
    return ref(name)


def ref(name: str) -> Schema:
    """A ``$ref`` to component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


_REF_TEMPLATE = "#/components/schemas/{name}"


def define_structs(*types: type[msgspec.Struct]) -> list[Schema]:
    """Register the components of msgspec Structs ``types`` (and of every Struct they use),
    as ``define`` does, and return a ``$ref`` to each of ``types``."""
    refs, components = msgspec.json.schema_components(types, ref_template=_REF_TEMPLATE)
    for name, schema in components.items():
        schema.pop("title", None)  # the component's name says it
        if "description" in schema:  # a docstring, reflowed
            schema["description"] = " ".join(schema["description"].split())
        define(name, schema)
    return list(refs)


(PROBLEM,) = define_structs(ProblemDetails)


@dataclass(frozen=True)
class Param:
    """One parameter of an operation."""

    name: str
    where: Literal["path", "query", "header"]
    schema: Schema
    required: bool = False
    description: str = ""

    def to_json(self) -> Schema:
        out: Schema = {"name": self.name, "in": self.where, "schema": self.schema}
        out["required"] = self.required or self.where == "path"
        if self.description:
            out["description"] = self.description
        return out


_STRING: Schema = {"type": "string"}


def path(name: str, description: str = "", schema: Schema | None = None) -> Param:
    return Param(name, "path", schema or _STRING, True, description)


def query(
    name: str, description: str = "", schema: Schema | None = None, *, required: bool = False
) -> Param:
    return Param(name, "query", schema or _STRING, required, description)


def header(
    name: str, description: str = "", schema: Schema | None = None, *, required: bool = False
) -> Param:
    return Param(name, "header", schema or _STRING, required, description)


def query_params(struct: type[msgspec.Struct]) -> list[Param]:
    """The query parameters a Struct declares, one per field (its description and schema from
    the field's ``Meta``; an optional field's null is left out: a query has no null; a list
    field is a repeatable parameter)."""
    (ref_,), components = msgspec.json.schema_components([struct], ref_template=_REF_TEMPLATE)
    schema = components[ref_["$ref"].rsplit("/", 1)[1]]
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", "")
        options = [o for o in prop.pop("anyOf", ()) if o != {"type": "null"}]
        if options:
            prop = {**options[0], **prop} if len(options) == 1 else {"anyOf": options, **prop}
        if prop.get("default") is None:
            prop.pop("default", None)
        out.append(Param(name, "query", prop, name in required, description))
    return out


def json_body(schema: Schema, description: str = "", *, required: bool = True) -> Schema:
    return {
        "description": description,
        "required": required,
        "content": {"application/json": {"schema": schema}},
    }


def binary_body(
    description: str, media_type: str = "application/octet-stream", *, required: bool = True
) -> Schema:
    return {
        "description": description,
        "required": required,
        "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
    }


def json_response(
    schema: Schema, description: str, headers: Mapping[str, Schema] | None = None
) -> Schema:
    return content_response(description, {"application/json": schema}, headers)


def content_response(
    description: str, media: Mapping[str, Schema], headers: Mapping[str, Schema] | None = None
) -> Schema:
    out: Schema = {
        "description": description,
        "content": {k: {"schema": v} for k, v in media.items()},
    }
    if headers:
        out["headers"] = {k: {"schema": v} for k, v in headers.items()}
    return out


def _problem(description: str) -> Schema:
    return {"description": description, "content": {PROBLEM_TYPE: {"schema": PROBLEM}}}


@dataclass(frozen=True)
class Operation:
    """What ``@operation`` records on a handler."""

    summary: str
    tags: tuple[str, ...]
    params: tuple[Param, ...]
    request: Schema | None
    responses: Mapping[int | str, Schema | str]
    auth: bool
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self, operation_id: str) -> Schema:
        out: Schema = {"operationId": operation_id, "summary": self.summary}
        if self.description:
            out["description"] = self.description
        if self.tags:
            out["tags"] = list(self.tags)
        if self.params:
            out["parameters"] = [p.to_json() for p in self.params]
        if self.request is not None:
            out["requestBody"] = self.request
        responses: Schema = {}
        for status, spec in self.responses.items():
            if isinstance(spec, str):
                code = int(status) if str(status).isdigit() else 0
                spec = _problem(spec) if code >= 400 else {"description": spec}
            responses[str(status)] = spec
        if self.auth:
            responses.setdefault("401", _problem("no valid credentials"))
        responses.setdefault("default", _problem("an error (RFC 9457 problem details)"))
        out["responses"] = responses
        out["security"] = [{"bearer": []}] if self.auth else []
        out.update(self.extra)
        return out


def operation(
    summary: str,
    *,
    tags: Sequence[str] = (),
    params: Sequence[Param] = (),
    request: Schema | None = None,
    responses: Mapping[Any, Any],
    auth: bool = True,
    description: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Callable[[H], H]:
    """Record the OpenAPI operation of a handler (its docstring is the description unless
    ``description`` is given). Apply it under the route decorator, or call it on a handler
    defined elsewhere: ``operation(...)(module.handler)``."""

    def mark(handler: H) -> H:
        doc = description if description is not None else (handler.__doc__ or "")
        op = Operation(
            summary,
            tuple(tags),
            tuple(params),
            request,
            dict(responses),
            auth,
            " ".join(doc.split()),
            dict(extra or {}),
        )
        setattr(handler, _ATTR, op)
        return handler

    return mark


_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^{}]*(?:\{[^{}]*\}[^{}]*)*)?\}")


def _openapi_path(canonical: str) -> str:
    return _TEMPLATE.sub(lambda m: "{" + m.group(1) + "}", canonical)


def build(
    app: web.Application, *, title: str = "evidence-vault", version: str = "1"
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route of ``app``; MissingOperation if one lacks it."""
    paths: dict[str, dict[str, Any]] = {}
    seen_ids: set[str] = set()
    for route in app.router.routes():
        method = route.method.lower()
        resource = route.resource
        if resource is None or method == "head" or method == "*":
            continue
        p = _openapi_path(resource.canonical)
        op = getattr(route.handler, _ATTR, None)
        if not isinstance(op, Operation):
            raise MissingOperation(
                f"{route.method} {resource.canonical}: handler has no @operation (api.openapi)"
            )
        op_id = getattr(route.handler, "__name__", "op")
        if op_id in seen_ids:
            op_id = f"{op_id}_{method}"
        seen_ids.add(op_id)
        paths.setdefault(p, {})[method] = op.to_json(op_id)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Evidence-integrity service: docks, case system, reviewers. Every "
            "error is RFC 9457 problem+json; send `Authorization: Bearer <token>`.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(_SCHEMAS.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from `evault token create` (evt_...).",
                }
            },
        },
    }


routes = web.RouteTableDef()


@routes.get("/openapi.json")
@operation(
    "This document",
    tags=["meta"],
    auth=False,
    responses={200: json_response({"type": "object"}, "the OpenAPI 3.1 document")},
)
async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document describing every route of this service."""
    return web.json_response(request.app[OPENAPI])


def query_names(handler: object) -> frozenset[str] | None:
    """The query parameters ``handler``'s ``@operation`` declares (None: not documented)."""
    op = getattr(handler, _ATTR, None)
    if not isinstance(op, Operation):
        return None
    return frozenset(p.name for p in op.params if p.where == "query")


@web.middleware
async def unknown_query_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse (400, naming it) a query parameter the route's ``@operation`` does not declare,
    so a misspelt filter is never silently ignored: the allowed set IS the published one."""
    if request.query:
        allowed = query_names(request.match_info.handler)
        if allowed is not None:
            unknown = sorted(set(request.query) - allowed)
            if unknown:
                names = ", ".join(repr(n[:64]) for n in unknown[:5])
                accepted = ", ".join(sorted(allowed)) or "none"
                raise BadRequest(f"unknown query parameter {names}: this route accepts {accepted}")
    return await handler(request)


def setup(app: web.Application) -> None:
    """Serve ``/openapi.json`` and build the document when the app starts (after every
    route is added), failing the start if any route is undocumented; refuse query parameters
    a route does not declare (``unknown_query_middleware``, innermost, so the problem
    middleware maps its 400)."""
    app.add_routes(routes)
    app.middlewares.append(unknown_query_middleware)
    app[OPENAPI] = {}

    async def on_startup(a: web.Application) -> None:
        a[OPENAPI].update(build(a))

    app.on_startup.append(on_startup)
