"""Replay: the state the ledger implies, derived from its entries alone (no I/O).

:func:`replay` (or :class:`Replayer`, fed one entry at a time) turns a sequence of
``(index, entry bytes, openings)`` into a :class:`DerivedState`: for every table that decides
access or points at bytes, the rows the ledger says exist now, each column with the value the
ledger gave it and the index of the entry that set it.

Guarantees:

- Pure and deterministic: the same entries and openings give the same state; nothing is read
  but the arguments, nothing is written.
- An opening is used only after it is checked against its entry's commitment
  (:func:`verify.canonical.check_opening`); a missing or non-matching opening is a finding
  (table ``ledger_openings``) and its value is treated as unknown, never guessed. An entry
  whose bytes are not canonical JSON is a finding (table ``ledger_entries``) and is skipped.
- The kind inside the entry's bytes decides how it is replayed (the ``kind`` column is not
  trusted). A value the ledger does not record is :data:`NOT_RECORDED`, a value the ledger
  allows to be either set or not (an evidence item disposed of whose blob removal may still
  be pending) is :data:`EITHER`; the comparison checks neither and counts them.
- An entry of a kind that changes state but does not name the row it changes (a field or an
  opening it needs is absent) is a finding (table ``ledger_entries``), never a guess.
- Each entry kind is one small handler in :data:`HANDLERS` (``principal`` entries dispatch
  further on ``op``): supporting a new kind or op is adding one function.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, NamedTuple

from vault.errors import BadRequest
from vault.policy.labels import Label, Level
from verify.canonical import COMMITMENT_DOMAIN, SALT_SIZE, check_opening, parse_canonical
from verify.errors import VerificationError

Key = tuple[str, ...]


class _Unchecked:
    """A value the comparison does not check (see the module docstring)."""

    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return f"<{self.why}>"


NOT_RECORDED: Final = _Unchecked("not recorded in the ledger")
EITHER: Final = _Unchecked("either value is legitimate")
ABSENT: Final = _Unchecked("no row")  # a finding's value where there is no row

# The tables replayed and their primary key columns (legal_holds by the index that placed it).
TABLE_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "evidence": ("id",),
    "renditions": ("id",),
    "principals": ("id",),
    "tokens": ("id",),
    "principal_cases": ("principal_id", "case_id"),
    "cases": ("id",),
    "case_evidence_history": ("ledger_idx",),
    "dispositions": ("evidence_id",),
    "legal_holds": ("placed_idx",),
}


class OpeningRow(NamedTuple):
    """One ``ledger_openings`` row as stored: field, salt, canonical JSON of the value."""

    field: str
    salt: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference: ``table`` row ``key`` (primary key columns and values), ``column``
    (``*``: the whole row), the table's value, the ledger's value, the entry that set it."""

    table: str
    key: tuple[tuple[str, str], ...]
    column: str
    table_value: object
    ledger_value: object
    index: int | None
    problem: str  # "different", "missing", "extra", "opening", "entry"

    def line(self) -> str:
        key = ",".join(f"{k}={v}" for k, v in self.key)
        at = "" if self.index is None else f" (entry {self.index})"
        return (
            f"{self.problem}: {self.table} [{key}] {self.column}: table {_show(self.table_value)}"
            f", ledger {_show(self.ledger_value)}{at}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "table": self.table,
            "key": dict(self.key),
            "column": self.column,
            "table_value": _plain(self.table_value),
            "ledger_value": _plain(self.ledger_value),
            "index": self.index,
        }


def _plain(value: object) -> object:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return str(value)


def _show(value: object) -> str:
    return "no row" if value is ABSENT else json.dumps(_plain(value), ensure_ascii=False)


class Row:
    """A derived row: column values, the entry that created it, and per column the entry that
    last changed it (only where that is a later entry, to keep large states small)."""

    __slots__ = ("changed", "idx", "values")

    def __init__(self, idx: int, values: dict[str, object]) -> None:
        self.idx = idx
        self.values = values
        self.changed: dict[str, int] | None = None

    def set(self, column: str, value: object, idx: int) -> None:
        self.values[column] = value
        if idx != self.idx:
            if self.changed is None:
                self.changed = {}
            self.changed[column] = idx

    def index_of(self, column: str) -> int:
        return self.idx if self.changed is None else self.changed.get(column, self.idx)


@dataclass
class DerivedState:
    """What the ledger implies now: ``tables[name][key]`` rows, the current case links, and
    the problems met on the way (bad entries, bad or missing openings)."""

    tables: dict[str, dict[Key, Row]] = field(default_factory=lambda: {t: {} for t in TABLE_KEYS})
    links: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    renditions_of: dict[str, list[str]] = field(default_factory=dict)
    problems: list[Finding] = field(default_factory=list)
    entries: int = 0

    def row(self, table: str, key: Key) -> Row | None:
        return self.tables[table].get(key)


class Entry(NamedTuple):
    """A parsed entry and its verified openings (field -> value)."""

    idx: int
    body: dict[str, Any]
    secrets: dict[str, object]

    def secret(self, name: str) -> object:
        """The opened value of commitment ``name``; NOT_RECORDED when the entry has none or its
        opening did not verify (already a finding)."""
        return self.secrets.get(name, NOT_RECORDED)


class _Skip(Exception):
    """The entry lacks what identifies the row it changes (already reported if it matters)."""


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _Skip
    return value


def _opens_as_stored(name: str, o: OpeningRow, expected: object) -> bool:
    """Fast path: the commitment of the stored bytes as they are (the service stores the
    canonical JSON of the value). A match proves the bytes are the committed canonical JSON; on
    no match the full check decides (a non-canonical spelling of the same value still opens)."""
    if len(o.salt) != SALT_SIZE or not name or "\x00" in name:
        return False
    h = hashlib.sha256(COMMITMENT_DOMAIN)
    h.update(name.encode("utf-8"))
    h.update(b"\x00")
    h.update(o.salt)
    h.update(o.value)
    return h.hexdigest() == expected


def open_entry(
    idx: int, data: bytes, openings: Iterable[OpeningRow]
) -> tuple[Entry | None, list[Finding]]:
    """Parse ``data`` and check every commitment against its opening: the entry (None when the
    bytes are not canonical JSON) and the findings. Bad openings are left out of the secrets."""
    try:
        body = parse_canonical(bytes(data))
    except VerificationError as exc:
        where = (("idx", str(idx)),)
        return None, [Finding("ledger_entries", where, "data", None, str(exc), idx, "entry")]
    problems: list[Finding] = []
    secrets: dict[str, object] = {}
    commits = body.get("commitments", {})
    have = {o.field: o for o in openings}
    for name, expected in commits.items() if isinstance(commits, dict) else ():
        key = (("idx", str(idx)), ("field", name))
        o = have.get(name)
        if o is None:
            problems.append(Finding("ledger_openings", key, "*", ABSENT, expected, idx, "missing"))
            continue
        try:
            value = json.loads(bytes(o.value))
            if not _opens_as_stored(name, o, expected):
                check_opening(name, value, bytes(o.salt), str(expected))
        except (ValueError, VerificationError) as exc:
            problems.append(
                Finding("ledger_openings", key, "value", str(exc), expected, idx, "opening")
            )
            continue
        secrets[name] = value
    return Entry(idx, body, secrets), problems


# -- values ---------------------------------------------------------------------------------


def label_columns(label: Label) -> dict[str, object]:
    """A label as the two columns that store it (caveats as a sorted tuple)."""
    return {
        "label_level": int(label.level),
        "label_caveats": tuple(sorted(c.value for c in label.caveats)),
    }


def _label(value: object) -> Label | None:
    """A label from an entry: the short form (``acquired``) or the JSON object; None if absent
    or unreadable."""
    try:
        if isinstance(value, str):
            return Label.parse(value)
        if isinstance(value, dict):
            return Label.from_json(value)
    except BadRequest:
        return None
    return None


def _stored_label(row: Row) -> Label | None:
    level, caveats = row.values.get("label_level"), row.values.get("label_caveats")
    if not isinstance(level, int) or not isinstance(caveats, tuple):
        return None
    return Label.from_json({"level": Level(level).slug, "caveats": list(caveats)})


def timestamp(value: object) -> object:
    """An ISO 8601 date-time as an aware datetime (other values unchanged)."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _sorted(value: object) -> object:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(sorted(value))
    return value


# -- handlers: one per entry kind (and per principal op) -------------------------------------

Handler = Callable[[DerivedState, Entry], None]


def _acquired(state: DerivedState, e: Entry) -> None:
    b = e.body
    eid = _text(b.get("evidence_id"))
    values: dict[str, object] = {
        "sha256": b.get("sha256", NOT_RECORDED),
        "size": b.get("size", NOT_RECORDED),
        "ledger_idx": e.idx,
        "dock_id": e.secret("dock_id"),
        "device_id": e.secret("device_id"),
        "officer_id": e.secret("officer_id"),
        "recorded_at": timestamp(e.secret("recorded_at")),
        "category": "ordinary",
        "disposed_at": None,
    }
    label = _label(b.get("label"))
    values.update(
        label_columns(label)
        if label
        else {"label_level": NOT_RECORDED, "label_caveats": NOT_RECORDED}
    )
    state.tables["evidence"][(eid,)] = Row(e.idx, values)


def _derived(state: DerivedState, e: Entry) -> None:
    b = e.body
    rid, eid = _text(b.get("rendition_id")), _text(b.get("evidence_id"))
    values: dict[str, object] = {
        "evidence_id": eid,
        "kind": b.get("rendition", NOT_RECORDED),
        "sha256": b.get("output_sha256", NOT_RECORDED),
        "size": b.get("output_size", NOT_RECORDED),
        "media_type": b.get("media_type", NOT_RECORDED),
        "ledger_idx": e.idx,
    }
    # The rendition takes its source's label (recorded in the entry since it was added there;
    # before that, the source's label as the ledger has it at this point).
    label = _label(b.get("label"))
    source = state.row("evidence", (eid,))
    if label is None and source is not None:
        label = _stored_label(source)
    values.update(
        label_columns(label)
        if label
        else {"label_level": NOT_RECORDED, "label_caveats": NOT_RECORDED}
    )
    state.tables["renditions"][(rid,)] = Row(e.idx, values)
    state.renditions_of.setdefault(eid, []).append(rid)


def _set_label(state: DerivedState, table: str, target: str, label: Label, idx: int) -> None:
    row = state.row(table, (target,))
    if row is None:
        return
    for column, value in label_columns(label).items():
        row.set(column, value, idx)


def _labelled(state: DerivedState, e: Entry) -> None:
    """``labelled``: the target's label is the entry's; a label set on evidence raises its
    renditions to dominate it (as ``vault.cases.links.set_label`` does, under the same entry). An
    entry marked ``effective`` records the label a link or a case's label enforces on an item,
    not a stored one: it changes no row."""
    b = e.body
    label = _label(b.get("label"))
    kind = b.get("target_kind")
    if label is None or b.get("effective") is True:
        return  # an effective label (a case's joined in) leaves the stored one as it was
    if kind == "case":
        case = _text(e.secret("case"))
        _set_label(state, "cases", case, label, e.idx)
        if (row := state.row("cases", (case,))) is not None:
            row.set("ledger_idx", e.idx, e.idx)  # a relabel is the case's latest change
    elif kind == "rendition":
        _set_label(state, "renditions", _text(b.get("rendition")), label, e.idx)
    elif kind == "evidence":
        eid = _text(b.get("evidence"))
        _set_label(state, "evidence", eid, label, e.idx)
        for rid in state.renditions_of.get(eid, ()):
            row = state.row("renditions", (rid,))
            own = None if row is None else _stored_label(row)
            if own is not None and label.join(own) != own:
                _set_label(state, "renditions", rid, label.join(own), e.idx)


def _link(state: DerivedState, e: Entry) -> None:
    case, eid, action = _text(e.secret("case")), _text(e.body.get("evidence_id")), e.body["kind"]
    state.tables["case_evidence_history"][(str(e.idx),)] = Row(
        e.idx,
        {"case_id": case, "evidence_id": eid, "action": action, "principal_id": e.secret("by")},
    )
    state.links[(case, eid)] = (action, e.idx)


def _disposed(state: DerivedState, e: Entry) -> None:
    eid = _text(e.body.get("evidence_id"))
    sha = e.body.get("sha256", NOT_RECORDED)
    state.tables["dispositions"][(eid,)] = Row(e.idx, {"ledger_idx": e.idx, "sha256": sha})
    row = state.row("evidence", (eid,))
    if row is not None:  # set once the blobs are removed, which may still be pending
        row.set("disposed_at", EITHER, e.idx)


def _retention(state: DerivedState, e: Entry) -> None:
    b, op = e.body, e.body.get("op")
    if op == "category":
        row = state.row("evidence", (_text(b.get("evidence_id")),))
        if row is not None:
            row.set("category", b.get("category"), e.idx)
    elif op == "hold-placed":
        case = e.secret("case")
        state.tables["legal_holds"][(str(e.idx),)] = Row(
            e.idx,
            {
                "evidence_id": b.get("evidence_id"),
                "case_id": None if case is NOT_RECORDED and "evidence_id" in b else case,
                "reason": e.secret("reason"),
                "placed_by": e.secret("by"),
                "released_idx": None,
            },
        )
    elif op == "hold-released":
        row = state.row("legal_holds", (str(b.get("placed")),))
        if row is not None:
            row.set("released_idx", e.idx, e.idx)


def _case(state: DerivedState, e: Entry) -> None:
    case, op = _text(e.secret("case")), e.body.get("op")
    if op == "created":
        label = _label(e.body.get("label"))
        values: dict[str, object] = {"title": e.secret("title"), "ledger_idx": e.idx}
        values.update(
            label_columns(label)
            if label
            else {"label_level": NOT_RECORDED, "label_caveats": NOT_RECORDED}
        )
        state.tables["cases"][(case,)] = Row(e.idx, values)
    elif op == "retitled" and (row := state.row("cases", (case,))) is not None:
        row.set("title", e.secret("title"), e.idx)
        row.set("ledger_idx", e.idx, e.idx)


def _principal_added(state: DerivedState, e: Entry) -> None:
    pid = _text(e.secret("principal"))
    clearance = _label(e.body.get("clearance"))
    values: dict[str, object] = {
        "roles": _sorted(e.body.get("roles", NOT_RECORDED)),
        "clearance": NOT_RECORDED if clearance is None else int(clearance.level),
        "caveats": NOT_RECORDED if clearance is None else label_columns(clearance)["label_caveats"],
        "active": True,
        "ledger_idx": e.idx,
        "officer_id": e.secret("officer_id"),
        "dock_ids": _sorted(e.secret("dock_ids")),
    }
    state.tables["principals"][(pid,)] = Row(e.idx, values)


def _principal_active(state: DerivedState, e: Entry) -> None:
    row = state.row("principals", (_text(e.secret("principal")),))
    if row is not None:
        row.set("active", e.body["op"] == "enabled", e.idx)
        row.set("ledger_idx", e.idx, e.idx)


def _assigned(state: DerivedState, e: Entry) -> None:
    key = (_text(e.secret("principal")), _text(e.secret("case")))
    # Assigning again moves the row to the newest entry (its tag binds that index).
    state.tables["principal_cases"][key] = Row(e.idx, {"ledger_idx": e.idx})


def _unassigned(state: DerivedState, e: Entry) -> None:
    state.tables["principal_cases"].pop(
        (_text(e.secret("principal")), _text(e.secret("case"))), None
    )


def _token_created(state: DerivedState, e: Entry) -> None:
    state.tables["tokens"][(_text(e.body.get("token")),)] = Row(
        e.idx,
        {
            "principal_id": e.secret("principal"),
            "expires_at": timestamp(e.body.get("expires", NOT_RECORDED)),
            "revoked_at": None,
            "token_hash": e.secret("token_hash"),
        },
    )


def _token_revoked(state: DerivedState, e: Entry) -> None:
    row = state.row("tokens", (_text(e.body.get("token")),))
    if row is not None and row.values["revoked_at"] is None:  # revoking twice: a no-op
        row.set("revoked_at", "set", e.idx)


PRINCIPAL_OPS: dict[str, Handler] = {
    "added": _principal_added,
    "enabled": _principal_active,
    "disabled": _principal_active,
    "assigned": _assigned,
    "unassigned": _unassigned,
    "token-created": _token_created,
    "token-revoked": _token_revoked,
}


def _principal(state: DerivedState, e: Entry) -> None:
    handler = PRINCIPAL_OPS.get(str(e.body.get("op")))
    if handler is not None:
        handler(state, e)


HANDLERS: dict[str, Handler] = {
    "acquired": _acquired,
    "derived": _derived,
    "redacted": _derived,  # a redacted copy is a rendition recorded with more fields
    "released": _derived,  # a released copy: a rendition whose entry carries its label
    "labelled": _labelled,
    "linked": _link,
    "unlinked": _link,
    "disposed": _disposed,
    "retention": _retention,
    "case": _case,
    "principal": _principal,
}
STATE_KINDS: Final = frozenset(HANDLERS)


class Replayer:
    """Feed entries in index order; ``state`` is the state they imply so far."""

    def __init__(self) -> None:
        self.state = DerivedState()

    def feed(self, idx: int, data: bytes, openings: Sequence[OpeningRow] = ()) -> None:
        """Apply entry ``idx``. Entries of kinds that change no table are only counted."""
        self.state.entries += 1
        entry, problems = open_entry(idx, data, openings)
        self.state.problems.extend(problems)
        if entry is None:
            return
        handler = HANDLERS.get(str(entry.body.get("kind")))
        if handler is None:
            return
        try:
            handler(self.state, entry)
        except (_Skip, KeyError, TypeError, ValueError) as exc:
            if problems:
                return  # it names its row by an opening that did not verify: reported above
            why = f"a {entry.body.get('kind')} entry that does not name its row ({exc!r})"
            where = (("idx", str(idx)),)
            self.state.problems.append(
                Finding("ledger_entries", where, "data", None, why, idx, "entry")
            )


def replay(items: Iterable[tuple[int, bytes, Sequence[OpeningRow]]]) -> DerivedState:
    """The state implied by ``items`` (index, entry bytes, openings), in index order."""
    r = Replayer()
    for idx, data, openings in items:
        r.feed(idx, data, openings)
    return r.state
