"""The one place errors become HTTP responses: RFC 9457 problem+json.

Guarantees:

- Every error response of every route is problem+json carrying the request id (also in
  ``X-Request-Id``): ``EvaultError`` subclasses with their status; aiohttp's own HTTP exceptions
  with theirs; the database being down (``vault.db.is_outage``: refused, lost, shutting down,
  out of resources) as ``Unavailable`` (503); any other exception as a 500 whose detail
  reveals nothing, logged once with its traceback and the request id.
- An error carrying per-field ``errors`` (``vault.redaction.spec.InvalidSpec``) lists them in an
  ``errors`` member (RFC 9457 extension): ``[{"field": ..., "detail": ...}]``.
- Every 503 carries ``Retry-After``: the client retries, nothing was changed.
- An error after a response has started (a stream failing midway) cannot become a problem: it
  is logged and re-raised, so aiohttp drops the connection and the client sees a short body
  (needs ``setup(app)``, which notes each response's start).
- A path or query parameter holding a NUL or an unpaired surrogate is a 400 before any handler
  runs (no such text can name anything stored: PostgreSQL ``text`` cannot hold it), so no
  identifier's answer depends on it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web
from msgspec import UNSET

from api.jsonbody import clean_text
from api.models import FieldError, ProblemDetails
from vault.db import is_outage
from vault.errors import BadRequest, EvaultError, Unavailable

log = logging.getLogger("evault.api")

REQUEST_ID: web.AppKey[str] = web.AppKey("request_id_header", str)
PROBLEM_TYPE = "application/problem+json"
RETRY_AFTER = "5"  # seconds: a restarting database is usually back within a few
#: The id of the request being answered (its X-Request-Id when usable, else a new one).
RID: web.RequestKey[str] = web.RequestKey("request_id", str)
_STARTED: web.RequestKey[bool] = web.RequestKey("evault.response_started", bool)


def problem(
    status: int,
    title: str,
    detail: str,
    type_uri: str,
    request_id: str,
    errors: list[FieldError] | None = None,
) -> web.Response:
    body = ProblemDetails(type_uri, title, status, detail, request_id, errors or UNSET)
    return web.Response(
        status=status,
        body=msgspec.json.encode(body),
        content_type=PROBLEM_TYPE,
        charset="utf-8",
        headers={"X-Request-Id": request_id},
    )


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Assign a request id, and map every error to problem+json (see the module docstring)."""
    rid = request.headers.get("X-Request-Id", "")
    if not (0 < len(rid) <= 64 and rid.replace("-", "").isalnum()):
        rid = uuid.uuid4().hex
    request[RID] = rid
    try:
        _check_text(request)
        response = await handler(request)
    except Exception as exc:
        if isinstance(exc, web.HTTPException) and exc.status < 400:
            raise  # a redirect, not an error
        if request.get(_STARTED):  # headers are out: too late for a problem response
            log.error("request %s failed while its response was sent: %r", rid, exc)
            raise
        return _to_problem(exc, rid)
    response.headers.setdefault("X-Request-Id", rid)
    return response


def _to_problem(exc: Exception, rid: str) -> web.Response:
    if isinstance(exc, EvaultError):
        return _evault_problem(exc, rid)
    if isinstance(exc, web.HTTPException):
        response = problem(exc.status, exc.reason, exc.text or exc.reason, "about:blank", rid)
        if "Allow" in exc.headers:  # 405 must say what is allowed (RFC 9110 §15.5.6)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    if is_outage(exc):
        log.error("request %s: dependency unavailable: %s: %s", rid, type(exc).__name__, exc)
        detail = "the database or storage is unavailable; retry later"
        return _evault_problem(Unavailable(detail), rid, False)
    log.error("request %s failed with an unexpected error", rid, exc_info=exc)
    return _evault_problem(EvaultError(), rid, False)


async def _mark_started(request: web.Request, response: web.StreamResponse) -> None:
    request[_STARTED] = True


def setup(app: web.Application) -> None:
    """Note when each response starts (see the module docstring)."""
    app.on_response_prepare.append(_mark_started)


def _evault_problem(exc: EvaultError, rid: str, log_it: bool = True) -> web.Response:
    if exc.status >= 500 and log_it:
        log.error("request %s failed: %s", rid, exc.detail)
    errors = getattr(exc, "errors", None)  # per-field errors (a redaction spec's, say)
    fields = None
    if isinstance(errors, tuple):
        fields = [FieldError(f, d) for f, d in errors]
    response = problem(exc.status, exc.title, exc.detail, exc.type_uri, rid, fields)
    if exc.status == 503:
        response.headers["Retry-After"] = RETRY_AFTER
    return response


def _check_text(request: web.Request) -> None:
    """BadRequest for a path or query holding text no stored thing can be named by."""
    if not clean_text(request.path):
        raise BadRequest("the path may not hold NUL characters or lone surrogates")
    for key, value in request.query.items():
        if not (clean_text(key) and clean_text(value)):
            raise BadRequest("query parameters may not hold NUL characters or lone surrogates")
