"""Names and dates of the S3 store: where content lives in the bucket, what a write returns, and
retain-until dates as S3 keeps them.

The object with plaintext SHA-256 ``h`` is the key ``objects/sha256/<h[:2]>/<h[2:4]>/<h>``; a
sealed object (ciphertext) is ``sealed/sha256/<h[:2]>/<h[2:4]>/<h>.<object id hex>``, as in the
file store's ``sealed/`` tree (``vault.storage.blobstore``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vault.errors import BadRequest
from vault.storage.blobstore import _digest

__all__ = ["S3Object", "key_of", "name_of", "retain_date", "sealed_key_of", "utc"]


def key_of(sha256: str) -> str:
    """The key of the object with this digest. ``BadRequest`` if not a SHA-256 hex digest."""
    h = _digest(sha256)
    return f"objects/sha256/{h[:2]}/{h[2:4]}/{h}"


def sealed_key_of(sha256: str, object_id: bytes) -> str:
    """The key of a sealed object: plaintext digest and header object id."""
    h = _digest(sha256)
    if len(object_id) != 16:
        raise BadRequest("a sealed object id is 16 bytes")
    return f"sealed/sha256/{h[:2]}/{h[2:4]}/{h}.{object_id.hex()}"


def name_of(key: str) -> str:
    """The last part of a key (what error messages name)."""
    return key.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class S3Object:
    """A durable object: its digest, size, the version id of its original (of a new write:
    the version it wrote), that version's retain-until date, and whether it was stored before
    this write."""

    sha256: str
    size: int
    version_id: str
    retain_until: datetime
    existed: bool


def utc(when: datetime) -> datetime:
    """``when`` in UTC; ``BadRequest`` for a naive date."""
    if when.tzinfo is None:
        raise BadRequest("a retain-until date must carry a time zone")
    return when.astimezone(UTC)


def retain_date(when: datetime) -> datetime:
    """A retain-until date in UTC, rounded UP to a whole second (HEAD reports whole seconds;
    rounding up never shortens what was asked)."""
    at = utc(when)
    if at.microsecond:
        at = at.replace(microsecond=0) + timedelta(seconds=1)
    return at
