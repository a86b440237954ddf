"""The reviewer console: a static, framework-free web page served by the API process.

Guarantees:

- ``GET /`` redirects (302) to ``/console/``.
- ``GET /console/`` (and ``/console``) serve ``static/index.html``; ``GET /console/static/{name}``
  serves only the files shipped in ``static/`` (read once at import: a name outside that set,
  ``..`` included, is the usual 404 problem). Nothing else is served and nothing is computed
  from the request: the page reads everything through the public ``/v1`` API with the
  reviewer's bearer token, so it can show nothing the API would not.
- Every response under ``/console`` (errors included) carries a strict Content-Security-Policy
  (no inline scripts or styles, no other origin, no framing), ``X-Content-Type-Options:
  nosniff``, ``Referrer-Policy: no-referrer`` and ``X-Frame-Options: DENY``. Assets carry a
  strong ETag (their SHA-256) and ``Cache-Control: no-cache``, so a new version is picked up
  and an unchanged one costs a 304.
- The token is never sent to or stored by these routes: it lives in the page's memory only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from api.openapi import content_response, operation, path
from api.streaming import etag_matches
from vault.errors import NotFound

__all__ = ["CSP", "SECURITY_HEADERS", "routes", "setup"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
PREFIX = "/console"
STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _load() -> dict[str, Asset]:
    assets: dict[str, Asset] = {}
    for file in sorted(STATIC.rglob("*")):
        media_type = _TYPES.get(file.suffix)
        if not file.is_file() or media_type is None:
            continue
        body = file.read_bytes()
        name = file.relative_to(STATIC).as_posix()
        assets[name] = Asset(body, media_type, f'"{hashlib.sha256(body).hexdigest()}"')
    return assets


ASSETS = _load()
routes = web.RouteTableDef()
_MEDIA = {t: {"type": "string"} for t in sorted(set(_TYPES.values()))}


def _send(request: web.Request, asset: Asset) -> web.Response:
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
    if etag_matches(request.headers.get("If-None-Match"), asset.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=asset.body, content_type=asset.media_type, charset="utf-8", headers=headers
    )


_PAGE = {
    200: content_response("the console page", {"text/html": {"type": "string"}}),
    304: "not modified",
}


@routes.get("/")
@operation(
    "The service's front page: a redirect to the reviewer console",
    tags=["console"],
    auth=False,
    responses={302: "Location: /console/"},
)
async def front_page(request: web.Request) -> web.Response:
    """``/`` sends a browser to the reviewer console (``/console/``)."""
    raise web.HTTPFound(PREFIX + "/")


@routes.get(PREFIX)
@operation("The reviewer console", tags=["console"], auth=False, responses=_PAGE)
async def console_root(request: web.Request) -> web.Response:
    """The reviewer console's page (it signs in with a token and calls this API)."""
    return _send(request, ASSETS["index.html"])


@routes.get(PREFIX + "/")
@operation("The reviewer console", tags=["console"], auth=False, responses=_PAGE)
async def console_index(request: web.Request) -> web.Response:
    """The reviewer console's page (it signs in with a token and calls this API)."""
    return _send(request, ASSETS["index.html"])


@routes.get(PREFIX + "/static/{name:.+}")
@operation(
    "A static asset of the reviewer console",
    tags=["console"],
    auth=False,
    params=[path("name", "asset path, e.g. app.js or i18n/zh.json")],
    responses={
        200: content_response("the asset", _MEDIA),
        304: "not modified",
        404: "no such asset",
    },
)
async def console_static(request: web.Request) -> web.Response:
    """A script, style sheet, icon or translation of the console; only shipped files."""
    asset = ASSETS.get(request.match_info["name"])
    if asset is None:
        raise NotFound("no such console asset")
    return _send(request, asset)


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    path_ = request.path
    if path_ == PREFIX or path_.startswith(PREFIX + "/"):
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)


def setup(app: web.Application) -> None:
    """Add the console routes and its security headers to ``app`` (before ``openapi.setup``)."""
    app.add_routes(routes)
    app.on_response_prepare.append(_secure)
