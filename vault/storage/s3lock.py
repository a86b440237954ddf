"""Object Lock and deletion in the S3 store: COMPLIANCE retain-until dates read, set on a new
version, extended (never shortened: S3 itself refuses shortening and deleting a locked version,
to everyone), and versions deleted once their lock has expired (disposal, and a plain version
superseded by its sealed copy).

Errors: transport failures and unexpected answers -> ``Unavailable``; a missing object ->
``NotFound``; a delete S3 refuses because a lock holds -> ``Conflict``.
"""

from __future__ import annotations

from datetime import datetime

from botocore.exceptions import ClientError

from vault.errors import Conflict, NotFound, Unavailable
from vault.storage.blobstore import _digest
from vault.storage.s3client import error_code, unavailable
from vault.storage.s3names import key_of, name_of, retain_date, utc
from vault.storage.s3read import S3Reader
from vault.storage.s3upload import COMPLIANCE

__all__ = ["S3Locks"]

_NO_LOCK = ("ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration")
_GONE = ("404", "NoSuchKey", "NoSuchVersion")


class S3Locks(S3Reader):
    """Retention and removal (module docstring), over the read path."""

    async def retention(self, sha256: str) -> datetime | None:
        """The original's COMPLIANCE retain-until date (None if it has no lock)."""
        key = key_of(sha256)
        version = await self._original(key)
        if version is None:
            raise NotFound(f"no stored object {_digest(sha256)}")
        return await self._retention(key, version)

    async def version_retention(self, key: str, version: str) -> datetime | None:
        """The COMPLIANCE retain-until date of one version (None if it has no lock).
        ``NotFound`` if that version is not there."""
        return await self._retention(key, version, gone=True)

    async def _retention(self, key: str, version: str, *, gone: bool = False) -> datetime | None:
        with unavailable("reading an object's retention"):
            try:
                got = await self._s3.get_object_retention(
                    Bucket=self.bucket, Key=key, VersionId=version
                )
            except ClientError as exc:
                if error_code(exc) in _NO_LOCK:
                    return None
                if gone and error_code(exc) in _GONE:
                    raise NotFound(f"no stored version of {name_of(key)}") from None
                raise
        ret = got.get("Retention", {})
        if ret.get("Mode") != COMPLIANCE or "RetainUntilDate" not in ret:
            return None
        return utc(ret["RetainUntilDate"])

    async def extend_retention(self, sha256: str, until: datetime) -> datetime:
        """Make the original's COMPLIANCE lock last at least until ``until``; never shortens
        (an earlier ``until`` changes nothing). Returns the retain-until date now in force."""
        return await self.extend_key(key_of(sha256), until)

    async def extend_key(self, key: str, until: datetime) -> datetime:
        """``extend_retention`` for any key of this store (plain or sealed)."""
        version = await self._original(key)
        if version is None:
            raise NotFound(f"no stored object {name_of(key)}")
        return await self._extend(key, version, retain_date(until))

    async def _extend(self, key: str, version: str, until: datetime) -> datetime:
        current = await self._retention(key, version)
        if current is not None and current >= until:
            return current
        with unavailable("setting an object's retention"):
            await self._s3.put_object_retention(
                Bucket=self.bucket,
                Key=key,
                VersionId=version,
                Retention={"Mode": COMPLIANCE, "RetainUntilDate": until},
            )
        after = await self._retention(key, version)
        if after is None or after < until:
            raise Unavailable("S3 store: the retention set was not confirmed")
        return after

    async def _lock_new(self, key: str, version: str, until: datetime) -> None:
        """Set a version just written to COMPLIANCE until ``until`` in one request (the caller's
        HEAD checks it took); where the bucket's default retention already locks it for
        longer, S3 refuses that as a shortening, and ``_extend`` keeps the longer date."""
        with unavailable("setting an object's retention"):
            try:
                await self._s3.put_object_retention(
                    Bucket=self.bucket,
                    Key=key,
                    VersionId=version,
                    Retention={"Mode": COMPLIANCE, "RetainUntilDate": until},
                )
                return
            except ClientError as exc:
                if error_code(exc) != "AccessDenied":
                    raise
        await self._extend(key, version, until)

    # -- removal ------------------------------------------------------------------------------

    async def remove(self, sha256: str) -> bool:
        """Delete every version under the key (disposal, once retention has expired).
        ``Conflict`` while a version is still locked; False if nothing was there."""
        return await self.remove_key(key_of(sha256))

    async def remove_key(self, key: str) -> bool:
        """``remove`` for any key of this store (plain or sealed)."""
        versions, markers = await self._versions(key)
        if not versions and not markers:
            return False
        for v in [*versions, *markers]:
            await self._delete(key, str(v["VersionId"]))
        self._forget(key)
        return True

    async def remove_version(self, key: str, version: str) -> bool:
        """Delete exactly this version of ``key`` (no other), once its lock has expired:
        ``Conflict`` while it is locked (S3 refuses, whoever asks); False if it is not there."""
        versions, _ = await self._versions(key)
        if not any(str(v["VersionId"]) == version for v in versions):
            return False
        await self._delete(key, version)
        self._forget(key)
        return True

    async def _delete(self, key: str, version: str) -> None:
        with unavailable("deleting an object version"):
            try:
                await self._s3.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
            except ClientError as exc:
                if error_code(exc) == "AccessDenied":
                    raise Conflict(f"object {name_of(key)} is still locked") from None
                raise
