"""Bearer tokens: 256-bit random, scoped to one principal, expiring, revocable.

Guarantees:

- A token is ``"evt_"`` + URL-safe base64 of 32 bytes from the OS CSPRNG. It is returned once,
  by ``create``, and never stored, logged or put in the ledger: the database holds only its
  SHA-256, and the ledger only the token's separate public id (``tok_`` + 16 hex digits).
- ``authenticate`` raises ``Unauthenticated`` with one identical message for a malformed,
  unknown, expired or revoked token and for a token of a disabled principal. The token is found
  by its hash (an equality lookup on a uniformly random value) and the stored hash is compared
  in constant time.
- Creating and revoking tokens needs ``administer`` and is recorded as ``principal`` entries.
  The row carries a tag (``vault.access.state``) over its id, principal, hash, expiry,
  revocation time (set by the service, not the database) and the index of that entry;
  ``authenticate`` verifies it, the principal's row and its assignments, and decides liveness
  itself. A token minted in SQL, altered, or un-revoked with its earlier tag is refused exactly
  like an unknown one, and the alarm is raised.
- ``TokenCache`` (optional, per process) spares the lookup for a token seen moments ago. It only
  ever holds tokens that authenticated, keyed by their hash, and answers from an entry only while
  all of these hold: the entry is younger than its TTL (``service.token_cache_seconds``, default
  5 s, 0 for no cache: the bound for any change made outside this module and
  ``vault.access.principals``, e.g. by hand in SQL); the token's ``expires_at``
  is still in the future (expiry is exact); and the cache is *following* (``follow_changes``
  holds a ``LISTEN`` connection: while it is down, or before it is up, every lookup goes to the
  database). Every change that can make a cached answer wrong — revoking a token, disabling or
  enabling a principal, assigning or unassigning a case — sends ``NOTIFY evault_auth`` from its
  own transaction; PostgreSQL delivers it at commit, and every cache that hears it drops all its
  entries. Caches in the process that made the change are also cleared directly as soon as its
  transaction has committed, before the call returns: a token revoked through this process is
  refused by the very next request; in another process, once the notification arrives (the
  delivery latency of a local socket). A lookup that started before an invalidation never
  stores its (possibly stale) answer after it (generation check).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from vault.access import principals
from vault.access import state as access_state
from vault.db import Conn, Db
from vault.errors import BadRequest, NotFound, Unauthenticated
from vault.keys.hostmac import RowTampered
from vault.ledger import LedgerWriter, make_entry
from vault.ledger.checkpointer import LEDGER_CHANNEL
from vault.ledger.entry import rfc3339
from vault.policy.decide import Principal, not_found_detail

__all__ = [
    "MAX_TTL",
    "PREFIX",
    "IssuedToken",
    "TokenCache",
    "authenticate",
    "create",
    "follow_changes",
    "revoke",
    "token_hash",
]

log = logging.getLogger("evault.tokens")

PREFIX = "evt_"
_LENGTH = len(PREFIX) + 43  # 32 bytes of URL-safe base64 without padding
MAX_TTL = timedelta(days=3660)
MIN_TTL = timedelta(minutes=1)
_TOKEN_FIELDS = (
    "id",
    "principal_id",
    "token_hash",
    "expires_at",
    "revoked_at",
    "ledger_idx",
    "tag",
)
_ASSIGNMENT_FIELDS = ("case_id", "ledger_idx", "tag")


class TokenCache:
    """Recently authenticated tokens of this process (module docstring for the guarantees)."""

    def __init__(
        self,
        ttl: float = 5.0,
        size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._entries: dict[bytes, tuple[Principal, float, datetime]] = {}
        self.generation = 0
        self.following = False
        self.hits = self.misses = 0
        principals.on_auth_change(self)

    def get(self, digest: bytes) -> Principal | None:
        if not self.following:
            return None
        entry = self._entries.get(digest)
        if entry is not None:
            principal, fresh_until, expires = entry
            if self._clock() < fresh_until and datetime.now(UTC) < expires:
                self.hits += 1
                return principal
            self._entries.pop(digest, None)
        self.misses += 1
        return None

    def put(self, digest: bytes, principal: Principal, expires: datetime, generation: int) -> None:
        """Remember an answer found at ``generation`` unless an invalidation came since."""
        if not self.following or generation != self.generation or self.ttl <= 0:
            return
        if len(self._entries) >= self.size:
            self._entries.clear()  # crude but bounded; a full cache is refilled in one TTL
        self._entries[digest] = (principal, self._clock() + self.ttl, expires)

    def invalidate(self) -> None:
        """Forget everything; answers being looked up now are not stored."""
        self._entries.clear()
        self.generation += 1

    def set_following(self, following: bool) -> None:
        self.invalidate()
        self.following = following


class _Follower(Protocol):
    def invalidate(self) -> None: ...

    def set_following(self, following: bool) -> None: ...


async def follow_changes(
    connect: Callable[[], Awaitable[Any]],
    cache: TokenCache,
    retry: float = 1.0,
    *,
    ledger: _Follower | None = None,
) -> None:
    """Keep ``cache`` following ``NOTIFY evault_auth`` on a connection from ``connect`` (an
    asyncpg connection); reconnect when it is lost, the cache bypassed meanwhile. Runs until
    cancelled. ``ledger`` (``vault.access.sessions.PlaybackSessions``), on the same connection,
    follows every append announced (``NOTIFY evault_ledger``) as well as those changes."""
    followers: list[_Follower] = [cache] if ledger is None else [cache, ledger]
    while True:
        lost = asyncio.Event()
        conn = None
        try:
            conn = await connect()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            await conn.add_listener(principals.AUTH_CHANNEL, lambda *_a: _changed(followers))
            if ledger is not None:
                await conn.add_listener(LEDGER_CHANNEL, lambda *_a, f=ledger: f.invalidate())
            for follower in followers:
                follower.set_following(True)
            while not lost.is_set():
                try:
                    async with asyncio.timeout(retry * 5):
                        await lost.wait()
                except TimeoutError:  # probe: a silently dead peer must not go unnoticed
                    await asyncio.wait_for(conn.execute("SELECT 1"), retry * 5)
            raise ConnectionError("the connection was closed")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: bypass, then reconnect
            log.warning("token cache: change feed lost (%s); bypassing the cache", exc)
        finally:
            for follower in followers:
                follower.set_following(False)
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
        await asyncio.sleep(retry)


def _changed(followers: list[_Follower]) -> None:
    for follower in followers:
        follower.invalidate()
    access_state.changed()  # the mirror reads the new entries before its next decision


@dataclass(frozen=True)
class IssuedToken:
    """A newly created token: show ``token`` to its holder once; keep only ``id``."""

    id: str
    token: str
    principal_id: str
    expires_at: datetime

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"IssuedToken(id={self.id!r}, principal_id={self.principal_id!r}, token=<hidden>)"


def token_hash(token: str) -> bytes:
    """What the database stores for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).digest()


async def create(
    db: Db,
    ledger: LedgerWriter,
    actor: Principal,
    principal_id: str,
    ttl: timedelta,
    *,
    comment: str = "",
) -> IssuedToken:
    """Issue a token for ``principal_id`` valid for ``ttl``."""
    await principals.require_admin(ledger, actor, "issuing tokens")
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise BadRequest(f"token lifetime must be between {MIN_TTL} and {MAX_TTL.days} days")
    if len(comment) > 200:
        raise BadRequest("token comment: at most 200 characters")
    if not await db.fetchval("SELECT 1 FROM principals WHERE id = $1", principal_id):
        raise NotFound(not_found_detail("principal"))
    token = PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    token_id = "tok_" + secrets.token_hex(8)
    expires = datetime.now(UTC) + ttl
    digest = token_hash(token)
    state = access_state.current()

    async def effect(conn: Conn, indexes: list[int]) -> None:
        row = {
            "id": token_id,
            "principal_id": principal_id,
            "token_hash": digest,
            "expires_at": expires,
            "revoked_at": None,
            "ledger_idx": indexes[0],
        }
        await conn.execute(
            "INSERT INTO tokens (id, principal_id, token_hash, comment, expires_at, ledger_idx,"
            " tag) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            token_id,
            principal_id,
            digest,
            comment,
            expires,
            indexes[0],
            access_state.tag(state.mac, "tokens", row),
        )

    entries = [
        make_entry(
            "principal",
            {"op": "token-created", "token": token_id, "expires": rfc3339(expires)},
            # The stored hash is committed so fsck --state finds a token row swapped for another.
            {"principal": principal_id, "by": actor.id, "token_hash": digest.hex()},
        )
    ]
    state.learn(entries, await ledger.append(entries, effect=effect))
    return IssuedToken(token_id, token, principal_id, expires)


async def revoke(db: Db, ledger: LedgerWriter, actor: Principal, token_id: str) -> int:
    """Revoke a token by its public id; revoking twice is a no-op that is still recorded."""
    await principals.require_admin(ledger, actor, "revoking tokens")
    owner = await db.fetchval("SELECT principal_id FROM tokens WHERE id = $1", token_id)
    if owner is None:
        raise NotFound(not_found_detail("token"))

    state = access_state.current()

    async def effect(conn: Conn, indexes: list[int]) -> None:
        # Revoking names the newest entry even when already revoked (the first time is kept).
        # The stored row need not verify: whatever it says, it ends revoked under a new tag,
        # with the owner the ledger entry names.
        row = dict(
            await conn.fetchrow("SELECT * FROM tokens WHERE id = $1 FOR UPDATE", token_id) or {}
        )
        row.update(
            principal_id=owner,
            revoked_at=row.get("revoked_at") or datetime.now(UTC),
            ledger_idx=indexes[0],
        )
        await conn.execute(
            "UPDATE tokens SET revoked_at = $2, ledger_idx = $3, tag = $4 WHERE id = $1",
            token_id,
            row["revoked_at"],
            indexes[0],
            access_state.tag(state.mac, "tokens", row),
        )
        await principals.notify_auth_change(conn)

    entries = [
        make_entry(
            "principal",
            {"op": "token-revoked", "token": token_id},
            {"principal": owner, "by": actor.id},
        )
    ]
    try:
        indexes = await ledger.append(entries, effect=effect)
        state.learn(entries, indexes)
    finally:  # committed or not (an error may follow the commit): never keep a stale answer
        principals.auth_changed_locally()
    return indexes[0]


async def authenticate(db: Db, token: str, cache: TokenCache | None = None) -> Principal:
    """The principal a live token belongs to; ``Unauthenticated`` (one message) otherwise.
    With ``cache``, a token that authenticated moments ago may be answered from it."""
    if not isinstance(token, str) or len(token) != _LENGTH or not token.startswith(PREFIX):
        raise Unauthenticated()
    digest = token_hash(token)
    if cache is not None:
        hit = cache.get(digest)
        if hit is not None:
            return hit
        generation = cache.generation
    state = await access_state.ready()  # the mirror reads with its own pool, rarely
    # One round trip: the token, its principal and the principal's case assignments, each
    # with what verifies it (access_state); liveness is decided here, not by the database.
    row = await db.fetchrow(
        "SELECT ROW(t.id, t.principal_id, t.token_hash, t.expires_at, t.revoked_at,"
        " t.ledger_idx, t.tag) AS token, p.*,"
        " ARRAY(SELECT ROW(pc.case_id, pc.ledger_idx, pc.tag) FROM principal_cases pc"
        " WHERE pc.principal_id = p.id) AS assigned_cases"
        " FROM tokens t JOIN principals p ON p.id = t.principal_id WHERE t.token_hash = $1",
        digest,
    )
    if row is None:
        raise Unauthenticated()
    tok = dict(zip(_TOKEN_FIELDS, row["token"], strict=True))
    if not hmac.compare_digest(bytes(tok["token_hash"]), digest):
        raise Unauthenticated()
    try:  # a minted, altered or rolled-back token, or a forged principal: refused, alarm
        state.check("tokens", tok)
        state.check("principals", row)
    except RowTampered as exc:
        await state.alarm(exc)
        raise Unauthenticated() from None
    if tok["revoked_at"] is not None or not row["active"] or tok["expires_at"] <= datetime.now(UTC):
        raise Unauthenticated()
    assigned = [dict(zip(_ASSIGNMENT_FIELDS, a, strict=True)) for a in row["assigned_cases"]]
    principal = principals.principal_from_row(
        row, await principals.verified_cases(row["id"], assigned)
    )
    if cache is not None:
        cache.put(digest, principal, tok["expires_at"], generation)
    return principal
