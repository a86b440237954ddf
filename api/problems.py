"""The one place errors become HTTP responses: RFC 9457 problem+json.

``EvaultError`` subclasses carry their status; aiohttp's own HTTP exceptions keep theirs; any
other exception is a 500 whose detail reveals nothing (it is logged with the request id).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from vault.errors import EvaultError

log = logging.getLogger("evault.api")

REQUEST_ID: web.AppKey[str] = web.AppKey("request_id_header", str)
PROBLEM_TYPE = "application/problem+json"


def problem(status: int, title: str, detail: str, type_uri: str, request_id: str) -> web.Response:
    body = {
        "type": type_uri,
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": request_id,
    }
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False),
        content_type=PROBLEM_TYPE,
        headers={"X-Request-Id": request_id},
    )


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Assign a request id, and map every error to problem+json."""
    rid = request.headers.get("X-Request-Id", "")
    if not (0 < len(rid) <= 64 and rid.replace("-", "").isalnum()):
        rid = uuid.uuid4().hex
    request["request_id"] = rid
    try:
        response = await handler(request)
    except EvaultError as exc:
        if exc.status >= 500:
            log.error("request %s failed: %s", rid, exc.detail)
        return problem(exc.status, exc.title, exc.detail, exc.type_uri, rid)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = problem(exc.status, exc.reason, exc.text or exc.reason, "about:blank", rid)
        if "Allow" in exc.headers:  # 405 must say what is allowed (RFC 9110 §15.5.6)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    response.headers.setdefault("X-Request-Id", rid)
    return response
