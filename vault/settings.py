"""Strict, typed settings: dataclasses whose fields carry their documentation and bounds.

Each layer declares its own section as a frozen dataclass whose fields are made with
:func:`setting`. :func:`build` turns a parsed TOML table into such a dataclass and fails with the
file, the dotted key and what was expected for any unknown key, wrong type or value out of
bounds. Nothing is coerced silently: an integer is not accepted where a string is expected, nor a
string where a number is. The documentation (``doc``, default, bounds) is read by the config
reference generator and by the test that keeps the docs from drifting.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

from vault.errors import ConfigError

T = TypeVar("T")

_MISSING: Any = dataclasses.MISSING


def setting(
    default: Any = _MISSING,
    doc: str = "",
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
    factory: Any = _MISSING,
) -> Any:
    """A dataclass field with its documentation and bounds."""
    meta = {"doc": doc, "min": minimum, "max": maximum, "choices": choices}
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class FieldDoc:
    """One documented key of the configuration."""

    key: str
    type: str
    default: str
    doc: str
    bounds: str


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    if tp is type(None):
        return "none"
    if dataclasses.is_dataclass(tp):
        return "table"
    return getattr(tp, "__name__", str(tp))


def _check_scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, str | Path):
            raise ConfigError(f"{where}: expected a path string, got {value!r}")
        return Path(value)
    raise ConfigError(f"{where}: unsupported setting type {tp!r}")


def _convert(tp: Any, value: Any, where: str, source: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where, source)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner, *_rest) = get_args(tp)
        items = [_convert(inner, v, f"{where}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        assert isinstance(tp, type)
        return build(tp, value, source=source, prefix=where)
    return _check_scalar(tp, value, where)


def build(
    cls: type[T], data: Mapping[str, Any], *, source: str = "<config>", prefix: str = ""
) -> T:
    """Build dataclass ``cls`` from ``data``, strictly; raise ConfigError naming source and key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        known = ", ".join(sorted(fields))
        raise ConfigError(f"{source}: unknown key {key!r} (known keys here: {known})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        where = f"{source}: {prefix}.{name}" if prefix else f"{source}: {name}"
        if name not in data:
            if f.default is _MISSING and f.default_factory is _MISSING:
                raise ConfigError(f"{where}: required key is missing")
            continue
        value = _convert(hints[name], data[name], where, source)
        _check_bounds(f, value, where)
        kwargs[name] = value
    obj = cls(**kwargs)
    for name, f in fields.items():
        if name not in data:
            _check_bounds(f, getattr(obj, name), f"{source}: {prefix}.{name}".rstrip("."))
    return obj


def _check_bounds(f: dataclasses.Field[Any], value: Any, where: str) -> None:
    lo, hi, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if lo is not None and value < lo:
            raise ConfigError(f"{where}: {value} is below the minimum {lo}")
        if hi is not None and value > hi:
            raise ConfigError(f"{where}: {value} is above the maximum {hi}")
    if choices is not None and value is not None and value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(choices)}")


def describe(cls: type[Any], prefix: str = "") -> list[FieldDoc]:
    """Every key of ``cls`` (recursively), with type, default, documentation and bounds."""
    hints = typing.get_type_hints(cls)
    out: list[FieldDoc] = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        inner = _dataclass_in(tp)
        if inner is not None:
            if get_origin(tp) in (list, tuple):
                out.append(FieldDoc(key, f"list of tables ([[{key}]])", "", f.metadata["doc"], ""))
                out.extend(describe(inner, f"{key}[]."))
            else:
                out.extend(describe(inner, f"{key}."))
            continue
        if f.default is not _MISSING:
            default = to_toml_value(f.default)
        elif f.default_factory is not _MISSING:
            default = to_toml_value(f.default_factory())  # type: ignore[operator]
        else:
            default = "(required)"
        bounds = []
        if f.metadata.get("min") is not None:
            bounds.append(f">= {f.metadata['min']}")
        if f.metadata.get("max") is not None:
            bounds.append(f"<= {f.metadata['max']}")
        if f.metadata.get("choices"):
            bounds.append("one of " + ", ".join(f.metadata["choices"]))
        out.append(FieldDoc(key, _type_name(tp), default, f.metadata["doc"], "; ".join(bounds)))
    return out


def _dataclass_in(tp: Any) -> type[Any] | None:
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    if get_origin(tp) in (list, tuple):
        args = get_args(tp)
        if args and dataclasses.is_dataclass(args[0]) and isinstance(args[0], type):
            return args[0]
    return None


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
