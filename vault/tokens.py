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
- ``TokenCache`` (optional, per process) spares the lookup for a token seen moments ago. It only
  ever holds tokens that authenticated, keyed by their hash, and answers from an entry only while
  all of these hold: the entry is younger than its TTL (``service.token_cache_seconds``, default
  5 s, 0 for no cache: the bound for any change made outside this module and
  ``vault.principals``, e.g. by hand in SQL); the token's ``expires_at``
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
from typing import Any

from vault import principals
from vault.access import Principal, not_found_detail
from vault.db import Conn, Db
from vault.errors import BadRequest, NotFound, Unauthenticated
from vault.ledger import LedgerWriter, make_entry
from vault.ledger.entry import rfc3339

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


async def follow_changes(
    connect: Callable[[], Awaitable[Any]], cache: TokenCache, retry: float = 1.0
) -> None:
    """Keep ``cache`` following ``NOTIFY evault_auth`` on a connection from ``connect`` (an
    asyncpg connection); reconnect when it is lost, the cache bypassed meanwhile. Runs until
    cancelled."""
    while True:
        lost = asyncio.Event()
        conn = None
        try:
            conn = await connect()
            conn.add_termination_listener(lambda _c, lost=lost: lost.set())
            await conn.add_listener(principals.AUTH_CHANNEL, lambda *_a: cache.invalidate())
            cache.set_following(True)
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
            cache.set_following(False)
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
        await asyncio.sleep(retry)


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

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await conn.execute(
            "INSERT INTO tokens (id, principal_id, token_hash, comment, expires_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            token_id,
            principal_id,
            digest,
            comment,
            expires,
        )

    entry = make_entry(
        "principal",
        {"op": "token-created", "token": token_id, "expires": rfc3339(expires)},
        # The stored hash is committed so fsck --state finds a token row swapped for another.
        {"principal": principal_id, "by": actor.id, "token_hash": digest.hex()},
    )
    await ledger.append([entry], effect=effect)
    return IssuedToken(token_id, token, principal_id, expires)


async def revoke(db: Db, ledger: LedgerWriter, actor: Principal, token_id: str) -> int:
    """Revoke a token by its public id; revoking twice is a no-op that is still recorded."""
    await principals.require_admin(ledger, actor, "revoking tokens")
    owner = await db.fetchval("SELECT principal_id FROM tokens WHERE id = $1", token_id)
    if owner is None:
        raise NotFound(not_found_detail("token"))

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await conn.execute(
            "UPDATE tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", token_id
        )
        await principals.notify_auth_change(conn)

    entry = make_entry(
        "principal",
        {"op": "token-revoked", "token": token_id},
        {"principal": owner, "by": actor.id},
    )
    try:
        (idx,) = await ledger.append([entry], effect=effect)
    finally:  # committed or not (an error may follow the commit): never keep a stale answer
        principals.auth_changed_locally()
    return idx


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
    # One round trip: the token, its principal and the principal's case assignments.
    row = await db.fetchrow(
        "SELECT t.token_hash, t.expires_at AS token_expires_at,"
        " (t.expires_at > now() AND t.revoked_at IS NULL AND p.active) AS live, p.*,"
        " ARRAY(SELECT pc.case_id FROM principal_cases pc WHERE pc.principal_id = p.id)"
        " AS assigned_cases"
        " FROM tokens t JOIN principals p ON p.id = t.principal_id WHERE t.token_hash = $1",
        digest,
    )
    if row is None or not hmac.compare_digest(bytes(row["token_hash"]), digest):
        raise Unauthenticated()
    if not row["live"]:
        raise Unauthenticated()
    principal = principals.principal_from_row(row, row["assigned_cases"])
    if cache is not None:
        cache.put(digest, principal, row["token_expires_at"], generation)
    return principal
