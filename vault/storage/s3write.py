"""The write path of the S3 store: content-addressed, write-once, every version locked
COMPLIANCE and confirmed before a write returns.

* A file (``put_file``, ``put_sealed_file``) is read twice: once to hash it (its SHA-256 is the
  key; each part's SHA-256 is taken on the way), once to upload it in parts of ``part_size``
  bytes (larger where an object would need over 10,000 parts), each part signed with its
  SHA-256 from the first read, which the store checks against what it receives: a source
  changed in between is refused part by part and its upload aborted; nothing is hashed twice
  here. At most ``INFLIGHT`` parts are in flight (``vault.storage.s3upload``).
* An upload (``put_stream``) with an announced hash goes to S3 as it arrives, hashed as it
  goes (SHA-256, and each part's ``Content-MD5``, checked by the store), and completes only if
  it matches; without a hash it is spooled to a temporary file and stored as a file.
* Locks: the PUT carries COMPLIANCE until the date asked for. A multipart upload's lock headers
  are ignored by Ceph 16, so its version is locked by PutObjectRetention right after completion
  -- unless the bucket's default retention (COMPLIANCE, read at ``open``) likely covers that
  date already: then the confirming HEAD comes first, and the lock is set only if it shows
  less.
* Durable: the write returns only once a HEAD of the new version confirmed its size, version id
  and COMPLIANCE lock. Write-once: content whose key exists already uploads nothing: the
  stored original is re-hashed through the S3 API (``IntegrityError`` if it does not match its
  address) and its retention extended to the date asked for.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vault.errors import IntegrityError, Unavailable
from vault.storage.blobcopy import check_source
from vault.storage.blobstore import _digest
from vault.storage.s3lock import S3Locks
from vault.storage.s3names import S3Object, key_of, name_of, retain_date, utc
from vault.storage.s3upload import (
    COMPLIANCE,
    hash_file,
    limit,
    offload,
    regroup,
    send_object,
)

__all__ = ["MAX_PARTS", "S3Writer"]

MAX_PARTS = 10_000  # S3's limit of parts per multipart upload
_NEAR = timedelta(minutes=1)  # a date this close to the default lock's is likely covered by it


async def _file_parts(fd: int, size: int, part: int, shrunk: str) -> AsyncIterator[bytes]:
    """The first ``size`` bytes of ``fd`` in parts of ``part`` bytes (``IntegrityError(shrunk)``
    if the file is shorter now)."""
    for offset in range(0, size, part):
        n = min(part, size - offset)
        data = await offload(os.pread, fd, n, offset)
        if len(data) != n:
            raise IntegrityError(shrunk)
        yield data


class S3Writer(S3Locks):
    """Writes (module docstring), over locks and the read path."""

    part_size: int
    _spool: Path
    default_lock: timedelta | None  # the bucket's COMPLIANCE default retention, if any

    async def put_file(
        self, fd: int, *, retain_until: datetime, max_bytes: int | None = None
    ) -> S3Object:
        """Store the regular file open at ``fd`` (offset 0 to EOF; its position is not used).
        Read once to hash (the hash is the key), and once more to upload, each part checked by
        the store against its hash from the first read (``IntegrityError`` and an aborted
        upload if the file changed in between)."""
        until = retain_date(retain_until)
        st = check_source(fd, max_bytes)
        part = self._part_for(st.st_size)
        digest, size, hashes = await offload(hash_file, fd, max_bytes, part)
        existing = await self._existing(digest, until)
        if existing is not None:
            return existing
        parts = _file_parts(fd, size, part, "the source changed while it was stored")
        return await self._upload(
            digest, parts, until, "the source changed while stored", part_hashes=hashes
        )

    async def put_sealed_file(self, fd: int, key: str, *, retain_until: datetime) -> S3Object:
        """Store the sealed (ciphertext) file open at ``fd`` as the new key ``key``
        (``sealed_key_of``: a fresh object id, never written before), with the same checks as
        ``put_file``; the returned digest is the ciphertext's."""
        until = retain_date(retain_until)
        part = self._part_for(os.fstat(fd).st_size)
        digest, size, hashes = await offload(hash_file, fd, None, part)
        if await self._original(key) is not None:
            raise IntegrityError(f"a sealed object {name_of(key)} exists already")
        parts = _file_parts(fd, size, part, "the sealed file changed while it was stored")
        return await self._upload(
            digest,
            parts,
            until,
            "the sealed file changed while stored",
            key=key,
            part_hashes=hashes,
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
        until = retain_date(retain_until)
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
        part_hashes: list[str] | None = None,
    ) -> S3Object:
        """Send ``parts`` as the object of ``digest`` (``vault.storage.s3upload``), lock it,
        confirm. ``key``: another key than the digest's (a sealed object, whose bytes are
        ciphertext hashing to ``digest``)."""
        key = key or key_of(digest)
        started = datetime.now(UTC)
        version, size, multipart = await send_object(
            self._s3,
            self.bucket,
            key,
            parts,
            digest=digest,
            until=until,
            mismatch=mismatch,
            part_hashes=part_hashes,
        )
        if not version:
            raise Unavailable("S3 store: the bucket returned no version id (is it versioned?)")
        # Ceph 16 does not apply CreateMultipartUpload's lock headers: lock the version now,
        # unless the bucket's default retention likely covers the date (the HEAD tells; if it
        # does not, the version is locked then).
        covered = self.default_lock is not None and until <= started + self.default_lock + _NEAR
        if multipart and not covered:
            await self._lock_new(key, version, until)
        unlocked = IntegrityError(f"stored object {digest} is not locked as asked")
        try:
            return await self._confirm(digest, key, version, size, until)
        except _NotLocked:
            if not (multipart and covered):
                raise unlocked from None
        await self._lock_new(key, version, until)
        try:
            return await self._confirm(digest, key, version, size, until)
        except _NotLocked:
            raise unlocked from None

    async def _confirm(
        self, digest: str, key: str, version: str, size: int, until: datetime
    ) -> S3Object:
        """HEAD the new version: its size, version id and COMPLIANCE lock must be as sent
        (``_NotLocked`` for a lock not as asked). The version returned is the one written: the
        key is not listed again (a listing right after a write is slow on Ceph); were the same
        content written by another node at the same moment, reads still pin the oldest
        version, looked up at the first read."""
        head = await self._head(key, version)
        if int(head.get("ContentLength", -1)) != size or head.get("VersionId") != version:
            raise IntegrityError(f"stored object {digest}: size or version not as written")
        locked = head.get("ObjectLockRetainUntilDate")
        if head.get("ObjectLockMode") != COMPLIANCE or not locked or utc(locked) < until:
            raise _NotLocked
        return S3Object(digest, size, version, utc(locked), False)


class _NotLocked(Exception):
    """The HEAD of a new version showed no COMPLIANCE lock until the date asked for."""
