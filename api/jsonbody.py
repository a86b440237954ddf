"""The one JSON parser for what clients send (request bodies, JSON-carrying headers).

Guarantees:

- ``parse(raw)`` returns the decoded value or raises ``BadRequest``, never anything else:
  malformed JSON, invalid UTF-8, nesting deeper than ``MAX_DEPTH`` (the decoder's recursion
  included), and a string or key holding a NUL or an unpaired surrogate (``"\\u0000"``,
  ``"\\ud800"``: PostgreSQL ``text`` cannot hold them and UTF-8 cannot encode them) are all a
  400, so no client input reaches the database in a form it must refuse.
- ``clean_text(value)`` is the same check for one string (paths, query parameters).
- The walk over the decoded value is iterative: no input depth reaches Python's recursion limit.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from vault.errors import BadRequest

__all__ = ["MAX_DEPTH", "clean_text", "json_object", "parse"]

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted; no request schema needs more than a few."""


def clean_text(value: str) -> bool:
    """True when ``value`` can be stored as PostgreSQL text: no NUL, valid UTF-8 (no lone
    surrogate)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(value: Any) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not clean_text(item):
                raise BadRequest("JSON strings may not hold NUL characters or lone surrogates")
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise BadRequest(f"JSON nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


def parse(raw: bytes | str) -> Any:
    """The JSON value of ``raw``; BadRequest for anything a client must correct (see module)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise BadRequest(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
        raise BadRequest("the body is not valid JSON") from None
    _check(value)
    return value


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (at most ``client_max_size``); BadRequest otherwise."""
    body = parse(await request.read())
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body
