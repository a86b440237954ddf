"""Who is asking: bearer tokens (and, for docks, TLS client certificates).

Guarantees:

- ``principal_of(request)`` returns the authenticated ``Principal`` or raises
  ``Unauthenticated`` (401 problem+json; ``auth_header_middleware`` adds
  ``WWW-Authenticate: Bearer``). A missing header, a malformed one, an unknown, expired or revoked
  token and a token of a disabled principal all give the same response (``vault.access.tokens``).
- The result is cached on the request: at most one database lookup per request however many
  times a handler asks, none when the process's ``TOKEN_CACHE`` answers (``vault.access.tokens``: a
  revoked or expired token, or a disabled principal, is refused at once).
  The token is never stored on the request, logged or echoed; only the principal id is kept
  (``principal_id_of``, for the access log).
- Client certificates (only when ``service.tls_client_ca`` is configured, so the TLS layer has
  verified the chain): a request without a bearer token whose verified certificate's subject CN
  names an active principal holding the ``dock`` role authenticates as that principal reduced to
  the ``dock`` role alone. A certificate can therefore only ever upload to its own docks.
"""

from __future__ import annotations

import dataclasses
import ssl
from typing import Any

from aiohttp import web

from api.keys import RUNTIME, TOKEN_CACHE
from vault.access import principals, tokens
from vault.errors import BadRequest, NotFound, Unauthenticated
from vault.policy.decide import Principal, Role

__all__ = [
    "CHALLENGE",
    "auth_header_middleware",
    "optional_principal",
    "principal_id_of",
    "principal_of",
]

_CACHE: web.RequestKey[Principal] = web.RequestKey("evault.principal", Principal)
CHALLENGE = 'Bearer realm="evidence-vault"'


def _bearer(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None when there is no header;
    Unauthenticated when the header is there but is not a bearer credential."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated()
    return token.strip()


def _peer_cn(request: web.Request) -> str | None:
    """The subject CN of a client certificate verified by the TLS layer, if any."""
    transport = request.transport
    if transport is None or transport.get_extra_info("sslcontext") is None:
        return None
    cert: Any = transport.get_extra_info("peercert")
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and isinstance(value, str):
                return value
    return None


async def _from_certificate(request: web.Request) -> Principal | None:
    cn = _peer_cn(request)
    if cn is None:
        return None
    try:
        principals.check_id(cn)
        p = await principals.load(request.app[RUNTIME].db.pool, cn)
    except (NotFound, BadRequest):
        raise Unauthenticated() from None
    if not p.active or Role.DOCK not in p.roles:
        raise Unauthenticated()
    return dataclasses.replace(p, roles=frozenset({Role.DOCK}))


async def principal_of(request: web.Request) -> Principal:
    """The caller; ``Unauthenticated`` otherwise. Cached per request."""
    cached = request.get(_CACHE)
    if isinstance(cached, Principal):
        return cached
    token = _bearer(request)
    if token is not None:
        app = request.app
        principal = await tokens.authenticate(app[RUNTIME].db.pool, token, app.get(TOKEN_CACHE))
    else:
        found = await _from_certificate(request)
        if found is None:
            raise Unauthenticated()
        principal = found
    request[_CACHE] = principal
    return principal


async def optional_principal(request: web.Request) -> Principal | None:
    """The caller when credentials are presented (invalid ones still raise), else None."""
    if request.headers.get("Authorization") is None and _peer_cn(request) is None:
        return None
    return await principal_of(request)


def principal_id_of(request: web.Request) -> str | None:
    """The id of the principal this request authenticated as, if it did (never the token)."""
    cached = request.get(_CACHE)
    return cached.id if isinstance(cached, Principal) else None


@web.middleware
async def auth_header_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Add the ``WWW-Authenticate`` challenge to every 401 (RFC 9110 §11.6.1). Place it
    outside ``problem_middleware`` so it sees the problem responses."""
    response: web.StreamResponse = await handler(request)
    if response.status == 401:
        response.headers["WWW-Authenticate"] = CHALLENGE
    return response


def client_ssl_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """A server TLS context; with ``client_ca``, client certificates are requested and, when
    presented, verified against it (optional: token clients need none)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx
