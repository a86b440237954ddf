"""The one access decision (DESIGN §5, §7). Everything else calls ``decide``; default deny.

``decide(principal, action, target)`` allows an action only when ALL of these hold:

1. the principal is active;
2. the action applies to the target's kind (``ACTION_KINDS``);
3. clearance ≥ the target's level, and the target's caveats ⊆ the principal's caveats — for
   every action and every role: no role, admin included, is cleared by its role alone;
4. one of the principal's roles grants the action (``ROLE_GRANTS``), and that same role's
   scope for it is met:

   - ``ANY``: case-independent; no need-to-know required;
   - ``NEED_TO_KNOW``: assigned to one of the target's cases, or (evidence and renditions only)
     the officer who recorded it;
   - ``OWN_RECORDING``: (evidence and renditions only) the officer who recorded it;
   - ``OWN_DOCK``: the target is a dock listed in the principal's ``dock_ids``;
   - ``RELEASED``: the target is a released redacted copy (a rendition of kind ``released``,
     its label the one a legal reviewer decided) and the principal is assigned to one of its
     cases: never an original, never a copy not released.

ROLE_GRANTS, the single source of truth (SQL visibility filters must agree with it):

============== ===================================================================
role           action: scope
============== ===================================================================
dock           upload: OWN_DOCK
officer        list, read_metadata, stream: NEED_TO_KNOW; download: OWN_RECORDING
reviewer       list, read_metadata, stream, verify: NEED_TO_KNOW
legal_reviewer list, read_metadata, stream, download, export, verify, label: NEED_TO_KNOW
case_system    list, read_metadata, stream, download, link: ANY
auditor        list, read_metadata, verify: ANY
admin          list, read_metadata, link, label, administer: ANY
publicity      list, read_metadata, stream, download: RELEASED
============== ===================================================================

Choices: ``case_system`` may not ``export``: a package names the person who exported it and
carries originals plus openings, so export stays with an accountable legal reviewer rather than
one machine credential with case-independent reach. ``admin`` sees metadata everywhere within
its clearance but never content (no stream/download/export). ``verify`` of a file hash is a
per-evidence decision: what a verifier learns about each match is still filtered by
``read_metadata`` on that evidence.

No-leak guarantee for ``Decision.reason``: when the principal could not list the target
(``visible`` is false: above clearance, missing caveat, outside need-to-know, or nonexistent,
which the caller reports with ``NOT_FOUND``), the reason is exactly ``NOT_FOUND_REASON``, byte
for byte. Only denials on targets the principal can list name what is missing (a role, a
recording officer, an applicable kind). An inactive principal gets one fixed reason that does not
depend on the target.

What to do about a denial: ``Decision.hint`` (only on those same listable-target denials, and
built from nothing but the principal and the action) says how to get access — an admin asking
for footage is told to create a reviewer, assign the case and issue a token; others whom to ask
and for what. The hint goes into the error the caller sees (``raise_if_denied``), never into the
ledger's ``denied`` entry.

What the ledger records: ``Decision.recorded`` — the reason itself, except for a target hidden
behind ``NOT_FOUND``, where it is the real one (``clearance internal below label secret``,
``caveat personal_privacy not held``, ``not assigned to any of its cases``, ``no role grants
list``: ``hidden_reason``). It names the target's label, which anyone who may read the entry
(its trail is filtered by what the reader may list) is cleared for; the caller still sees only
``NOT_FOUND_REASON``.

Pure: no I/O, no state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Literal, NoReturn

from vault.errors import Forbidden, NotFound
from vault.policy.labels import Caveat, Label, Level

__all__ = [
    "ACTION_KINDS",
    "ADMIN_FOOTAGE_HINT",
    "INACTIVE_REASON",
    "NOT_FOUND",
    "NOT_FOUND_REASON",
    "ROLE_GRANTS",
    "Action",
    "Decision",
    "Principal",
    "Role",
    "Scope",
    "Target",
    "TargetKind",
    "absent",
    "decide",
    "effective_label",
    "granted_actions",
    "hidden_reason",
    "not_found_detail",
    "rendition_label",
    "visible",
]


class Role(StrEnum):
    DOCK = "dock"
    OFFICER = "officer"
    REVIEWER = "reviewer"
    LEGAL_REVIEWER = "legal_reviewer"
    CASE_SYSTEM = "case_system"
    AUDITOR = "auditor"
    ADMIN = "admin"
    PUBLICITY = "publicity"


class Action(StrEnum):
    LIST = "list"
    READ_METADATA = "read_metadata"
    STREAM = "stream"
    DOWNLOAD = "download"
    EXPORT = "export"
    LINK = "link"
    LABEL = "label"
    VERIFY = "verify"
    ADMINISTER = "administer"
    UPLOAD = "upload"


class Scope(Enum):
    """How far a role's grant of an action reaches (see the module docstring)."""

    ANY = "any"
    NEED_TO_KNOW = "need_to_know"
    OWN_RECORDING = "own_recording"
    OWN_DOCK = "own_dock"
    RELEASED = "released"


TargetKind = Literal["evidence", "rendition", "case", "ledger", "system", "dock"]

_ALL_KINDS: frozenset[TargetKind] = frozenset(
    {"evidence", "rendition", "case", "ledger", "system", "dock"}
)
_RECORDINGS: frozenset[TargetKind] = frozenset({"evidence", "rendition"})

ACTION_KINDS: Mapping[Action, frozenset[TargetKind]] = {
    Action.LIST: _ALL_KINDS,
    Action.READ_METADATA: _ALL_KINDS,
    Action.STREAM: _RECORDINGS,
    Action.DOWNLOAD: _RECORDINGS,
    Action.EXPORT: frozenset({"evidence", "case"}),
    Action.LINK: frozenset({"evidence", "case"}),
    Action.LABEL: frozenset({"evidence", "rendition", "case"}),
    Action.VERIFY: frozenset({"evidence", "rendition", "case", "ledger"}),
    Action.ADMINISTER: frozenset({"system", "dock", "ledger"}),
    Action.UPLOAD: frozenset({"dock"}),
}
"""Which target kinds each action applies to; any other pairing is denied."""

_A = Action
_NTK = Scope.NEED_TO_KNOW
ROLE_GRANTS: Mapping[Role, Mapping[Action, Scope]] = {
    Role.DOCK: {_A.UPLOAD: Scope.OWN_DOCK},
    Role.OFFICER: {
        _A.LIST: _NTK,
        _A.READ_METADATA: _NTK,
        _A.STREAM: _NTK,
        _A.DOWNLOAD: Scope.OWN_RECORDING,
    },
    Role.REVIEWER: {_A.LIST: _NTK, _A.READ_METADATA: _NTK, _A.STREAM: _NTK, _A.VERIFY: _NTK},
    Role.LEGAL_REVIEWER: {
        _A.LIST: _NTK,
        _A.READ_METADATA: _NTK,
        _A.STREAM: _NTK,
        _A.DOWNLOAD: _NTK,
        _A.EXPORT: _NTK,
        _A.VERIFY: _NTK,
        _A.LABEL: _NTK,
    },
    Role.CASE_SYSTEM: {
        _A.LIST: Scope.ANY,
        _A.READ_METADATA: Scope.ANY,
        _A.STREAM: Scope.ANY,
        _A.DOWNLOAD: Scope.ANY,
        _A.LINK: Scope.ANY,
    },
    Role.AUDITOR: {_A.LIST: Scope.ANY, _A.READ_METADATA: Scope.ANY, _A.VERIFY: Scope.ANY},
    Role.ADMIN: {
        _A.LIST: Scope.ANY,
        _A.READ_METADATA: Scope.ANY,
        _A.LINK: Scope.ANY,
        _A.LABEL: Scope.ANY,
        _A.ADMINISTER: Scope.ANY,
    },
    Role.PUBLICITY: {
        _A.LIST: Scope.RELEASED,
        _A.READ_METADATA: Scope.RELEASED,
        _A.STREAM: Scope.RELEASED,
        _A.DOWNLOAD: Scope.RELEASED,
    },
}
"""Role → action → scope: the single source of truth for who may do what."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: a person, a dock, or a module of the case system."""

    id: str
    clearance: Level
    caveats: frozenset[Caveat]
    roles: frozenset[Role]
    cases: frozenset[str]
    officer_id: str | None = None
    dock_ids: frozenset[str] = frozenset()
    active: bool = True


@dataclass(frozen=True)
class Target:
    """What is asked about. ``label`` must already be the effective label (see
    ``effective_label`` and ``rendition_label``); ``officer_id`` is the recording officer;
    ``released``: a rendition of kind ``released`` (a redacted copy a legal reviewer released)."""

    kind: TargetKind
    label: Label
    cases: frozenset[str] = frozenset()
    officer_id: str | None = None
    dock_id: str | None = None
    released: bool = False


@dataclass(frozen=True)
class Decision:
    """The outcome. ``reason`` may be shown to the caller (see the no-leak guarantee)."""

    allowed: bool
    reason: str
    hint: str = field(default="", compare=False)
    """What to do about the denial, for the caller's error only (see the module docstring)."""
    why: str = field(default="", compare=False)
    """The real reason of a ``NOT_FOUND`` denial, for the ledger only (never the caller)."""

    @property
    def recorded(self) -> str:
        """The reason a ``denied`` entry records (see the module docstring)."""
        return self.why or self.reason

    def raise_if_denied(self, kind: str | None = None) -> None:
        """Raise ``NotFound`` for invisible targets (naming their ``kind`` when given, exactly as
        for a missing one: ``not_found_detail``), ``Forbidden`` (reason, then hint) for other
        denials."""
        if self.allowed:
            return
        if self.reason == NOT_FOUND_REASON:
            raise NotFound(not_found_detail(kind))
        raise Forbidden(f"{self.reason}: {self.hint}" if self.hint else self.reason)

    def __bool__(self) -> NoReturn:
        raise TypeError("use Decision.allowed, not the Decision itself, as a condition")


NOT_FOUND_REASON: str = NotFound.title
"""The one reason for anything the caller may not see, identical to a missing thing's."""
NOT_FOUND = Decision(False, NOT_FOUND_REASON)
"""The decision to report for a target that does not exist."""
_NOUNS: dict[str, str] = {
    "evidence": "evidence",
    "rendition": "rendition",
    "case": "case",
    "dock": "dock",
    "job": "job",
    "export": "export job",
    "principal": "principal",
    "token": "token",
    "hold": "legal hold",
}


def not_found_detail(kind: str | None) -> str:
    """The caller-visible detail for a ``kind`` of thing that does not exist or may not be
    seen (``Not found: no such case``): it depends on the kind asked for only, never on
    whether the thing exists, so it leaks nothing."""
    noun = _NOUNS.get(kind or "")
    return NOT_FOUND_REASON if noun is None else f"{NOT_FOUND_REASON}: no such {noun}"


def absent(kind: str | None) -> Decision:
    """``NOT_FOUND`` for a target that does not exist, its ledger reason saying so."""
    noun = _NOUNS.get(kind or "", kind or "target")
    return Decision(False, NOT_FOUND_REASON, why=f"no such {noun}")


INACTIVE_REASON = "principal is inactive"
_ALLOWED = "allowed"


def _scope_met(principal: Principal, scope: Scope, target: Target) -> bool:
    recorder = (
        target.kind in _RECORDINGS
        and target.officer_id is not None
        and principal.officer_id == target.officer_id
    )
    if scope is Scope.ANY:
        return True
    if scope is Scope.NEED_TO_KNOW:
        return recorder or not principal.cases.isdisjoint(target.cases)
    if scope is Scope.OWN_RECORDING:
        return recorder
    if scope is Scope.OWN_DOCK:
        return target.kind == "dock" and target.dock_id in principal.dock_ids
    if scope is Scope.RELEASED:
        released = target.kind == "rendition" and target.released
        return released and not principal.cases.isdisjoint(target.cases)
    return False  # pragma: no cover - default deny for a scope added without a rule


def _cleared(principal: Principal, label: Label) -> bool:
    return principal.clearance >= label.level and label.caveats <= principal.caveats


def _granted(principal: Principal, action: Action, target: Target) -> bool:
    """Cleared, applicable kind, and some held role grants ``action`` with its scope met."""
    if target.kind not in ACTION_KINDS.get(action, frozenset()):
        return False
    if not _cleared(principal, target.label):
        return False
    for role in principal.roles:
        scope = ROLE_GRANTS.get(role, {}).get(action)
        if scope is not None and _scope_met(principal, scope, target):
            return True
    return False


_FOOTAGE = frozenset({Action.STREAM, Action.DOWNLOAD, Action.EXPORT})
ADMIN_FOOTAGE_HINT = (
    "admin manages principals and does not view footage: add a reviewer "
    "(`evault principal add ID --role reviewer`, or `--role legal_reviewer` to download and "
    "export), assign the case (`evault principal assign ID CASE`), issue a token "
    "(`evault token create ID`) and act as them (`--as ID`, or the token in the console)"
)
"""The hint an admin gets for footage: separation of duties, and the way round it."""


def _why_not(principal: Principal, action: Action, target: Target) -> Decision:
    """The denial of an action on a target the principal can list: reason and hint."""
    if target.kind not in ACTION_KINDS.get(action, frozenset()):
        return Decision(False, f"{action.value} does not apply to a {target.kind}")
    released = target.kind == "rendition" and target.released
    granting = sorted(  # a role reaching released copies only is no answer for anything else
        role.value
        for role, grants in ROLE_GRANTS.items()
        if action in grants and (released or grants[action] is not Scope.RELEASED)
    )
    holding = [role for role in principal.roles if action in ROLE_GRANTS.get(role, {})]
    if not holding:
        reason = f"role {' or '.join(granting)} required for {action.value}"
        if Role.ADMIN in principal.roles and action in _FOOTAGE:
            return Decision(False, reason, ADMIN_FOOTAGE_HINT)
        return Decision(False, reason, "ask an administrator for a principal with that role")
    scopes = {ROLE_GRANTS[role][action] for role in holding}
    if scopes == {Scope.OWN_RECORDING}:
        return Decision(False, f"{action.value} is limited to the recording officer")
    if scopes == {Scope.RELEASED}:  # pragma: no cover - a listable target is a released copy
        return Decision(False, f"{action.value} is limited to released redacted copies")
    return Decision(
        False,
        f"{action.value} requires need-to-know: assignment to one of its cases",
        f"ask an administrator to assign you (`evault principal assign {principal.id} CASE`)",
    )


def decide(principal: Principal, action: Action, target: Target) -> Decision:
    """THE access decision; default deny. See the module docstring for the rules, the
    role table and the guarantee that invisible targets are reported as ``NOT_FOUND``."""
    if not principal.active:
        return Decision(False, INACTIVE_REASON)
    if _granted(principal, action, target):
        return Decision(True, _ALLOWED)
    if action is not Action.LIST and _granted(principal, Action.LIST, target):
        return _why_not(principal, action, target)
    return Decision(False, NOT_FOUND_REASON, why=hidden_reason(principal, target))


def hidden_reason(principal: Principal, target: Target) -> str:
    """Why ``target`` is hidden from the principal (``LIST`` not granted): the first gap of
    clearance, caveats, role and need-to-know. For the ledger, never for the caller."""
    if target.kind not in ACTION_KINDS[Action.LIST]:  # pragma: no cover - every kind is listable
        return f"list does not apply to a {target.kind}"
    if principal.clearance < target.label.level:
        return f"clearance {principal.clearance.slug} below label {target.label}"
    missing = sorted(c.value for c in target.label.caveats - principal.caveats)
    if missing:
        return f"caveat {'+'.join(missing)} not held (label {target.label})"
    if not any(Action.LIST in ROLE_GRANTS.get(role, {}) for role in principal.roles):
        return "no role grants list"
    listing = {
        ROLE_GRANTS[r][Action.LIST]
        for r in principal.roles
        if Action.LIST in ROLE_GRANTS.get(r, {})
    }
    if listing == {Scope.RELEASED} and not (target.kind == "rendition" and target.released):
        return "not a released redacted copy"
    if target.kind == "dock":
        return "not one of its docks"
    if target.kind in _RECORDINGS:
        return "not assigned to any of its cases, nor its recording officer"
    return "not assigned to any of its cases"


def granted_actions(principal: Principal) -> frozenset[Action]:
    """The actions the principal's roles grant at any scope (none when inactive): what is worth
    offering it. Whether one is allowed on a given target is still ``decide``'s alone."""
    if not principal.active:
        return frozenset()
    return frozenset(a for r in principal.roles for a in ROLE_GRANTS.get(r, {}))


def visible(principal: Principal, target: Target) -> bool:
    """Whether ``target`` may appear in the principal's listings, counts and searches
    (``decide(principal, LIST, target).allowed``, without building a denial's reasons)."""
    return principal.active and _granted(principal, Action.LIST, target)


def effective_label(evidence_label: Label, case_labels: Iterable[Label]) -> Label:
    """The label to enforce on evidence: the join of its own label and every linked case's
    label, so evidence is never less restricted than any case it belongs to."""
    label = evidence_label
    for case_label in case_labels:
        label = label.join(case_label)
    return label


def rendition_label(source: Label, requested: Label | None) -> Label:
    """A rendition's label: the requested label raised to dominate its source (never below the
    source); the source's label when nothing is requested."""
    return source if requested is None else source.join(requested)
