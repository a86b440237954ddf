"""Access state bound to the ledger: row tags, an online mirror of the ledger, and the alarm.

The database is not trusted (DESIGN §7). The rows that decide access — ``principals``,
``tokens``, ``principal_cases``, ``cases`` and ``case_evidence_history`` — each carry a ``tag``
(``HostMac.row``) over their table, key, the values that decide access and the index of the
ledger entry that set them. Writers compute the tag in the same transaction as the entry
(``tag``); readers verify it before a row is used (``AccessState.check``).

A tag proves a row was written by the service, not that it is still current: a row put back to
an earlier genuine value (with its earlier tag) verifies. So each process keeps an
``access_replay.AccessMirror`` of the ledger — per principal, token, assignment and case, the
index of the newest entry that set it — and a row whose index is below that is refused as a
rollback, as is an assignment row the mirror says was unassigned since.

Guarantees:

- Fail closed: a row that does not verify is never used. ``check`` raises ``RowTampered`` (an
  ``IntegrityError``, HTTP 422); callers that filter (listings, assignments) leave the row out.
  Every failure is counted in ``evault_integrity_failures{source="state"}`` and announced once
  per row and process as an ``integrity.failure`` event (``alarm``); the payload names the table
  and a SHA-256 of the key, never a case id or title.
- The mirror is replayed from the ledger before the first verified read (openings checked
  against their commitments, ``access_replay.opened``), learns this process's own entries as
  soon as they are appended (``learn``: a rollback of a change made here is refused by the very
  next read), and is brought up to date from the database when ``NOTIFY evault_auth`` is heard
  (``changed``) and at least every ``REFRESH_SECONDS`` on use: a rollback of a change made by
  another process is refused within that bound (or the notification's latency, when following).
- The mirror can only restrict: it never makes a row acceptable that its tag does not prove.
  An assignment row put back after its ``unassigned`` entry names an index below that entry's,
  so the same floor refuses it; a newer genuine assignment made elsewhere is accepted at once.
- Without an installed state (``install``, done where the ledger is opened), every verified
  read fails closed (``StateUnavailable``).

Not caught here: a row deleted outright (a link-history row, a legal hold; a deleted principal,
token or assignment only denies). That is ``evault ledger fsck --state``'s full replay, which can
fold entries with ``access_replay`` as this module does.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import asyncpg

from vault.access.replay import KINDS, OPENED_FIELDS, AccessMirror, opened
from vault.db import Db
from vault.errors import IntegrityError
from vault.events import emit
from vault.keys.hostmac import HostMac, RowTampered
from vault.ledger.entry import PreparedEntry
from vault.metrics import INTEGRITY_FAILURES

__all__ = [
    "REFRESH_SECONDS",
    "TABLES",
    "AccessState",
    "StateUnavailable",
    "changed",
    "current",
    "install",
    "learn",
    "ready",
    "uninstall",
]

log = logging.getLogger("evault.access_state")

REFRESH_SECONDS = 2.0
"""The longest a process goes, while it is deciding access, without reading new entries."""


class Row(Protocol):
    """A row: an ``asyncpg.Record`` or a mapping of column names to values."""

    def __getitem__(self, key: str, /) -> Any: ...


R = TypeVar("R", bound=Row)
_Parts = tuple[tuple[object, ...], dict[str, object], Any]


def _principal(r: Row) -> _Parts:
    values = {
        "clearance": int(r["clearance"]),
        "caveats": frozenset(r["caveats"]),
        "roles": frozenset(r["roles"]),
        "officer_id": r["officer_id"],
        "dock_ids": frozenset(r["dock_ids"]),
        "active": bool(r["active"]),
    }
    return (r["id"],), values, r["ledger_idx"]


def _token(r: Row) -> _Parts:
    values = {
        "principal_id": r["principal_id"],
        "token_hash": bytes(r["token_hash"]),
        "expires_at": r["expires_at"],
        "revoked_at": r["revoked_at"],
    }
    return (r["id"],), values, r["ledger_idx"]


def _assignment(r: Row) -> _Parts:
    return (r["principal_id"], r["case_id"]), {}, r["ledger_idx"]


def _case(r: Row) -> _Parts:
    values = {
        "title": r["title"],
        "level": int(r["label_level"]),
        "caveats": frozenset(r["label_caveats"]),
    }
    return (r["id"],), values, r["ledger_idx"]


def _link(r: Row) -> _Parts:
    values = {
        "case_id": r["case_id"],
        "evidence_id": str(r["evidence_id"]),
        "action": r["action"],
        "principal_id": r["principal_id"],
    }
    return (r["ledger_idx"],), values, r["ledger_idx"]


_COLUMNS = {
    "principals": (
        "id", "clearance", "caveats", "roles", "officer_id", "dock_ids", "active", "ledger_idx",
    ),
    "tokens": ("id", "principal_id", "token_hash", "expires_at", "revoked_at", "ledger_idx"),
    "principal_cases": ("principal_id", "case_id", "ledger_idx"),
    "cases": ("id", "title", "label_level", "label_caveats", "ledger_idx"),
    "case_evidence_history": ("ledger_idx", "case_id", "evidence_id", "action", "principal_id"),
}  # fmt: skip
"""Per table, every column ``TABLES`` reads: a row equal in all of them has the same tag."""
_KEYS = {
    "principals": ("id",),
    "tokens": ("id",),
    "principal_cases": ("principal_id", "case_id"),
    "cases": ("id",),
    "case_evidence_history": ("ledger_idx",),
}

TABLES: dict[str, Callable[[Row], _Parts]] = {
    "principals": _principal,
    "tokens": _token,
    "principal_cases": _assignment,
    "cases": _case,
    "case_evidence_history": _link,
}
"""Per table: the key, the bound values and the entry index of a row (the columns a read must
select to verify it: those named here plus ``tag``)."""


def tag(mac: HostMac, table: str, row: Row) -> bytes:
    """The tag a writer stores with ``row`` of ``table`` (a mapping of its bound columns)."""
    key, values, idx = TABLES[table](row)
    return mac.row(table, key, values, int(idx))


class StateUnavailable(IntegrityError):
    """No access state is loaded in this process: nothing that decides access can be verified."""

    slug = "state-unavailable"
    title = "Access state cannot be verified"


class AccessState:
    """One process's verifier for one database (see the module docstring)."""

    def __init__(self, mac: HostMac, pool: Db) -> None:
        self.mac = mac
        self.pool = pool  # writable: the replay and the alarm's events
        self.mirror = AccessMirror()
        self._replayed = False
        self._dirty = True
        self._refreshed_at = self._started_at = 0.0
        self._lock = asyncio.Lock()
        self._announced: set[tuple[str, tuple[str, ...]]] = set()
        self.failures = 0

    # -- the mirror ----------------------------------------------------------------------

    async def refresh(self, db: Db | None = None, *, since: float | None = None) -> None:
        """Fold every access-state entry the mirror has not seen (the first call: all).
        ``since``: skip if a refresh that started after this monotonic time has completed."""
        async with self._lock:
            if since is not None and not self._dirty and self._started_at >= since:
                return
            self._dirty = False  # a notification heard from now on asks for another refresh
            self._started_at = time.monotonic()
            reader = self._reader(db)
            # Entries below the committed size first: all of them are visible to the next
            # statement, so the mirror never skips an index (nor reads an uncommitted one).
            size = await reader.fetchval("SELECT size FROM ledger_state")
            rows = await reader.fetch(
                "SELECT e.idx, e.data, array_agg(o.field) FILTER (WHERE o.field IS NOT NULL)"
                " AS fields, array_agg(o.salt) FILTER (WHERE o.field IS NOT NULL) AS salts,"
                " array_agg(o.value) FILTER (WHERE o.field IS NOT NULL) AS vals"
                " FROM ledger_entries e LEFT JOIN ledger_openings o"
                " ON o.idx = e.idx AND o.field = ANY($3::text[])"
                " WHERE e.kind = ANY($2::text[]) AND e.idx > $1 AND e.idx < $4"
                # labels of evidence and renditions are many and not folded: not fetched
                " AND (e.kind <> 'labelled' OR position('\"target_kind\":\"case\"'::bytea"
                " IN e.data) > 0)"
                " GROUP BY e.idx ORDER BY e.idx",
                self.mirror.seen,
                list(KINDS),
                list(OPENED_FIELDS),
                size or 0,
            )
            for r in rows:
                idx = r["idx"]
                openings = zip(r["fields"] or (), r["salts"] or (), r["vals"] or (), strict=True)
                try:
                    body, values = opened(bytes(r["data"]), openings)
                except ValueError as exc:  # the ledger itself is fsck's; count it, skip it
                    log.error("access state: entry %d does not open: %s", idx, exc)
                    INTEGRITY_FAILURES.labels("state").inc()
                else:
                    self.mirror.fold(idx, body, values)
            self.mirror.seen = max(self.mirror.seen, (size or 0) - 1)
            self._replayed = True
            self._refreshed_at = self._started_at

    async def ready(self, db: Db | None = None) -> AccessState:
        """Bring the mirror up to date if it was never replayed, was told of a change, or is
        older than ``REFRESH_SECONDS``; return self. ``db``: what to read the entries with, the
        caller's pool or connection (not one inside a transaction: the state's own pool then)."""
        if (
            not self._replayed
            or self._dirty
            or time.monotonic() - self._refreshed_at > REFRESH_SECONDS
        ):
            await self.refresh(db, since=time.monotonic())
        return self

    def _reader(self, db: Db | None) -> Db:
        """``db`` unless it is a connection inside a transaction (which may hold entries that
        are not committed, e.g. in a ledger effect): then the state's own pool."""
        in_transaction = getattr(db, "is_in_transaction", None)
        if db is None or (in_transaction is not None and in_transaction()):
            return self.pool
        return db

    def changed(self) -> None:
        """Another process changed access state (``NOTIFY evault_auth``): refresh before use."""
        self._dirty = True

    def learn(self, entries: Sequence[PreparedEntry], indexes: Sequence[int]) -> None:
        """Fold entries this process has just appended (at ``indexes``)."""
        for entry, idx in zip(entries, indexes, strict=True):
            if entry.kind not in KINDS:
                continue
            openings = [(o.field, o.salt, o.value) for o in entry.openings]
            body, values = opened(entry.data, [o for o in openings if o[0] in OPENED_FIELDS])
            self.mirror.fold(idx, body, values)

    # -- rows ----------------------------------------------------------------------------

    def check(self, table: str, row: Row, *, remember: bool = True) -> None:
        """Return if ``row`` of ``table`` verifies and is current; raise ``RowTampered``.
        A tag verified before for exactly the same column values is not computed again
        (``remember``: see ``HostMac.check_row_memo``)."""
        raw = (table, *[row[c] for c in _COLUMNS[table]])
        self.mac.check_row_memo(
            row["tag"], raw, lambda: (table, *TABLES[table](row)), remember=remember
        )
        if table == "case_evidence_history":
            return  # link rows are never rewritten: nothing to roll back to
        skey = tuple(str(row[c]) for c in _KEYS[table])
        floor = self.mirror.floor(table, skey)
        if row["ledger_idx"] < floor:
            raise RowTampered(table, skey, f"rolled back: ledger entry {floor} set it since")

    async def alarm(self, exc: RowTampered) -> None:
        """Count the failure; announce it once per row (``integrity.failure`` event)."""
        INTEGRITY_FAILURES.labels("state").inc()
        self.failures += 1
        log.error("access state: %s", exc)
        key = (exc.table, exc.key)
        if key in self._announced:
            return
        self._announced.add(key)
        digest = hashlib.sha256("/".join(exc.key).encode()).hexdigest()
        try:
            await emit(
                self.pool,
                "integrity.failure",
                {"source": "state", "table": exc.table, "key_sha256": digest},
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as err:
            self._announced.discard(key)  # announce again next time
            log.error("access state: the integrity.failure event was not written: %s", err)

    async def verified(self, table: str, rows: Sequence[R]) -> list[R]:
        """The rows of ``rows`` that verify (``check``); the others raise the alarm."""
        out = []
        for r in rows:
            try:
                self.check(table, r)
            except RowTampered as exc:
                await self.alarm(exc)
                continue
            out.append(r)
        return out


_CURRENT: list[AccessState] = []


def install(state: AccessState) -> AccessState:
    """Make ``state`` the one this process verifies with (replacing any other)."""
    _CURRENT[:] = [state]
    return state


def uninstall(state: AccessState) -> None:
    if _CURRENT and _CURRENT[0] is state:
        _CURRENT.clear()


def current() -> AccessState:
    """The installed state; ``StateUnavailable`` when there is none (fail closed)."""
    if not _CURRENT:
        raise StateUnavailable("no access state is loaded in this process")
    return _CURRENT[0]


async def ready(db: Db | None = None) -> AccessState:
    """The installed state, up to date (``AccessState.ready``)."""
    return await current().ready(db)


def changed() -> None:
    """Tell the installed state (if any) that access state changed elsewhere."""
    if _CURRENT:
        _CURRENT[0].changed()


def learn(entries: Sequence[PreparedEntry], indexes: Sequence[int]) -> None:
    """Tell the installed state (if any) about entries this process appended."""
    if _CURRENT:
        _CURRENT[0].learn(entries, indexes)
