"""Classification labels: a level and a set of caveats (DESIGN §5).

Guarantees:

- ``Level`` is totally ordered: public 公开 < internal 内部 < confidential 秘密 < secret 机密 <
  top_secret 绝密. Only the slugs parse; anything else raises ``BadRequest``.
- ``Label`` values form a join-semilattice: ``a.join(b)`` is the least restrictive label that
  dominates both (max level, union of caveats); it is commutative, associative and idempotent,
  and ``a.dominates(b)`` holds exactly when ``a.join(b) == a``.
- ``str(label)`` / ``Label.parse`` and ``to_json`` / ``from_json`` round-trip exactly, and
  their output is canonical (caveats sorted), so equal labels encode to equal text.
- ``needs_encryption`` is true for confidential and above, and for any caveat.
- One syntax everywhere: ``Label.from_wire(value, field)`` takes the short form
  ``"secret+personal_privacy"`` or the object ``{"level", "caveats"}`` (API bodies, sidecars,
  command-line options); a bad value raises ``BadRequest`` whose detail starts with ``field``.

Pure: no I/O, no state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from vault.errors import BadRequest

__all__ = [
    "INTERNAL_LABEL",
    "PUBLIC_LABEL",
    "Caveat",
    "Label",
    "Level",
]

_MAX_ECHO = 40  # how much of a bad input an error message repeats back


def _echo(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_ECHO else text[: _MAX_ECHO - 3] + "..."


class Level(IntEnum):
    """Classification level; a higher value is more restricted."""

    PUBLIC = 0
    INTERNAL = 1
    CONFIDENTIAL = 2
    SECRET = 3
    TOP_SECRET = 4

    @property
    def slug(self) -> str:
        """The wire and storage name, e.g. ``"top_secret"``."""
        return self.name.lower()

    @property
    def zh(self) -> str:
        """The Chinese name, e.g. ``"绝密"``."""
        return _LEVEL_ZH[self]

    @classmethod
    def parse(cls, text: str) -> Level:
        """Return the level whose slug is exactly ``text``; raise ``BadRequest`` otherwise."""
        for level in cls:
            if level.slug == text:
                return level
        expected = ", ".join(level.slug for level in cls)
        raise BadRequest(f"unknown level {_echo(text)}: expected one of {expected}")


_LEVEL_ZH: Mapping[Level, str] = {
    Level.PUBLIC: "公开",
    Level.INTERNAL: "内部",
    Level.CONFIDENTIAL: "秘密",
    Level.SECRET: "机密",
    Level.TOP_SECRET: "绝密",
}


class Caveat(StrEnum):
    """A handling caveat; a principal must hold every caveat of an object to read it."""

    COMMERCIAL_SECRET = "commercial_secret"  # noqa: S105 - a caveat name, not a password
    PERSONAL_PRIVACY = "personal_privacy"

    @property
    def zh(self) -> str:
        """The Chinese name, e.g. ``"个人隐私"``."""
        return _CAVEAT_ZH[self]

    @classmethod
    def parse(cls, text: str) -> Caveat:
        """Return the caveat whose value is exactly ``text``; raise ``BadRequest`` otherwise."""
        for caveat in cls:
            if caveat.value == text:
                return caveat
        expected = ", ".join(caveat.value for caveat in cls)
        raise BadRequest(f"unknown caveat {_echo(text)}: expected one of {expected}")


_CAVEAT_ZH: Mapping[Caveat, str] = {
    Caveat.COMMERCIAL_SECRET: "商业秘密",
    Caveat.PERSONAL_PRIVACY: "个人隐私",
}


@dataclass(frozen=True)
class Label:
    """A level plus caveats. Immutable and hashable; construction checks the types."""

    level: Level
    caveats: frozenset[Caveat] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.level, Level):
            raise TypeError(f"Label.level must be a Level, not {type(self.level).__name__}")
        if not isinstance(self.caveats, frozenset) or not all(
            isinstance(c, Caveat) for c in self.caveats
        ):
            raise TypeError("Label.caveats must be a frozenset of Caveat")

    def join(self, other: Label) -> Label:
        """The least restrictive label at least as restrictive as both (max level, union)."""
        if other.caveats <= self.caveats and other.level <= self.level:
            return self  # the usual case: a label joined with one it dominates
        if self.caveats <= other.caveats and self.level <= other.level:
            return other
        return Label(max(self.level, other.level), self.caveats | other.caveats)

    def dominates(self, other: Label) -> bool:
        """True when ``self`` is at least as restrictive as ``other`` in level and caveats."""
        return self.level >= other.level and other.caveats <= self.caveats

    @property
    def needs_encryption(self) -> bool:
        """True when content under this label must be stored encrypted at rest."""
        return self.level >= Level.CONFIDENTIAL or bool(self.caveats)

    @property
    def sorted_caveats(self) -> list[Caveat]:
        """The caveats in canonical (alphabetical) order."""
        return sorted(self.caveats, key=lambda c: c.value)

    def to_json(self) -> dict[str, object]:
        """``{"level": slug, "caveats": [sorted slugs]}``; canonical for equal labels."""
        return {"level": self.level.slug, "caveats": [c.value for c in self.sorted_caveats]}

    @classmethod
    def from_json(cls, data: object) -> Label:
        """Inverse of ``to_json``. Exactly the keys ``level`` and ``caveats`` (a list of
        distinct caveat slugs, any order); anything else raises ``BadRequest``."""
        if not isinstance(data, Mapping) or set(data) != {"level", "caveats"}:
            raise BadRequest('label must be an object with exactly "level" and "caveats"')
        level = data["level"]
        caveats = data["caveats"]
        if not isinstance(level, str):
            raise BadRequest("label level must be a string")
        if not isinstance(caveats, list) or not all(isinstance(c, str) for c in caveats):
            raise BadRequest("label caveats must be a list of strings")
        return cls(Level.parse(level), _caveat_set(caveats))

    @classmethod
    def parse(cls, text: str) -> Label:
        """Parse the short form ``level[+caveat...]``, e.g. ``"secret+personal_privacy"``.
        Caveats may come in any order but not twice; anything else raises ``BadRequest``."""
        level, *caveats = text.split("+")
        return cls(Level.parse(level), _caveat_set(caveats))

    @classmethod
    def from_wire(cls, value: object, field: str = "label") -> Label:
        """A label as a caller may give it: the short form ``level[+caveat...]`` (a string) or
        the ``to_json`` object. Anything else, or a bad level or caveat, raises ``BadRequest``
        naming ``field`` (e.g. ``"label: unknown caveat 'x': expected one of ..."``)."""
        try:
            if isinstance(value, str):
                return cls.parse(value)
            if isinstance(value, Mapping):
                return cls.from_json(value)
        except BadRequest as exc:
            raise BadRequest(f"{field}: {exc.detail}") from None
        raise BadRequest(
            f"{field}: a label is a string such as 'secret+personal_privacy' (level, then "
            'caveats joined by +) or an object {"level": ..., "caveats": [...]}, '
            f"not {_echo(value)}"
        )

    def __str__(self) -> str:
        return "+".join([self.level.slug, *(c.value for c in self.sorted_caveats)])

    @property
    def zh(self) -> str:
        """Chinese rendering for people, e.g. ``"机密（个人隐私）"``."""
        if not self.caveats:
            return self.level.zh
        return f"{self.level.zh}（{'、'.join(c.zh for c in self.sorted_caveats)}）"


def _caveat_set(texts: Iterable[str]) -> frozenset[Caveat]:
    seen: set[Caveat] = set()
    for text in texts:
        caveat = Caveat.parse(text)
        if caveat in seen:
            raise BadRequest(f"caveat {caveat.value} given twice")
        seen.add(caveat)
    return frozenset(seen)


PUBLIC_LABEL = Label(Level.PUBLIC)
INTERNAL_LABEL = Label(Level.INTERNAL)
