"""Strict, typed settings: msgspec Structs whose fields carry their documentation and bounds.

Each layer declares its own sections as subclasses of :class:`Section` (frozen, keyword-only,
unknown keys refused), each field annotated ``Annotated[T, Meta(ge=..., le=...,
description=...)]``; a closed set of words is a ``Literal``. :func:`build` converts a parsed TOML
table into such a Struct with msgspec's strict conversion and fails with the file, the dotted key
and what was expected for any unknown key, wrong type or value out of bounds. Nothing is coerced
silently: an integer is not accepted where a string is expected, nor a string where a number is
(an integer is where a number is). The documentation (description, default, bounds) is read by
the config reference generator and by the test that keeps the docs from drifting.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import msgspec

from vault.errors import ConfigError

T = TypeVar("T")


class Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A table of the configuration; subclasses inherit strictness and immutability (and say
    ``frozen=True`` again for type checkers).

    Modules that declare sections do without ``from __future__ import annotations``: msgspec
    then takes the annotations as evaluated at import instead of compiling each one from its
    string at the first load, which every command pays at start."""


class FieldDoc(msgspec.Struct, frozen=True):
    """One documented key of the configuration."""

    key: str
    type: str
    default: str
    doc: str
    bounds: str


def _path(tp: type[Any], value: Any) -> Any:
    if tp is Path and isinstance(value, str):
        return Path(value)
    raise ValueError(f"expected a path string, got {value!r}")


def build(cls: type[T], data: Mapping[str, Any], *, source: str = "<config>") -> T:
    """Convert ``data`` to Struct ``cls``, strictly; raise ConfigError naming source and key."""
    try:
        return msgspec.convert(data, cls, dec_hook=_path)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_explain(str(exc), cls, data)}") from exc


_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "array": "a list",
    "object": "a table",
}


def _explain(message: str, cls: type[Any], data: Mapping[str, Any]) -> str:
    """msgspec's ``What - at `$.a.b[0]` `` as ``a.b[0]: what`` in the words of a TOML user."""
    what, _, at = message.partition(" - at `$")
    where = at.rstrip("`").lstrip(".")
    tp: Any = cls
    value: Any = data
    try:  # the type and the value found at ``where``
        for part in re.findall(r"[^.\[\]]+", where):
            tp = _bare(tp)
            if get_origin(tp) is tuple:
                tp, value = get_args(tp)[0], value[int(part)]
            else:
                tp, value = typing.get_type_hints(tp, include_extras=True)[part], value[part]
    except (KeyError, IndexError, TypeError, ValueError):  # not expected: msgspec's own words
        return f"{where}: {what}"
    if m := re.fullmatch(r"Object contains unknown field `(.*)`", what):
        key = f"{where}.{m[1]}" if where else m[1]
        known = ", ".join(sorted(_bare(tp).__struct_fields__))
        return f"unknown key {key!r} (known keys here: {known})"
    if m := re.fullmatch(r"Object missing required field `(.*)`", what):
        return f"{where}.{m[1]}: required key is missing"
    if m := re.fullmatch(r"Expected `\w+` (>=|<=) (.*)", what):
        side = "below the minimum" if m[1] == ">=" else "above the maximum"
        return f"{where}: {value} is {side} {m[2]}"
    if m := re.fullmatch(r"Expected `(\w+)`, got `\w+`", what):
        return f"{where}: expected {_WORDS.get(m[1], m[1])}, got {value!r}"
    if what.startswith("Invalid enum value"):
        return f"{where}: {value!r} is not one of {', '.join(get_args(_bare(tp)))}"
    return f"{where}: {what[:1].lower()}{what[1:]}"


def _bare(tp: Any) -> Any:
    """``tp`` without its Annotated metadata."""
    return get_args(tp)[0] if get_origin(tp) is Annotated else tp


def _meta(tp: Any) -> msgspec.Meta:
    metas = [m for m in getattr(tp, "__metadata__", ()) if isinstance(m, msgspec.Meta)]
    return metas[0] if metas else msgspec.Meta()


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return type(get_args(tp)[0]).__name__
    if get_origin(tp) is tuple:
        return f"list of {_type_name(get_args(tp)[0])}"
    return str(tp.__name__)


def _section_in(tp: Any) -> type[Section] | None:
    inner = get_args(tp)[0] if get_origin(tp) is tuple else tp
    return inner if isinstance(inner, type) and issubclass(inner, Section) else None


def describe(cls: type[Any], prefix: str = "") -> list[FieldDoc]:
    """Every key of ``cls`` (recursively), with type, default, documentation and bounds."""
    out: list[FieldDoc] = []
    for f in msgspec.structs.fields(cls):
        key, tp, meta = f"{prefix}{f.name}", _bare(f.type), _meta(f.type)
        inner = _section_in(tp)
        if inner is tp:
            out.extend(describe(inner, f"{key}."))
            continue
        if inner is not None:
            out.append(FieldDoc(key, f"list of tables ([[{key}]])", "", meta.description or "", ""))
            out.extend(describe(inner, f"{key}[]."))
            continue
        default = "(required)" if f.required else to_toml_value(f.default)
        bounds = []
        if meta.ge is not None:
            bounds.append(f">= {meta.ge}")
        if meta.le is not None:
            bounds.append(f"<= {meta.le}")
        if get_origin(tp) is Literal:
            bounds.append("one of " + ", ".join(get_args(tp)))
        out.append(
            FieldDoc(key, _type_name(tp), default, meta.description or "", "; ".join(bounds))
        )
    return out


def to_toml_value(value: Any) -> str:
    """Render a scalar or list of scalars as TOML (enough for the generated default config)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        s = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{s}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r} as TOML")
