"""Sending one object to S3 with bounded memory: a single PUT when it fits in one part, else a
multipart upload with at most ``INFLIGHT`` parts in flight; a multipart upload that fails for
any reason, cancellation included, is aborted, never left half-made. Every part carries a hash
the store checks against the bytes it receives, and the object is completed only if the bytes
are the expected ones:

* parts hashed beforehand (``hash_file``: a file's first read gives its SHA-256, the key, and
  each part's SHA-256): each part is sent with its SHA-256 as the signed
  ``x-amz-content-sha256`` (``vault.storage.s3client.PAYLOAD_SHA256``), which the store checks
  (``XAmzContentSHA256Mismatch`` -> ``IntegrityError``): bytes that differ from the first read
  (the source changed in between) are refused part by part, and the upload is aborted; nothing
  is hashed twice on this side;
* parts hashed as they go (a stream): each part carries its ``Content-MD5`` (``BadDigest`` ->
  ``IntegrityError``), the bytes are hashed (SHA-256) while earlier parts are in flight, and
  the upload completes only if they hash to the expected digest.

Used by ``vault.storage.s3write``, which locks and confirms what this sends.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from botocore.exceptions import ClientError

from vault.errors import IntegrityError, TooLarge, Unavailable
from vault.storage.s3client import PAYLOAD_SHA256, error_code, unavailable

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = [
    "COMPLIANCE",
    "INFLIGHT",
    "hash_file",
    "limit",
    "offload",
    "regroup",
    "send_object",
]

INFLIGHT = 2  # parts uploading at once per upload (memory: about INFLIGHT + 1 parts)
COMPLIANCE: Final = "COMPLIANCE"
T = TypeVar("T")

# The S3 store's blocking work (hashing, reading a source) runs here, never on the loop's default
# executor: the service calls the store from default-executor threads that wait for it
# (``vault.storage.s3blobs``), and work queued behind them there could wait for ever.
_WORK = ThreadPoolExecutor(8, thread_name_prefix="s3-work")
# Part hashes of ``hash_file``, beside its whole-file hash; tasks here never wait on anything.
_PART_HASH = ThreadPoolExecutor(4, thread_name_prefix="s3-hash")
_MISMATCH = ("BadDigest", "XAmzContentSHA256Mismatch")


async def offload(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` on the S3 store's own worker threads."""
    return await asyncio.get_running_loop().run_in_executor(_WORK, func, *args)


class _Hashed:
    """Parts hashed as they go: each part's Content-MD5, and SHA-256 over all of them."""

    refused = "the store received other bytes than sent"

    def __init__(self, digest: str) -> None:
        self._digest = digest
        self._hasher = hashlib.sha256()

    async def part(self, number: int, data: bytes) -> dict[str, Any]:
        return {"ContentMD5": await _hash_part(self._hasher, data)}

    def complete(self, count: int) -> bool:
        return self._hasher.hexdigest() == self._digest


class _Prehashed:
    """Parts hashed beforehand (``hash_file``): each part's SHA-256, checked by the store."""

    def __init__(self, hashes: Sequence[str], mismatch: str) -> None:
        self._hashes = hashes
        self.refused = mismatch

    async def part(self, number: int, data: bytes) -> dict[str, Any]:
        if number > len(self._hashes):
            raise IntegrityError(self.refused)
        return {PAYLOAD_SHA256: self._hashes[number - 1]}

    def complete(self, count: int) -> bool:
        return count == len(self._hashes)


_Check = _Hashed | _Prehashed


async def send_object(
    client: S3Client,
    bucket: str,
    key: str,
    parts: AsyncIterator[bytes],
    *,
    digest: str,
    until: datetime,
    mismatch: str,
    part_hashes: Sequence[str] | None = None,
) -> tuple[str, int, bool]:
    """Send ``parts`` (each the part size but the last) as ``key``, with Object Lock COMPLIANCE
    until ``until`` requested; ``IntegrityError(mismatch)`` (and nothing completed) if the bytes
    do not hash to ``digest``. ``part_hashes``: the SHA-256 of each part, from a first read
    (``hash_file``); the store then checks each part against it. Returns (version id, size,
    whether it was a multipart upload)."""
    check: _Check = _Hashed(digest) if part_hashes is None else _Prehashed(part_hashes, mismatch)
    first = await anext(parts, None)
    second = await anext(parts, None) if first is not None else None
    if second is None:
        data = first or b""
        sums = await check.part(1, data)
        if not check.complete(1):
            raise IntegrityError(mismatch)
        with unavailable("storing an object"), _refused(check.refused):
            resp = await client.put_object(
                Bucket=bucket,
                Key=key,
                Body=data,
                ObjectLockMode=COMPLIANCE,
                ObjectLockRetainUntilDate=until,
                **sums,
            )
        return str(resp.get("VersionId") or ""), len(data), False

    async def all_parts() -> AsyncIterator[bytes]:
        yield first or b""
        yield second
        async for part in parts:
            yield part

    version, size = await _multipart(client, bucket, key, all_parts(), check, until)
    if not version and size < 0:
        raise IntegrityError(mismatch)
    return version, size, True


@contextmanager
def _refused(message: str) -> Iterator[None]:
    """A part the store refused for its hash -> ``IntegrityError(message)``."""
    try:
        yield
    except ClientError as exc:
        if error_code(exc) in _MISMATCH:
            raise IntegrityError(message) from exc
        raise


async def _multipart(
    client: S3Client,
    bucket: str,
    key: str,
    parts: AsyncIterator[bytes],
    check: _Check,
    until: datetime,
) -> tuple[str, int]:
    """Upload ``parts`` as a multipart upload; complete it only if ``check.complete`` once
    every part is sent, else abort and return ("", -1). Any failure aborts it too."""
    with unavailable("starting a multipart upload"):
        started = await client.create_multipart_upload(
            Bucket=bucket, Key=key, ObjectLockMode=COMPLIANCE, ObjectLockRetainUntilDate=until
        )
    upload_id = started["UploadId"]
    done: dict[int, str] = {}
    inflight: set[asyncio.Task[None]] = set()
    size = 0

    async def send(number: int, data: bytes, sums: dict[str, Any]) -> None:
        with unavailable(f"uploading part {number}"), _refused(check.refused):
            got = await client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                **sums,
            )
        done[number] = str(got["ETag"])

    completed = False
    try:
        number = 0
        async for data in parts:
            number += 1
            size += len(data)
            sums = await check.part(number, data)
            while len(inflight) >= INFLIGHT:
                finished, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    inflight.discard(task)
                    task.result()
            inflight.add(asyncio.create_task(send(number, data, sums)))
        while inflight:
            await inflight.pop()
        if not check.complete(number):
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


def hash_file(fd: int, max_bytes: int | None, part: int) -> tuple[str, int, list[str]]:
    """Read the file at ``fd`` from offset 0 to EOF once: its SHA-256 (the object's key), its
    size, and the SHA-256 of each ``part``-byte part (the hashes the upload then sends, and the
    store checks: ``send_object``). The part hashes are made on other threads while this one
    hashes the whole; memory: about two parts."""
    whole = hashlib.sha256()
    parts: list[Future[str]] = []
    offset = 0
    try:
        while data := _read_part(fd, offset, part):
            offset += len(data)
            if max_bytes is not None and offset > max_bytes:
                raise TooLarge(f"source is over the {max_bytes}-byte limit")
            if len(parts) > 1:
                parts[-2].result()  # at most two parts held for hashing
            parts.append(_PART_HASH.submit(_sha256_hex, data))
            whole.update(data)
        hashes = [f.result() for f in parts] or [_sha256_hex(b"")]
    finally:
        for f in parts:
            f.cancel()
    return whole.hexdigest(), offset, hashes


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_part(fd: int, offset: int, part: int) -> bytes:
    """Up to ``part`` bytes at ``offset`` (fewer only at EOF)."""
    data = os.pread(fd, part, offset)
    if 0 < len(data) < part:
        pieces = [data]
        got = len(data)
        while got < part and (more := os.pread(fd, part - got, offset + got)):
            pieces.append(more)
            got += len(more)
        data = b"".join(pieces)
    return data


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
