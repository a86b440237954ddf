"""One error hierarchy for the service.

Every class says what the caller should do and carries the HTTP status that the API's single
error middleware maps it to (RFC 9457 problem+json). Code below the API raises these; it never
builds HTTP responses itself. ``detail`` is shown to the caller, so it must never reveal anything
above the caller's clearance: an item the caller may not see is reported exactly like one that
does not exist (``NotFound``).
"""

from __future__ import annotations

from typing import ClassVar


class EvaultError(Exception):
    """Base of every error the service reports on purpose."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error: the operation did not complete; retry or report it"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title

    @property
    def type_uri(self) -> str:
        return f"https://evidence-vault.invalid/problems/{self.slug}"


class ConfigError(EvaultError):
    """The configuration is wrong: fix the named file and key, then start again."""

    status = 500
    slug = "config"
    title = "Configuration error: fix the named key"


class BadRequest(EvaultError):
    """The request is malformed: correct it; retrying unchanged will fail again."""

    status = 400
    slug = "bad-request"
    title = "Bad request: correct the request"


class Unauthenticated(EvaultError):
    """No valid credentials: present a valid, unexpired token."""

    status = 401
    slug = "unauthenticated"
    title = "Authentication required: present a valid token"


class Forbidden(EvaultError):
    """Authenticated, but not allowed: the detail names what is missing and how to get it."""

    status = 403
    slug = "forbidden"
    title = "Not allowed: the detail says what is missing and how to get it"


class NotFound(EvaultError):
    """No such thing, or nothing the caller may see: check the identifier."""

    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(EvaultError):
    """The request conflicts with the current state: re-read the state and decide again."""

    status = 409
    slug = "conflict"
    title = "Conflict with the current state"


class TooLarge(EvaultError):
    """The payload is over a configured limit: split it or ask for a higher limit."""

    status = 413
    slug = "too-large"
    title = "Payload too large"


class IntegrityError(EvaultError):
    """Stored data does not match its recorded hash or proof: stop, keep everything, investigate."""

    status = 422
    slug = "integrity"
    title = "Integrity check failed"


class EntryTooLarge(BadRequest):
    """A ledger entry's canonical encoding is over 65,535 bytes: log less, or commit to a hash."""

    slug = "entry-too-large"
    title = "Ledger entry too large"


class Unavailable(EvaultError):
    """A dependency (database, disk, ledger) is unavailable: retry later; nothing was changed."""

    status = 503
    slug = "unavailable"
    title = "Service unavailable: retry later"


class SchemaTooNew(Unavailable):
    """The database schema is newer than this code: upgrade evidence-vault before starting it."""

    slug = "schema-too-new"
    title = "Database schema is newer than this program"


class LedgerCorrupt(IntegrityError):
    """The ledger's stored tree disagrees with its entries or checkpoints: run fsck, investigate."""

    slug = "ledger-corrupt"
    title = "Ledger inconsistency detected"


class LedgerUnauthenticated(LedgerCorrupt):
    """Ledger entries are not covered by batches the host's MAC key authenticates (written
    outside the sequencer, or their batch rows forged or missing): nothing past ``index`` is
    signed. Run `evault ledger fsck` and investigate the database."""

    slug = "ledger-unauthenticated"
    title = "Ledger entries are not authenticated"

    def __init__(self, index: int, detail: str) -> None:
        self.index = index
        super().__init__(detail)
