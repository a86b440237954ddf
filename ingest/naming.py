"""What a dock's file name says about a recording: device, officer, start time, sequence.

Stations name offloaded files ``<device>_<officer>_<YYYYMMDDhhmmss>[_<seq>].<ext>``; a station
type that names them differently gets its own regular expression with the named groups
``device``, ``officer``, ``start`` (14 digits) and ``seq`` (digits), each optional.

Guarantees (the module is pure: no I/O, no clock):

* ``NameParser.parse`` never raises, whatever the name: ``bytes`` are decoded as UTF-8 with
  ``surrogateescape`` (so undecodable names survive), and a name that does not match, or whose
  captured fields do not parse, gives ``matched=False`` with every field ``None``.
* Every ``str`` in a ``NameInfo`` is valid, printable Unicode (no lone surrogates, no control
  characters), so it can be logged, committed to and JSON-encoded safely.
* ``recorded_at`` is always timezone-aware: station clocks are local time, read in the parser's
  zone (default ``Asia/Shanghai``); a sidecar's explicit offset is kept.
* ``merge_sidecar`` lets the sidecar (``<name>.json``) override the name; it raises
  ``BadRequest`` naming the key if a known key has a malformed value, and ignores unknown keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import PurePosixPath
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vault.errors import BadRequest, ConfigError

__all__ = ["DEFAULT_PATTERN", "DEFAULT_TZ", "NameInfo", "NameParser", "parse_name"]

DEFAULT_PATTERN = (
    r"(?P<device>[A-Za-z0-9-]{1,64})_(?P<officer>[A-Za-z0-9-]{1,64})"
    r"_(?P<start>[0-9]{14})(?:_(?P<seq>[0-9]{1,9}))?\.[A-Za-z0-9]{1,16}"
)
DEFAULT_TZ = "Asia/Shanghai"

_MAX_NAME = 1024  # longer "names" are not station names: unmatched without running the regex
_MAX_FIELD = 256
_EXT = re.compile(r"[A-Za-z0-9]{1,16}")
_DIGITS14 = re.compile(r"[0-9]{14}")
_SEQ = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True, slots=True)
class NameInfo:
    """What is known about a recording from its name (and sidecar). ``None`` means unknown.

    ``ext`` is the lower-case ASCII extension without the dot ('' if none or not plain ASCII);
    ``matched`` says whether the name followed the station convention."""

    device_id: str | None
    officer_id: str | None
    recorded_at: datetime | None
    seq: int | None
    ext: str
    matched: bool


def _clean(value: str | None) -> str | None:
    """``value`` if it is safe text (non-empty, printable, no surrogates, bounded), else None."""
    if not value or len(value) > _MAX_FIELD or not value.isprintable():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _ext_of(name: str) -> str:
    ext = PurePosixPath(name).suffix[1:]
    return ext.lower() if _EXT.fullmatch(ext) else ""


def _zone(tz: str | tzinfo) -> tzinfo:
    if not isinstance(tz, str):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {tz!r}") from exc


class NameParser:
    """A compiled station naming convention plus the zone its clocks run in.

    ``ConfigError`` at construction for an invalid pattern or unknown zone; never afterwards."""

    def __init__(self, pattern: str = DEFAULT_PATTERN, *, tz: str | tzinfo = DEFAULT_TZ) -> None:
        try:
            self._re = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"invalid file name pattern: {exc}") from exc
        self._groups = set(self._re.groupindex)
        self.tz = _zone(tz)

    def _group(self, m: re.Match[str], name: str) -> str | None:
        return m.group(name) if name in self._groups else None

    def parse(self, name: str | bytes) -> NameInfo:
        """Parse the last path component of ``name``. Never raises (see module docstring)."""
        text = name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else str(name)
        text = text.rpartition("/")[2]
        ext = _ext_of(text)
        unmatched = NameInfo(None, None, None, None, ext, matched=False)
        m = self._re.fullmatch(text) if len(text) <= _MAX_NAME else None
        if m is None:
            return unmatched
        device, officer = self._group(m, "device"), self._group(m, "officer")
        start, seq = self._group(m, "start"), self._group(m, "seq")
        if (device is not None and _clean(device) is None) or (
            officer is not None and _clean(officer) is None
        ):
            return unmatched
        recorded_at = None
        if start is not None:
            if not _DIGITS14.fullmatch(start):
                return unmatched
            recorded_at = self._local_time(start)
            if recorded_at is None:
                return unmatched
        if seq is not None and not _SEQ.fullmatch(seq):
            return unmatched
        return NameInfo(
            device, officer, recorded_at, None if seq is None else int(seq), ext, matched=True
        )

    def _local_time(self, digits: str) -> datetime | None:
        fields = (digits[0:4], digits[4:6], digits[6:8], digits[8:10], digits[10:12], digits[12:14])
        y, mo, d, h, mi, s = (int(f) for f in fields)
        try:
            return datetime(y, mo, d, h, mi, s, tzinfo=self.tz)
        except ValueError:
            return None

    def merge_sidecar(self, info: NameInfo, sidecar: Mapping[str, object]) -> NameInfo:
        """Return ``info`` with the sidecar's ``device_id``, ``officer_id``, ``recorded_at``
        (ISO 8601 string; without an offset it is read in the parser's zone) and ``seq``
        (non-negative int) overriding the name's. A key that is absent or ``null`` overrides
        nothing; a malformed value raises ``BadRequest`` naming the key. ``ext`` and
        ``matched`` stay those of the name."""
        seq = sidecar.get("seq")
        if seq is not None and (type(seq) is not int or seq < 0):
            raise BadRequest("sidecar: seq must be a non-negative integer")
        when = sidecar.get("recorded_at")
        return NameInfo(
            device_id=_sidecar_text(sidecar, "device_id", info.device_id),
            officer_id=_sidecar_text(sidecar, "officer_id", info.officer_id),
            recorded_at=info.recorded_at if when is None else self._sidecar_time(when),
            seq=info.seq if seq is None else seq,
            ext=info.ext,
            matched=info.matched,
        )

    def _sidecar_time(self, value: object) -> datetime:
        if not isinstance(value, str) or _clean(value) is None or len(value) > 64:
            raise BadRequest("sidecar: recorded_at must be an ISO 8601 date-time string")
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise BadRequest("sidecar: recorded_at must be an ISO 8601 date-time string") from None
        return when if when.tzinfo is not None else when.replace(tzinfo=self.tz)


def _sidecar_text(sidecar: Mapping[str, object], key: str, default: str | None) -> str | None:
    value = sidecar.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or _clean(value) is None:
        raise BadRequest(f"sidecar: {key} must be a non-empty printable string")
    return value


_DEFAULT = NameParser()


def parse_name(name: str | bytes) -> NameInfo:
    """``NameParser().parse(name)`` with the default convention and zone."""
    return _DEFAULT.parse(name)
