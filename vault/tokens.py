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
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vault import principals
from vault.access import Principal
from vault.db import Conn, Db
from vault.errors import BadRequest, NotFound, Unauthenticated
from vault.ledger import LedgerWriter, make_entry
from vault.ledger.entry import rfc3339

__all__ = ["MAX_TTL", "PREFIX", "IssuedToken", "authenticate", "create", "revoke", "token_hash"]

PREFIX = "evt_"
_LENGTH = len(PREFIX) + 43  # 32 bytes of URL-safe base64 without padding
MAX_TTL = timedelta(days=3660)
MIN_TTL = timedelta(minutes=1)


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
        raise NotFound()
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
        {"principal": principal_id, "by": actor.id},
    )
    await ledger.append([entry], effect=effect)
    return IssuedToken(token_id, token, principal_id, expires)


async def revoke(db: Db, ledger: LedgerWriter, actor: Principal, token_id: str) -> int:
    """Revoke a token by its public id; revoking twice is a no-op that is still recorded."""
    await principals.require_admin(ledger, actor, "revoking tokens")
    owner = await db.fetchval("SELECT principal_id FROM tokens WHERE id = $1", token_id)
    if owner is None:
        raise NotFound()

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await conn.execute(
            "UPDATE tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", token_id
        )

    entry = make_entry(
        "principal",
        {"op": "token-revoked", "token": token_id},
        {"principal": owner, "by": actor.id},
    )
    (idx,) = await ledger.append([entry], effect=effect)
    return idx


async def authenticate(db: Db, token: str) -> Principal:
    """The principal a live token belongs to; ``Unauthenticated`` (one message) otherwise."""
    if not isinstance(token, str) or len(token) != _LENGTH or not token.startswith(PREFIX):
        raise Unauthenticated()
    digest = token_hash(token)
    # One round trip: the token, its principal and the principal's case assignments.
    row = await db.fetchrow(
        "SELECT t.token_hash,"
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
    return principals.principal_from_row(row, row["assigned_cases"])
