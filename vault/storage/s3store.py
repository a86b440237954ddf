"""Write-once, content-addressed blob store on an S3 bucket with Object Lock (Ceph RGW, MinIO,
AWS S3 and other WORM-capable S3 services); the ``s3`` backend beside ``vault.storage.blobstore``.

Layout: the object with plaintext SHA-256 ``h`` is the key ``objects/sha256/<h[:2]>/<h[2:4]>/<h>``
of a versioned bucket with Object Lock. Its *original* is the oldest version under that key: a
later version (someone overwrote the key) or a delete marker never replaces it for reads, and
``verify`` reports them.

Guarantees:

* Every version this store writes carries Object Lock COMPLIANCE with the retain-until date
  given to the write (set on the PUT; for a multipart upload set by PutObjectRetention right
  after completion, because Ceph 16 ignores the lock headers of CreateMultipartUpload; a bucket
  created here also has a COMPLIANCE default retention, so no version is unlocked even in that
  moment). ``extend_retention`` only ever moves the date later; S3 itself refuses shortening and
  deleting a locked version, to everyone, root of the service host included.
* A write returns only when it is durable: the PUT (or every part and the completion) succeeded,
  the store checked each part's ``Content-MD5``, the bytes sent hash to the address, and a HEAD
  of the new version confirmed its size, version id and COMPLIANCE lock. A failed multipart
  upload is aborted, never left half-made.
* Write-once: writing content whose key exists already uploads nothing: the stored original is
  re-hashed through the S3 API (``IntegrityError`` if it does not match its address) and its
  retention extended to the date asked for.
* Memory is bounded: a file or upload is sent in parts of ``part_size`` bytes (larger where an
  object would need over 10,000 parts; an upload is sized by its byte limit) with at most
  ``INFLIGHT`` parts in flight; a source file is read twice: a SHA-256 pass (its hash decides
  the key), then the upload, which hashes what it sends (SHA-256 and each part's Content-MD5)
  while earlier parts are in flight and completes only if that matches the first pass: a
  source that changed in between is refused and its upload aborted.
* Errors: transport failures and unexpected S3 answers -> ``Unavailable`` (cause chained); a
  missing object -> ``NotFound``; a hash that disagrees -> ``IntegrityError``; over the limit ->
  ``TooLarge``; a bucket without Object Lock -> ``ConfigError`` at ``open``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from vault.config import S3StoreConfig
from vault.errors import (
    BadRequest,
    ConfigError,
    Conflict,
    IntegrityError,
    NotFound,
    Unavailable,
)
from vault.storage.blobcopy import check_source
from vault.storage.blobstore import _digest
from vault.storage.s3bucket import check_bucket
from vault.storage.s3client import (
    S3Credentials,
    error_code,
    load_credentials,
    open_client,
    unavailable,
)
from vault.storage.s3upload import (
    COMPLIANCE,
    limit,
    offload,
    regroup,
    send_object,
    sha256_fd,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["S3BlobStore", "S3Object", "key_of", "sealed_key_of"]

READ_CHUNK = 1 << 20
MAX_PARTS = 10_000  # S3's limit of parts per multipart upload


def key_of(sha256: str) -> str:
    """The key of the object with this digest. ``BadRequest`` if not a SHA-256 hex digest."""
    h = _digest(sha256)
    return f"objects/sha256/{h[:2]}/{h[2:4]}/{h}"


def sealed_key_of(sha256: str, object_id: bytes) -> str:
    """The key of a sealed object: plaintext digest and header object id, as in the file store's
    ``sealed/`` tree (``vault.storage.blobstore``)."""
    h = _digest(sha256)
    if len(object_id) != 16:
        raise BadRequest("a sealed object id is 16 bytes")
    return f"sealed/sha256/{h[:2]}/{h[2:4]}/{h}.{object_id.hex()}"


@dataclass(frozen=True, slots=True)
class S3Object:
    """A durable object: its digest, size, the version id of its original, that version's
    retain-until date, and whether it was stored before this write."""

    sha256: str
    size: int
    version_id: str
    retain_until: datetime
    existed: bool


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise BadRequest("a retain-until date must carry a time zone")
    return when.astimezone(UTC)


def _retain_date(when: datetime) -> datetime:
    """A retain-until date in UTC, rounded UP to a whole second (HEAD reports whole seconds;
    rounding up never shortens what was asked)."""
    at = _utc(when)
    if at.microsecond:
        at = at.replace(microsecond=0) + timedelta(seconds=1)
    return at


async def _file_parts(fd: int, size: int, part: int, shrunk: str) -> AsyncIterator[bytes]:
    """The first ``size`` bytes of ``fd`` in parts of ``part`` bytes (``IntegrityError(shrunk)``
    if the file is shorter now)."""
    for offset in range(0, size, part):
        n = min(part, size - offset)
        data = await offload(os.pread, fd, n, offset)
        if len(data) != n:
            raise IntegrityError(shrunk)
        yield data


class S3BlobStore:
    """The content-addressed store on one bucket. Safe to share between tasks; several
    processes and hosts may share one bucket. Make with ``S3BlobStore.open``."""

    def __init__(self, client: S3Client, bucket: str, *, part_size: int, spool_dir: Path) -> None:
        self._s3 = client
        self.bucket = bucket
        self.part_size = part_size
        self._spool = spool_dir
        self._originals: dict[str, str] = {}  # key -> version id of its original
        self._sizes: dict[str, int] = {}  # key -> size of its original (never changes)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        cfg: S3StoreConfig,
        *,
        credentials: S3Credentials | None = None,
        spool_dir: Path | None = None,
    ) -> AsyncIterator[S3BlobStore]:
        """Connect, check the bucket (``check_bucket``), yield the store; closes the client.
        ``spool_dir``: where an upload of unknown hash is spooled (default: system temp)."""
        if not cfg.bucket:
            raise ConfigError("store.s3.bucket is not set")
        creds = credentials or load_credentials(cfg)
        async with open_client(cfg, creds) as client:
            store = cls(
                client,
                cfg.bucket,
                part_size=cfg.part_size,
                spool_dir=spool_dir or Path(tempfile.gettempdir()),
            )
            await store.check_bucket(
                create=cfg.create_bucket, default_days=cfg.default_retention_days
            )
            yield store

    # -- the bucket ---------------------------------------------------------------------------

    async def check_bucket(self, *, create: bool = False, default_days: int = 1) -> None:
        """The bucket must exist with Object Lock enabled (``vault.storage.s3bucket``)."""
        await check_bucket(self._s3, self.bucket, create=create, default_days=default_days)

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
            _utc(until) if until else datetime.min.replace(tzinfo=UTC),
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
                    raise NotFound(f"no stored object {key.rsplit('/', 1)[-1]}") from None
                raise

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
            raise NotFound(f"no stored object {key.rsplit('/', 1)[-1]}")
        try:
            async for chunk in self._get(key, version, start, end):
                yield chunk
        except NotFound:
            self._forget(key)  # disposed of by another process
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
            raise NotFound(f"no stored object {key.rsplit('/', 1)[-1]}")
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

    async def _get(
        self, key: str, version: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        if start < 0 or (end is not None and end < start):
            raise BadRequest("bad byte range")
        if end is not None and end == start:
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
                    raise NotFound(f"no stored object {key.rsplit('/', 1)[-1]}") from None
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

    # -- retention ----------------------------------------------------------------------------

    async def retention(self, sha256: str) -> datetime | None:
        """The original's COMPLIANCE retain-until date (None if it has no lock)."""
        key = key_of(sha256)
        version = await self._original(key)
        if version is None:
            raise NotFound(f"no stored object {_digest(sha256)}")
        return await self._retention(key, version)

    async def _retention(self, key: str, version: str) -> datetime | None:
        with unavailable("reading an object's retention"):
            try:
                got = await self._s3.get_object_retention(
                    Bucket=self.bucket, Key=key, VersionId=version
                )
            except ClientError as exc:
                if error_code(exc) in (
                    "ObjectLockConfigurationNotFoundError",
                    "NoSuchObjectLockConfiguration",
                ):
                    return None
                raise
        ret = got.get("Retention", {})
        if ret.get("Mode") != COMPLIANCE or "RetainUntilDate" not in ret:
            return None
        return _utc(ret["RetainUntilDate"])

    async def extend_retention(self, sha256: str, until: datetime) -> datetime:
        """Make the original's COMPLIANCE lock last at least until ``until``; never shortens
        (an earlier ``until`` changes nothing). Returns the retain-until date now in force."""
        return await self.extend_key(key_of(sha256), until)

    async def extend_key(self, key: str, until: datetime) -> datetime:
        """``extend_retention`` for any key of this store (plain or sealed)."""
        version = await self._original(key)
        if version is None:
            raise NotFound(f"no stored object {key.rsplit('/', 1)[-1]}")
        return await self._extend(key, version, _retain_date(until))

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
            with unavailable("deleting an object version"):
                try:
                    await self._s3.delete_object(
                        Bucket=self.bucket, Key=key, VersionId=str(v["VersionId"])
                    )
                except ClientError as exc:
                    if error_code(exc) == "AccessDenied":
                        raise Conflict(f"object {key.rsplit('/', 1)[-1]} is still locked") from None
                    raise
        self._forget(key)
        return True

    # -- writing ------------------------------------------------------------------------------

    async def put_file(
        self, fd: int, *, retain_until: datetime, max_bytes: int | None = None
    ) -> S3Object:
        """Store the regular file open at ``fd`` (offset 0 to EOF; its position is not used).
        Read once to hash (the hash is the key), and once more to upload: that second read is
        hashed again as it is sent (SHA-256, and each part's Content-MD5, which the store
        checks) and the upload completes only if it hashes to the first read's digest
        (``IntegrityError`` and an aborted upload if the file changed in between)."""
        until = _retain_date(retain_until)
        st = check_source(fd, max_bytes)
        part = self._part_for(st.st_size)
        digest, size = await offload(sha256_fd, fd, max_bytes)
        existing = await self._existing(digest, until)
        if existing is not None:
            return existing

        parts = _file_parts(fd, size, part, "the source changed while it was stored")
        return await self._upload(digest, parts, until, "the source changed while stored")

    async def put_sealed_file(self, fd: int, key: str, *, retain_until: datetime) -> S3Object:
        """Store the sealed (ciphertext) file open at ``fd`` as the new key ``key``
        (``sealed_key_of``: a fresh object id, never written before), with the same checks as
        ``put_file``; the returned digest is the ciphertext's."""
        until = _retain_date(retain_until)
        size = os.fstat(fd).st_size
        part = self._part_for(size)
        digest, size = await offload(sha256_fd, fd, None)
        if await self._original(key) is not None:
            raise IntegrityError(f"a sealed object {key.rsplit('/', 1)[-1]} exists already")

        parts = _file_parts(fd, size, part, "the sealed file changed while it was stored")
        return await self._upload(
            digest, parts, until, "the sealed file changed while stored", key=key
        )

    async def put_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        retain_until: datetime,
        expected_sha256: str | None,
        max_bytes: int | None,
    ) -> S3Object:
        """Store an upload. With ``expected_sha256`` the parts go to S3 as they arrive and the
        upload is aborted if the bytes hash otherwise (``IntegrityError``); without it the
        upload is spooled to a temporary file first (its hash decides the key) and stored with
        ``put_file``. ``TooLarge`` as soon as ``max_bytes`` is passed."""
        until = _retain_date(retain_until)
        if expected_sha256 is None:
            return await self._spooled(chunks, until, max_bytes)
        digest = _digest(expected_sha256)
        sized = limit(chunks, max_bytes)
        if await self.exists(digest):  # nothing to send: check the upload, then the original
            hasher = hashlib.sha256()
            async for chunk in sized:
                hasher.update(chunk)
            if hasher.hexdigest() != digest:
                raise IntegrityError("upload does not match its expected SHA-256")
            existing = await self._existing(digest, until)
            if existing is None:
                raise Unavailable(f"S3 store: object {digest} vanished while it was written")
            return existing
        return await self._upload(
            digest,
            regroup(sized, self._part_for(max_bytes)),
            until,
            "upload does not match its expected SHA-256",
        )

    def _part_for(self, size: int | None) -> int:
        """``part_size``, or more where an object of ``size`` bytes would need over MAX_PARTS
        parts. Without a size, ``part_size`` (memory stays bounded; such an upload is limited to
        MAX_PARTS parts)."""
        if size is None:
            return self.part_size
        return max(self.part_size, -(-size // MAX_PARTS))

    async def _spooled(
        self, chunks: AsyncIterator[bytes], until: datetime, max_bytes: int | None
    ) -> S3Object:
        with tempfile.TemporaryFile(dir=self._spool) as spool:
            async for chunk in limit(chunks, max_bytes):
                await offload(spool.write, chunk)
            await offload(spool.flush)
            return await self.put_file(spool.fileno(), retain_until=until, max_bytes=max_bytes)

    async def _existing(self, digest: str, until: datetime) -> S3Object | None:
        """If the content is stored: check its original by re-hashing, extend its retention,
        and return it; else None."""
        key = key_of(digest)
        version = await self._original(key)
        if version is None:
            return None
        if await self._hash_version(key, version) != digest:
            raise IntegrityError(f"stored object {digest} does not match its address")
        await self._extend(key, version, until)
        found = await self.stat(digest)
        return S3Object(digest, found.size, version, found.retain_until, True)

    async def _upload(
        self,
        digest: str,
        parts: AsyncIterator[bytes],
        until: datetime,
        mismatch: str,
        *,
        key: str | None = None,
    ) -> S3Object:
        """Send ``parts`` as the object of ``digest`` (``vault.storage.s3upload``), lock it,
        confirm. ``key``: another key than the digest's (a sealed object, whose bytes are
        ciphertext hashing to ``digest``)."""
        key = key or key_of(digest)
        version, size, multipart = await send_object(
            self._s3,
            self.bucket,
            key,
            parts,
            digest=digest,
            until=until,
            mismatch=mismatch,
        )
        if multipart and version:
            # Ceph 16 does not apply CreateMultipartUpload's lock headers: lock the version now.
            await self._lock_new(key, version, until)
        return await self._confirm(digest, key, version, size, until)

    async def _lock_new(self, key: str, version: str, until: datetime) -> None:
        """Set a version just written to COMPLIANCE until ``until`` in one request (the HEAD of
        ``_confirm`` checks it took); where the bucket's default retention already locks it
        for longer, S3 refuses that as a shortening, and ``_extend`` keeps the longer date."""
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

    async def _confirm(
        self, digest: str, key: str, version: str, size: int, until: datetime
    ) -> S3Object:
        """HEAD the new version: its size, version id and COMPLIANCE lock must be as sent."""
        if not version:
            raise Unavailable("S3 store: the bucket returned no version id (is it versioned?)")
        head = await self._head(key, version)
        if int(head.get("ContentLength", -1)) != size or head.get("VersionId") != version:
            raise IntegrityError(f"stored object {digest}: size or version not as written")
        locked = head.get("ObjectLockRetainUntilDate")
        if head.get("ObjectLockMode") != COMPLIANCE or not locked or _utc(locked) < until:
            raise IntegrityError(f"stored object {digest} is not locked as asked")
        original = await self._original(key)
        return S3Object(digest, size, original or version, _utc(locked), False)
