"""Structured access logs: one JSON line per request on the ``evault.access`` logger.

Guarantees:

- Each line has ``time``, ``method``, ``route`` (the route TEMPLATE, e.g.
  ``/v1/evidence/{id}``, never the raw path or the query string, which may carry file names or
  hashes), ``status``, ``bytes`` (body bytes sent), ``duration_ms``, ``principal`` (the
  authenticated principal's id, or null) and ``request_id`` (also echoed in ``X-Request-Id``).
- Never a header value: no token, no cookie, no sidecar. A request that fails with an
  exception is still logged (status 500) and the exception re-raised unchanged.
- The middleware sits outside ``problem_middleware`` so it sees the final status of problem
  responses; it must be inside nothing that swallows exceptions.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from api.auth import principal_id_of
from api.problems import RID

__all__ = ["ACCESS_LOGGER", "access_log_middleware", "setup_access_log"]

ACCESS_LOGGER = "evault.access"
log = logging.getLogger(ACCESS_LOGGER)


class _AccessFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "access", {})
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "component": ACCESS_LOGGER,
            **fields,
        }
        return json.dumps(entry, ensure_ascii=False)


def setup_access_log(stream: Any = None) -> None:
    """Write access lines as JSON (own handler, not propagated: the fields are the record)."""
    if any(getattr(h, "_evault_access", False) for h in log.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_AccessFormatter())
    handler._evault_access = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)


def _template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def access_log_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Log one line per request (see the module docstring)."""
    start = time.perf_counter()
    status, sent = 500, 0
    try:
        response = await handler(request)
        status = response.status
        sent = response.body_length if response.prepared else _planned(response)
        return response
    finally:
        if log.isEnabledFor(logging.INFO):
            # log.info without its caller lookup (a walk up the stack; no field uses it)
            fields = {
                "method": request.method,
                "route": _template(request),
                "status": status,
                "bytes": sent,
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                "principal": principal_id_of(request),
                "request_id": request.get(RID),
            }
            log.handle(
                log.makeRecord(
                    ACCESS_LOGGER,
                    logging.INFO,
                    __file__,
                    0,
                    "access",
                    (),
                    None,
                    extra={"access": fields},
                )
            )


def _planned(response: web.StreamResponse) -> int:
    if isinstance(response, web.Response) and response.body is not None:
        body = response.body
        return len(body) if isinstance(body, bytes | bytearray) else 0
    return 0
