"""Principals: people, docks and case-system modules, their clearances, roles and assignments.

Guarantees:

- Every change (added, disabled, enabled, assigned, unassigned) is one ``principal`` ledger
  entry, and the row change is made in the same transaction (``Ledger.append`` effect); the
  principal id, the case id and the acting principal appear in the entry only as commitments.
- Only a principal allowed to ``administer`` the system may add, disable or enable principals,
  and it may not grant a clearance or caveat it does not hold itself. Assigning a case needs
  ``administer`` or ``link`` on that case. Refusals are recorded as ``denied`` entries.
- Assigning a case to a principal whose clearance (level and caveats) does not dominate the
  case's label is refused (``ClearanceGap``, naming both and what to do) unless forced: such
  need-to-know could never be used, every item answering "Not found".
- ``load`` returns the ``access.Principal`` (with its current case assignments) or raises
  ``NotFound``; ``seed`` creates configured principals that do not exist yet and never changes
  existing ones.
- Every change that can alter what a token authenticates as (disable, enable, assign,
  unassign; token revocation in ``vault.access.tokens``) sends ``NOTIFY evault_auth`` from its own
  transaction and, once the transaction is over, invalidates this process's watchers
  (``on_auth_change``), so no cache answers with the old state.
- Principal and assignment rows carry row tags (``vault.access.state``) naming the entry that
  set them. ``load`` (and token authentication) verify them: a principal row that does not
  verify raises ``RowTampered``; an assignment that does not, or that an ``unassigned`` entry
  has superseded (put back after its withdrawal), is left out. The alarm is raised either way.
  A tampered principal can still be disabled (it stays untagged, hence refused).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from vault.access import decisions, targets
from vault.access import state as access_state
from vault.db import Conn, Db
from vault.errors import BadRequest, Conflict, Forbidden, NotFound
from vault.keys.hostmac import RowTampered
from vault.ledger import LedgerWriter, make_entry
from vault.policy.decide import Action, Principal, Role, Target, decide, not_found_detail
from vault.policy.labels import PUBLIC_LABEL, Caveat, Label, Level

__all__ = [
    "AUTH_CHANNEL",
    "SYSTEM",
    "ClearanceGap",
    "PrincipalRecord",
    "PrincipalSpec",
    "SeedLike",
    "add",
    "assign",
    "auth_changed_locally",
    "clearance_gap",
    "disable",
    "enable",
    "list_principals",
    "load",
    "notify_auth_change",
    "on_auth_change",
    "require_admin",
    "seed",
    "unassign",
]

SYSTEM = Target("system", PUBLIC_LABEL)
"""The target of administration."""
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}")


@dataclass(frozen=True)
class PrincipalSpec:
    """What ``add`` creates."""

    id: str
    roles: frozenset[Role]
    clearance: Level
    caveats: frozenset[Caveat] = frozenset()
    officer_id: str | None = None
    dock_ids: frozenset[str] = frozenset()
    display_name: str = ""


@dataclass(frozen=True)
class PrincipalRecord:
    principal: Principal
    display_name: str
    created_at: datetime
    updated_at: datetime


class SeedLike(Protocol):
    """A ``[[principals]]`` entry of the configuration (``api.config.PrincipalSeed``)."""

    @property
    def id(self) -> str: ...
    @property
    def roles(self) -> Sequence[str]: ...
    @property
    def clearance(self) -> str: ...
    @property
    def caveats(self) -> Sequence[str]: ...


def check_id(principal_id: str) -> str:
    if not _ID.fullmatch(principal_id):
        raise BadRequest(
            "principal id: 1-128 letters, digits or ._@:- characters, starting with a letter "
            "or digit"
        )
    return principal_id


def parse_roles(names: Sequence[str]) -> frozenset[Role]:
    roles = set()
    for name in names:
        try:
            roles.add(Role(name))
        except ValueError:
            expected = ", ".join(r.value for r in Role)
            raise BadRequest(f"unknown role {name[:40]!r}: expected one of {expected}") from None
    return frozenset(roles)


AUTH_CHANNEL = "evault_auth"
"""NOTIFY channel: a token, a principal or an assignment changed
(``vault.access.tokens.TokenCache``)."""


class _Invalidatable(Protocol):
    def invalidate(self) -> None: ...


_AUTH_WATCHERS: weakref.WeakSet[_Invalidatable] = weakref.WeakSet()


def on_auth_change(watcher: _Invalidatable) -> None:
    """Have ``watcher.invalidate()`` called when this process changes authentication state."""
    _AUTH_WATCHERS.add(watcher)


async def notify_auth_change(conn: Conn) -> None:
    """Inside the transaction that changes a token, principal or assignment: tell every
    process (PostgreSQL delivers the notification at commit)."""
    await conn.execute(f"NOTIFY {AUTH_CHANNEL}")


def auth_changed_locally() -> None:
    """After such a transaction (committed or failed): clear this process's caches now."""
    for watcher in list(_AUTH_WATCHERS):
        watcher.invalidate()


async def require_admin(ledger: LedgerWriter, actor: Principal, what: str) -> None:
    """Raise Forbidden (recorded as ``denied``) unless the actor may administer the system."""
    decision = decide(actor, Action.ADMINISTER, SYSTEM)
    if not decision.allowed:
        await decisions.record(
            ledger, actor, Action.ADMINISTER, "system", what, False, decision.recorded
        )
        raise Forbidden(f"{what} requires the admin role")


def principal_from_row(row: asyncpg.Record, cases: Sequence[str]) -> Principal:
    """A Principal from a ``principals`` row (``p.*``) and its case ids."""
    return Principal(
        id=row["id"],
        clearance=Level(row["clearance"]),
        caveats=frozenset(Caveat(c) for c in row["caveats"]),
        roles=frozenset(Role(r) for r in row["roles"]),
        cases=frozenset(cases),
        officer_id=row["officer_id"],
        dock_ids=frozenset(row["dock_ids"]),
        active=row["active"],
    )


async def _verified_row(db: Db, principal_id: str, *, lock: bool = False) -> asyncpg.Record:
    """The principal's row, verified (``access_state``); NotFound if there is none,
    ``RowTampered`` (alarm raised) if it does not verify."""
    state = await access_state.ready(db)
    row = await db.fetchrow(
        "SELECT * FROM principals WHERE id = $1" + (" FOR UPDATE" if lock else ""),  # noqa: S608
        principal_id,
    )
    if row is None:
        raise NotFound(not_found_detail("principal"))
    try:
        state.check("principals", row)
    except RowTampered as exc:
        await state.alarm(exc)
        raise
    return row


async def verified_cases(principal_id: str, rows: Sequence[Any]) -> list[str]:
    """The case ids of a principal's ``principal_cases`` rows (mappings with ``case_id``,
    ``ledger_idx`` and ``tag``) that verify and that the ledger has not withdrawn since; the
    others are left out (fail closed) and raise the alarm."""
    state = access_state.current()  # callers brought it up to date (``ready``) just before
    out = []
    for r in rows:
        row = {"principal_id": principal_id, **dict(r)}
        try:
            state.check("principal_cases", row)  # the floor: an unassignment since refuses it
        except RowTampered as exc:
            await state.alarm(exc)
            continue
        out.append(row["case_id"])
    return out


async def load(db: Db, principal_id: str) -> Principal:
    """The principal with its current case assignments; NotFound if there is none. Its row
    and assignments are verified (``access_state``): a row that does not raises
    ``RowTampered``, an assignment that does not is left out."""
    row = await _verified_row(db, principal_id)
    cases = await db.fetch(
        "SELECT case_id, ledger_idx, tag FROM principal_cases WHERE principal_id = $1",
        principal_id,
    )
    return principal_from_row(row, await verified_cases(principal_id, cases))


async def list_principals(db: Db, ledger: LedgerWriter, actor: Principal) -> list[PrincipalRecord]:
    """Every principal, by id; for those who may administer the system."""
    await require_admin(ledger, actor, "listing principals")
    state = await access_state.ready(db)
    rows = await state.verified(
        "principals", await db.fetch("SELECT * FROM principals ORDER BY id")
    )
    assigned = await db.fetch(
        "SELECT principal_id, case_id, ledger_idx, tag FROM principal_cases ORDER BY case_id"
    )
    grouped: dict[str, list[asyncpg.Record]] = {}
    for a in assigned:
        grouped.setdefault(a["principal_id"], []).append(a)
    cases = {pid: await verified_cases(pid, group) for pid, group in grouped.items()}
    return [
        PrincipalRecord(
            principal_from_row(r, cases.get(r["id"], [])),
            r["display_name"],
            r["created_at"],
            r["updated_at"],
        )
        for r in rows
    ]


async def _insert(ledger: LedgerWriter, spec: PrincipalSpec, by: str | None) -> int:
    check_id(spec.id)
    label = Label(spec.clearance, spec.caveats)
    fields: dict[str, Any] = {
        "op": "added",
        "roles": sorted(r.value for r in spec.roles),
        "clearance": label.to_json(),
    }
    # Officer and docks decide what the principal sees: committed, so fsck --state checks them.
    secrets: dict[str, Any] = {
        "principal": spec.id,
        "officer_id": spec.officer_id,
        "dock_ids": sorted(spec.dock_ids),
    }
    if by is None:
        fields["source"] = "config"
    else:
        secrets["by"] = by

    state = access_state.current()
    row: dict[str, Any] = {
        "id": spec.id,
        "clearance": int(spec.clearance),
        "caveats": [c.value for c in label.sorted_caveats],
        "roles": sorted(r.value for r in spec.roles),
        "officer_id": spec.officer_id,
        "dock_ids": sorted(spec.dock_ids),
        "active": True,
    }

    async def effect(conn: Conn, indexes: list[int]) -> None:
        row["ledger_idx"] = indexes[0]
        await conn.execute(
            "INSERT INTO principals (id, display_name, clearance, caveats, roles, officer_id,"
            " dock_ids, ledger_idx, tag) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            spec.id,
            spec.display_name,
            row["clearance"],
            row["caveats"],
            row["roles"],
            spec.officer_id,
            row["dock_ids"],
            indexes[0],
            access_state.tag(state.mac, "principals", row),
        )

    entries = [make_entry("principal", fields, secrets)]
    try:
        indexes = await ledger.append(entries, effect=effect)
    except asyncpg.UniqueViolationError:
        raise Conflict(f"principal {spec.id} already exists") from None
    state.learn(entries, indexes)
    return indexes[0]


async def add(db: Db, ledger: LedgerWriter, actor: Principal, spec: PrincipalSpec) -> int:
    """Create a principal; return the ledger index of its ``principal`` entry."""
    await require_admin(ledger, actor, "adding principals")
    if spec.clearance > actor.clearance or not spec.caveats <= actor.caveats:
        raise Forbidden("you may not grant a clearance or caveat you do not hold")
    return await _insert(ledger, spec, actor.id)


async def seed(db: Db, ledger: LedgerWriter, seeds: Sequence[SeedLike]) -> list[str]:
    """Create the configured principals that do not exist yet; return the ids created."""
    created = []
    for s in seeds:
        if await db.fetchval("SELECT 1 FROM principals WHERE id = $1", s.id):
            continue
        spec = PrincipalSpec(
            id=s.id,
            roles=parse_roles(s.roles),
            clearance=Level.parse(s.clearance),
            caveats=frozenset(Caveat.parse(c) for c in s.caveats),
        )
        try:
            await _insert(ledger, spec, None)
        except Conflict:
            continue  # seeded concurrently by another process: same outcome
        created.append(s.id)
    return created


async def _set_active(
    db: Db, ledger: LedgerWriter, actor: Principal, principal_id: str, active: bool
) -> int:
    op = "enabled" if active else "disabled"
    await require_admin(ledger, actor, f"{op[:-1]}ing principals")
    if not await db.fetchval("SELECT 1 FROM principals WHERE id = $1", principal_id):
        raise NotFound(not_found_detail("principal"))
    if principal_id == actor.id and not active:
        raise Conflict("a principal may not disable itself")

    state = access_state.current()

    async def effect(conn: Conn, indexes: list[int]) -> None:
        # The row as it stands must verify: its new tag vouches for all of its values. A row
        # that does not may still be disabled: it stays refused (no tag), the entry says why.
        try:
            row = dict(await _verified_row(conn, principal_id, lock=True))
        except RowTampered:
            if active:
                raise
            await conn.execute(
                "UPDATE principals SET active = false, updated_at = now(), ledger_idx = $2,"
                " tag = NULL WHERE id = $1",
                principal_id,
                indexes[0],
            )
            await notify_auth_change(conn)
            return
        row.update(active=active, ledger_idx=indexes[0])
        await conn.execute(
            "UPDATE principals SET active = $2, updated_at = now(), ledger_idx = $3, tag = $4"
            " WHERE id = $1",
            principal_id,
            active,
            indexes[0],
            access_state.tag(state.mac, "principals", row),
        )
        await notify_auth_change(conn)

    entries = [make_entry("principal", {"op": op}, {"principal": principal_id, "by": actor.id})]
    try:
        indexes = await ledger.append(entries, effect=effect)
        state.learn(entries, indexes)
    finally:
        auth_changed_locally()
    return indexes[0]


async def disable(db: Db, ledger: LedgerWriter, actor: Principal, principal_id: str) -> int:
    """Deactivate: every decision for it is then denied and its tokens are refused."""
    return await _set_active(db, ledger, actor, principal_id, False)


async def enable(db: Db, ledger: LedgerWriter, actor: Principal, principal_id: str) -> int:
    return await _set_active(db, ledger, actor, principal_id, True)


async def _may_assign(ledger: LedgerWriter, db: Db, actor: Principal, case_id: str) -> None:
    if decide(actor, Action.ADMINISTER, SYSTEM).allowed:
        return
    await targets.authorize(db, ledger, actor, Action.LINK, "case", case_id)


class ClearanceGap(Conflict):
    """Assigning a case to a principal not cleared for its label: the assignment would give
    need-to-know it can never use (every item of the case would answer "Not found")."""

    slug = "clearance-gap"


async def clearance_gap(db: Db, actor: Principal, principal_id: str, case_id: str) -> str | None:
    """Why assigning ``case_id`` to ``principal_id`` would be of no use, or None: the
    principal's clearance (level and caveats) does not dominate the case's label. The label is
    named only to an actor who may list the case. None for a case not registered (yet)."""
    case = await targets.case_row(db, case_id)
    if case is None:
        return None
    label = Label(Level(case["label_level"]), frozenset(Caveat(c) for c in case["label_caveats"]))
    who = await load(db, principal_id)
    cleared = Label(who.clearance, who.caveats)
    if cleared.dominates(label):
        return None
    role = sorted(who.roles)[0].value if who.roles else "principal"
    needed = (
        f"case {case_id} is {label}"
        if decide(actor, Action.LIST, Target("case", label, frozenset({case_id}))).allowed
        else f"case {case_id}'s label is above it"
    )
    return (
        f"{role} {principal_id} is cleared for {cleared}; {needed}: add a principal cleared "
        f"for it (`evault principal add ID --role {role} --clearance {label.level.slug}"
        + "".join(f" --caveat {c.value}" for c in label.sorted_caveats)
        + "`) or pass --force"
    )


async def _assignment(
    db: Db,
    ledger: LedgerWriter,
    actor: Principal,
    principal_id: str,
    case_id: str,
    on: bool,
    *,
    force: bool = False,
) -> int:
    await _may_assign(ledger, db, actor, case_id)
    if not await db.fetchval("SELECT 1 FROM principals WHERE id = $1", principal_id):
        raise NotFound(not_found_detail("principal"))
    if not 0 < len(case_id) <= 128:
        raise BadRequest("case id: 1 to 128 characters")
    if on and not force:
        gap = await clearance_gap(db, actor, principal_id, case_id)
        if gap is not None:
            raise ClearanceGap(gap)

    state = access_state.current()

    async def effect(conn: Conn, indexes: list[int]) -> None:
        if on:  # assigning again re-dates the row: it then names the newest entry
            row = {"principal_id": principal_id, "case_id": case_id, "ledger_idx": indexes[0]}
            await conn.execute(
                "INSERT INTO principal_cases (principal_id, case_id, ledger_idx, tag)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (principal_id, case_id) DO UPDATE"
                " SET ledger_idx = EXCLUDED.ledger_idx, tag = EXCLUDED.tag",
                principal_id,
                case_id,
                indexes[0],
                access_state.tag(state.mac, "principal_cases", row),
            )
        else:
            await conn.execute(
                "DELETE FROM principal_cases WHERE principal_id = $1 AND case_id = $2",
                principal_id,
                case_id,
            )
        await decisions.add_refs(conn, [(indexes[0], "case", case_id)])
        await notify_auth_change(conn)

    entries = [
        make_entry(
            "principal",
            {"op": "assigned" if on else "unassigned"},
            {"principal": principal_id, "case": case_id, "by": actor.id},
        )
    ]
    try:
        indexes = await ledger.append(entries, effect=effect)
        state.learn(entries, indexes)
    finally:
        auth_changed_locally()
    return indexes[0]


async def assign(
    db: Db,
    ledger: LedgerWriter,
    actor: Principal,
    principal_id: str,
    case_id: str,
    *,
    force: bool = False,
) -> int:
    """Give the principal need-to-know for the case. ``ClearanceGap`` (409) if its clearance
    does not dominate the case's label (``clearance_gap``), unless ``force``."""
    return await _assignment(db, ledger, actor, principal_id, case_id, True, force=force)


async def unassign(
    db: Db, ledger: LedgerWriter, actor: Principal, principal_id: str, case_id: str
) -> int:
    return await _assignment(db, ledger, actor, principal_id, case_id, False)
