"""Reading and writing the wire models of ``api.models`` (msgspec Structs).

Guarantees:

- ``decode_body(request, T)`` is the request body as Struct ``T`` or a ``BadRequest`` (400
  problem+json) naming the field: the body first passes ``api.jsonbody.parse`` (depth, NUL and
  lone surrogates, valid JSON), then msgspec converts it strictly (no type coercion, no unknown
  field, every ``Meta`` bound checked).
- ``decode_query(request.query, T)`` is the query string as Struct ``T`` (the one declaring
  the route's query parameters through ``api.openapi.query_params``), decoded strictly but for
  decimal digits given to an integer field; a list field takes every value of a repeated
  parameter, any other field the first. Unknown names never get here:
  ``unknown_query_middleware`` refuses them first.
- ``respond(value)`` encodes with ``msgspec.json.encode`` (datetimes as RFC 3339).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from api.jsonbody import parse
from vault.errors import BadRequest

__all__ = ["decode_body", "decode_body_bytes", "decode_query", "respond"]

T = TypeVar("T", bound=msgspec.Struct)

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`")
_MAX_DETAIL = 300
_FIELDS: dict[type[Any], tuple[frozenset[str], frozenset[str]]] = {}


def _detail(exc: msgspec.ValidationError) -> str:
    """msgspec's message, led by the field it is about (``title: expected `str`...``), and
    short: a value it echoes is cut."""
    text = str(exc)
    m = _AT.match(text)
    msg, where = (m["msg"], m["path"]) if m else (text, None)
    for pattern, what in ((_MISSING, "is required"), (_UNKNOWN, "is not a known field")):
        found = pattern.match(msg)
        if found:
            where = f"{where}.{found['name']}" if where else found["name"]
            msg = what
            break
    else:
        msg = msg[:1].lower() + msg[1:]
    out = f"{where}: {msg}" if where else msg
    return out if len(out) <= _MAX_DETAIL else out[: _MAX_DETAIL - 1] + "…"


def decode_body_bytes(raw: bytes, struct: type[T]) -> T:
    """``raw`` as ``struct``; BadRequest naming the field otherwise (see the module)."""
    value = parse(raw)
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        return msgspec.convert(value, struct, strict=True)
    except msgspec.ValidationError as exc:
        raise BadRequest(_detail(exc)) from None


async def decode_body(request: web.Request, struct: type[T]) -> T:
    """The request body (at most ``client_max_size``) as ``struct``."""
    return decode_body_bytes(await request.read(), struct)


def _bare(t: msgspec.inspect.Type) -> msgspec.inspect.Type:
    while isinstance(t, msgspec.inspect.Metadata):
        t = t.type
    if isinstance(t, msgspec.inspect.UnionType):  # X | None: X
        kinds = [k for k in t.types if not isinstance(k, msgspec.inspect.NoneType)]
        if len(kinds) == 1:
            return _bare(kinds[0])
    return t


def _fields(struct: type[Any]) -> tuple[frozenset[str], frozenset[str]]:
    """The names of ``struct``'s list fields and of its integer fields."""
    found = _FIELDS.get(struct)
    if found is None:
        info = msgspec.inspect.type_info(struct)
        kinds = [(f.encode_name, _bare(f.type)) for f in getattr(info, "fields", ())]
        lists = (msgspec.inspect.ListType, msgspec.inspect.SetType)
        found = (
            frozenset(n for n, t in kinds if isinstance(t, lists)),
            frozenset(n for n, t in kinds if isinstance(t, msgspec.inspect.IntType)),
        )
        _FIELDS[struct] = found
    return found


def _number(text: str) -> int | str:
    """Decimal digits as an int; anything else stays text, for msgspec to refuse."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 19 else text


def decode_query(query: Mapping[str, str], struct: type[T]) -> T:
    """The query parameters ``query`` (a request's ``MultiDictProxy``) as ``struct``: decimal
    digits for an integer field, text for every other (decoded strictly, so ``"null"`` or
    ``"0"`` is no date-time)."""
    lists, ints = _fields(struct)
    values: dict[str, Any] = {}
    for name in query:
        if name in values:
            continue
        if name in lists:
            values[name] = query.getall(name)  # type: ignore[attr-defined]
        else:
            values[name] = _number(query[name]) if name in ints else query[name]
    try:
        return msgspec.convert(values, struct, strict=True)
    except msgspec.ValidationError as exc:
        raise BadRequest(_detail(exc)) from None


_encode = msgspec.json.Encoder().encode


def respond(
    value: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``value`` (Structs, lists, dicts, datetimes) as an ``application/json`` response."""
    return web.Response(
        body=_encode(value),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",  # as before; JSON is UTF-8 anyway
    )
