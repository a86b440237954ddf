"""The read path of the S3 store: versions under a key, the original (the OLDEST version, pinned
by its version id for every read), metadata, ranged reads and re-hashing through the S3 API.

A later version (someone overwrote the key) or a delete marker never replaces the original for
reads; ``verify`` and ``foreign_versions`` report them. Original version ids and sizes are
remembered per process (an original never changes; a key disposed of since is forgotten at its
first ``NotFound``).

Errors: transport failures and unexpected answers -> ``Unavailable``; a missing object ->
``NotFound``; a range outside the object -> ``BadRequest``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from vault.errors import BadRequest, NotFound
from vault.storage.blobstore import _digest
from vault.storage.s3client import SignedReads, error_code, unavailable
from vault.storage.s3names import S3Object, key_of, name_of, utc
from vault.storage.s3upload import offload

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["S3Reader"]

READ_CHUNK = 1 << 20


class S3Reader:
    """Reads of one bucket (module docstring); the base of ``vault.storage.s3store``'s store."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._s3 = client
        self._signed = SignedReads(client)
        self.bucket = bucket
        self._originals: dict[str, str] = {}  # key -> version id of its original
        self._sizes: dict[str, int] = {}  # key -> size of its original (never changes)

    # -- lookup -------------------------------------------------------------------------------

    async def _list(self, prefix: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(versions, delete markers) of every key starting with ``prefix``."""
        versions: list[dict[str, Any]] = []
        markers: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        with unavailable("listing object versions"):
            while True:
                page = await self._s3.list_object_versions(**kwargs)
                versions += [dict(v) for v in page.get("Versions", [])]
                markers += [dict(m) for m in page.get("DeleteMarkers", [])]
                if not page.get("IsTruncated"):
                    break
                kwargs["KeyMarker"] = page.get("NextKeyMarker")
                kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")
        return versions, markers

    async def _versions(self, key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(versions oldest first, delete markers) under exactly ``key``."""
        listed, marked = await self._list(key)
        versions = [v for v in listed if v.get("Key") == key]
        versions.sort(key=lambda v: v["LastModified"])
        return versions, [m for m in marked if m.get("Key") == key]

    async def keys(self, prefix: str) -> list[str]:
        """Every key (with at least one version or delete marker) starting with ``prefix``."""
        versions, markers = await self._list(prefix)
        return sorted({str(v.get("Key")) for v in [*versions, *markers]})

    async def _original(self, key: str) -> str | None:
        """The version id of the oldest version under ``key`` (None if there is none)."""
        cached = self._originals.get(key)
        if cached is not None:
            return cached
        versions, _ = await self._versions(key)
        if not versions:
            return None
        version = str(versions[0]["VersionId"])
        self._originals[key] = version
        return version

    async def exists(self, sha256: str) -> bool:
        """True if a version is stored under this digest (its bytes are not checked)."""
        return await self._original(key_of(sha256)) is not None

    async def stat(self, sha256: str) -> S3Object:
        """The stored original's size, version and retention. ``NotFound`` if absent."""
        key = key_of(sha256)
        version = await self._original(key)
        if version is None:
            raise NotFound(f"no stored object {_digest(sha256)}")
        head = await self._head(key, version)
        until = head.get("ObjectLockRetainUntilDate")
        return S3Object(
            _digest(sha256),
            int(head["ContentLength"]),
            version,
            utc(until) if until else datetime.min.replace(tzinfo=UTC),
            True,
        )

    async def _head(self, key: str, version: str) -> dict[str, Any]:
        with unavailable("reading an object's metadata"):
            try:
                return dict(
                    await self._s3.head_object(Bucket=self.bucket, Key=key, VersionId=version)
                )
            except ClientError as exc:
                if error_code(exc) in ("404", "NoSuchKey", "NoSuchVersion"):
                    self._forget(key)
                    raise NotFound(f"no stored object {name_of(key)}") from None
                raise

    def _forget(self, key: str) -> None:
        self._originals.pop(key, None)
        self._sizes.pop(key, None)

    async def size_of(self, key: str) -> int:
        """The size of the original version under ``key`` (remembered: an original version
        never changes; a read of one disposed of since fails with ``NotFound``)."""
        cached = self._sizes.get(key)
        if cached is not None:
            return cached
        version = await self._original(key)
        if version is None:
            raise NotFound(f"no stored object {name_of(key)}")
        size = int((await self._head(key, version))["ContentLength"])
        self._sizes[key] = size
        return size

    async def original_of(self, key: str) -> tuple[str, int] | None:
        """(version id, size) of the original version under ``key``; None if there is none."""
        version = await self._original(key)
        if version is None:
            return None
        try:
            return version, int((await self._head(key, version))["ContentLength"])
        except NotFound:
            return None

    async def foreign_versions(self, key: str) -> str | None:
        """Why the key holds more than its original (a later version: someone overwrote it; a
        delete marker: someone deleted it), or None. Reads ignore both (they read the original
        version); scrub reports them through this."""
        versions, markers = await self._versions(key)
        if markers:
            return f"{len(markers)} delete marker(s) over the original"
        if len(versions) > 1:
            return f"{len(versions) - 1} later version(s) written over the original"
        return None

    # -- reading ------------------------------------------------------------------------------

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The original's bytes ``[start, end)`` (to the end if ``end`` is None), streamed with
        one ranged GET. Bytes are not re-verified. ``NotFound`` if absent; ``BadRequest`` for a
        range outside the object."""
        return self.read_key(key_of(sha256), start, end)

    async def read_key(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """``read`` of the original version under any key of this store (plain or sealed)."""
        version = await self._original(key)
        if version is None:
            raise NotFound(f"no stored object {name_of(key)}")
        try:
            async for chunk in self._get(key, version, start, end):
                yield chunk
        except NotFound:
            self._forget(key)  # disposed of by another process
            raise

    async def _get(
        self, key: str, version: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        if start < 0 or (end is not None and end < start):
            raise BadRequest("bad byte range")
        if end is not None and end == start:
            return
        signed = await self._signed.get(self.bucket, key, version, start, end)
        if signed is not None:
            done = False
            try:
                with unavailable("reading an object"):
                    async for chunk in signed.content.iter_any():
                        yield chunk
                done = True
            finally:
                if done:
                    signed.release()
                else:
                    signed.close()  # not read to its end: the connection is not reused
            return
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "VersionId": version}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        with unavailable("reading an object"):
            try:
                resp = await self._s3.get_object(**kwargs)
            except ClientError as exc:
                if error_code(exc) == "InvalidRange":
                    raise BadRequest("byte range outside the object") from None
                if error_code(exc) in ("NoSuchKey", "NoSuchVersion", "404"):
                    raise NotFound(f"no stored object {name_of(key)}") from None
                raise
            async with resp["Body"] as body:
                async for chunk in body.iter_chunks(READ_CHUNK):
                    yield chunk

    async def _hash_version(self, key: str, version: str) -> str:
        hasher = hashlib.sha256()
        async for chunk in self._get(key, version):
            if len(chunk) > 65536:
                await offload(hasher.update, chunk)
            else:
                hasher.update(chunk)
        return hasher.hexdigest()

    async def verify(self, sha256: str) -> bool:
        """Re-hash through the S3 API: True iff every version under the key hashes to
        ``sha256`` and no delete marker hides it (an overwrite or a deletion attempt is a
        change). ``NotFound`` if nothing is stored."""
        h, key = _digest(sha256), key_of(sha256)
        versions, markers = await self._versions(key)
        if not versions:
            raise NotFound(f"no stored object {h}")
        if markers:
            return False
        for v in versions:
            if await self._hash_version(key, str(v["VersionId"])) != h:
                return False
        return True
