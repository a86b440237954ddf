"""Sending one object to S3 with bounded memory: a single PUT when it fits in one part, else a
multipart upload with at most ``INFLIGHT`` parts in flight; every part carries the
``Content-MD5`` the store checks (``BadDigest`` -> ``IntegrityError``), the bytes are hashed
(SHA-256) as they go, and the object is completed only if they hash to the expected digest.
A multipart upload that fails for any reason, cancellation included, is aborted, never left
half-made.

Used by ``vault.storage.s3store``, which locks and confirms what this sends.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from botocore.exceptions import ClientError

from vault.errors import IntegrityError, TooLarge, Unavailable
from vault.storage.s3client import error_code, unavailable

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = [
    "COMPLIANCE",
    "INFLIGHT",
    "limit",
    "offload",
    "regroup",
    "send_object",
    "sha256_fd",
]

INFLIGHT = 2  # parts uploading at once per upload (memory: about INFLIGHT + 1 parts)
READ_CHUNK = 1 << 20
COMPLIANCE: Final = "COMPLIANCE"
T = TypeVar("T")

# The S3 store's blocking work (hashing, reading a source) runs here, never on the loop's default
# executor: the service calls the store from default-executor threads that wait for it
# (``vault.storage.s3blobs``), and work queued behind them there could wait for ever.
_WORK = ThreadPoolExecutor(8, thread_name_prefix="s3-work")


async def offload(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` on the S3 store's own worker threads."""
    return await asyncio.get_running_loop().run_in_executor(_WORK, func, *args)


async def send_object(
    client: S3Client,
    bucket: str,
    key: str,
    parts: AsyncIterator[bytes],
    *,
    digest: str,
    until: datetime,
    mismatch: str,
) -> tuple[str, int, bool]:
    """Send ``parts`` (each the part size but the last) as ``key``, with Object Lock COMPLIANCE
    until ``until`` requested; ``IntegrityError(mismatch)`` (and nothing completed) if the bytes
    do not hash to ``digest``. Returns (version id, size, whether it was a multipart upload)."""
    hasher = hashlib.sha256()

    def matches() -> bool:
        return hasher.hexdigest() == digest

    first = await anext(parts, None)
    second = await anext(parts, None) if first is not None else None
    if second is None:
        data = first or b""
        md5 = await _hash_part(hasher, data)
        if not matches():
            raise IntegrityError(mismatch)
        with unavailable("storing an object"):
            try:
                resp = await client.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=data,
                    ContentMD5=md5,
                    ObjectLockMode=COMPLIANCE,
                    ObjectLockRetainUntilDate=until,
                )
            except ClientError as exc:
                if error_code(exc) == "BadDigest":
                    raise IntegrityError("the store received other bytes than sent") from exc
                raise
        return str(resp.get("VersionId") or ""), len(data), False

    async def all_parts() -> AsyncIterator[bytes]:
        yield first or b""
        yield second
        async for part in parts:
            yield part

    version, size = await _multipart(client, bucket, key, all_parts(), hasher, until, matches)
    if not version and size < 0:
        raise IntegrityError(mismatch)
    return version, size, True


async def _multipart(
    client: S3Client,
    bucket: str,
    key: str,
    parts: AsyncIterator[bytes],
    hasher: Any,
    until: datetime,
    matches: Callable[[], bool],
) -> tuple[str, int]:
    """Upload ``parts`` as a multipart upload; complete it only if ``matches()`` once every
    part is sent, else abort and return ("", -1). Any failure aborts it too."""
    with unavailable("starting a multipart upload"):
        started = await client.create_multipart_upload(
            Bucket=bucket, Key=key, ObjectLockMode=COMPLIANCE, ObjectLockRetainUntilDate=until
        )
    upload_id = started["UploadId"]
    done: dict[int, str] = {}
    inflight: set[asyncio.Task[None]] = set()
    size = 0

    async def send(number: int, data: bytes, md5: str) -> None:
        with unavailable(f"uploading part {number}"):
            try:
                got = await client.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ContentMD5=md5,
                )
            except ClientError as exc:
                if error_code(exc) == "BadDigest":
                    raise IntegrityError("the store received other bytes than sent") from exc
                raise
        done[number] = str(got["ETag"])

    completed = False
    try:
        number = 0
        async for data in parts:
            number += 1
            size += len(data)
            md5 = await _hash_part(hasher, data)
            while len(inflight) >= INFLIGHT:
                finished, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    inflight.discard(task)
                    task.result()
            inflight.add(asyncio.create_task(send(number, data, md5)))
        while inflight:
            await inflight.pop()
        if not matches():
            return "", -1
        with unavailable("completing a multipart upload"):
            resp = await client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": done[n]} for n in sorted(done)]
                },
            )
        completed = True
    finally:
        if not completed:
            for task in inflight:
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)
            await asyncio.shield(_abort(client, bucket, key, upload_id))
    return str(resp.get("VersionId") or ""), size


async def _abort(client: S3Client, bucket: str, key: str, upload_id: str) -> None:
    try:
        await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as exc:
        if error_code(exc) != "NoSuchUpload":
            raise Unavailable("S3 store: aborting a failed multipart upload failed") from exc


def _md5_b64(data: bytes | memoryview) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - Content-MD5


def sha256_fd(fd: int, max_bytes: int | None) -> tuple[str, int]:
    """Read the file at ``fd`` from offset 0 to EOF once: its SHA-256 and size (the key of
    the object; the upload then hashes what it sends again, with each part's Content-MD5)."""
    sha = hashlib.sha256()
    offset = 0
    while data := os.pread(fd, READ_CHUNK * 4, offset):
        sha.update(data)
        offset += len(data)
        if max_bytes is not None and offset > max_bytes:
            raise TooLarge(f"source is over the {max_bytes}-byte limit")
    return sha.hexdigest(), offset


async def _hash_part(hasher: Any, data: bytes) -> str:
    """Add ``data`` to ``hasher`` and return its Content-MD5, off the event loop (while the
    parts before it are in flight)."""

    def work() -> str:
        hasher.update(data)
        return _md5_b64(data)

    return await offload(work) if len(data) > 65536 else work()


async def limit(chunks: AsyncIterator[bytes], max_bytes: int | None) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise TooLarge(f"upload is over the {max_bytes}-byte limit")
        yield chunk


async def regroup(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Chunks of any size -> parts of exactly ``size`` bytes (the last may be shorter)."""
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)
