"""Streaming in and out: request bodies with timeouts, stored content with Range and ETags.

Guarantees:

- ``body_chunks`` yields a request body as it arrives and raises ``RequestTimeout`` (408) when
  no byte arrives for ``chunk_timeout`` seconds or the whole body is not in after
  ``total_timeout``; a body cut short (the client went away) is ``BadRequest``. Nothing is
  buffered beyond one received chunk.
- ``send_content`` serves one stored object (``vault.storage.content.Readable``) with a strong ETag
  ``"<sha256>"``, ``Accept-Ranges: bytes`` and:

  * ``If-None-Match`` (a list or ``*``, weak comparison per RFC 9110 §13.1.2) → 304;
  * one ``bytes=`` range (``a-b``, ``a-``, suffix ``-n``; ``b`` clamped to the end) → 206 with
    ``Content-Range``; a range starting at or past the end, a zero suffix, or any range of an
    empty object → 416 with ``Content-Range: bytes */<size>``;
  * several ranges, or a syntactically invalid Range header → the whole object with 200
    (RFC 9110 §14.2 lets a server ignore Range; multipart/byteranges is not offered);
  * ``If-Range`` that is not this ETag → Range ignored, 200.

  Every answer carries the request's ``X-Request-Id`` (a streamed one is prepared here, so
  it is set before its headers go out). Callers authorise (and so audit) BEFORE calling it:
  it sends bytes unconditionally.
- An object stored in plain (it offers ``fileno()``: the bytes on disk are the content) is sent
  zero-copy with ``loop.sendfile`` (``os.sendfile`` on a plain TCP transport; asyncio falls back
  to reading and writing where it cannot, e.g. under TLS), exactly ``[start, end)``. An object
  offering ``stream_range`` (a plain object in an S3 bucket) streams its ranged GET straight
  from the event loop. One offering ``read_views`` (a sealed object: a piece per I/O batch of
  about a MiB, decrypted in place and authenticated) is read with ``nowait``: a batch the
  kernel holds in memory is read and decrypted on the event loop itself (about what writing
  that MiB to the socket costs the loop; a thread hop costs more on a busy process), and one
  that would wait for the disk, with those after it up to ``BATCH`` bytes, in a worker thread.
  Any other object is read in a worker thread in batches of up to ``BATCH`` bytes. Each batch
  is written before the next is read, and no thread hop is spent once the range is sent. The
  object is closed on every exit, including a client that disconnects mid-stream; a chunk that
  fails authentication ends the response short of its length (the client sees the transfer
  fail), after only the chunks before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import ClassVar

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from api.problems import RID, problem
from vault.errors import BadRequest, EvaultError
from vault.storage.content import Readable

__all__ = [
    "RangeNotSatisfiable",
    "RequestTimeout",
    "body_chunks",
    "content_disposition",
    "etag_matches",
    "parse_range",
    "send_content",
]

_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class RequestTimeout(EvaultError):
    """The request body arrived too slowly or stalled: send it again, faster."""

    status: ClassVar[int] = 408
    slug: ClassVar[str] = "timeout"
    title: ClassVar[str] = "Request body too slow or stalled"


class RangeNotSatisfiable(EvaultError):
    """The requested range lies outside the content: ask for a range within its size."""

    status: ClassVar[int] = 416
    slug: ClassVar[str] = "range-not-satisfiable"
    title: ClassVar[str] = "Range not satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(f"the content is {size} bytes long")
        self.size = size


async def body_chunks(
    request: web.Request, chunk_timeout: float, total_timeout: float
) -> AsyncIterator[bytes]:
    """The request body, chunk by chunk, under the two timeouts (module docstring)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_timeout
    content = request.content
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise RequestTimeout(f"the body was not complete within {total_timeout:g} s")
        try:
            async with asyncio.timeout(min(chunk_timeout, remaining)):
                data = await content.readany()
        except TimeoutError:
            raise RequestTimeout(
                f"no data for {chunk_timeout:g} s"
                if remaining > chunk_timeout
                else f"the body was not complete within {total_timeout:g} s"
            ) from None
        except (aiohttp.ClientPayloadError, ConnectionError) as exc:
            raise BadRequest("the request body was cut short") from exc
        if not data:
            return
        yield data


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of a single satisfiable range; None to serve the whole object
    (no header, several ranges, unparsable); RangeNotSatisfiable (see module docstring)."""
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    m = _RANGE.match(spec)
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if len(first) > 20 or len(last) > 20:
        return None
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - n), size
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignore the header
    if start >= size:
        raise RangeNotSatisfiable(size)
    end = size if not last else min(int(last) + 1, size)
    return start, end


def _tags(header: str) -> list[str]:
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header matches ``etag`` (weak comparison)."""
    if header is None:
        return False
    tags = _tags(header)
    return "*" in tags or etag in tags


def content_disposition(kind: str, name: str, fallback: str) -> str:
    """``inline``/``attachment`` with an ASCII ``filename`` and the exact UTF-8 ``filename*``."""
    safe = "".join(c for c in fallback if c.isascii() and (c.isalnum() or c in "._-")) or "file"
    return f"{kind}; filename=\"{safe}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"


async def send_content(
    request: web.Request,
    obj: Readable,
    *,
    sha256: str,
    media_type: str,
    disposition: str,
) -> web.StreamResponse:
    """Send ``obj`` (closing it) honouring Range / If-None-Match / If-Range; see the module
    docstring. Authorisation must already have been decided and recorded."""
    try:
        size = obj.size
        etag = f'"{sha256}"'
        common = {
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "Cache-Control": "private, no-transform",
            "X-Content-Type-Options": "nosniff",
        }
        if etag_matches(request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers=common)
        if_range = request.headers.get("If-Range")
        want = request.headers.get("Range") if if_range in (None, etag) else None
        try:
            span = parse_range(want, size)
        except RangeNotSatisfiable as exc:
            return _unsatisfiable(request, exc.size, common)
        start, end = span if span is not None else (0, size)
        response = web.StreamResponse(status=200 if span is None else 206, headers=common)
        response.content_type = media_type
        response.headers["Content-Disposition"] = disposition
        response.content_length = end - start
        if span is not None:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        # Prepared here, before the problem middleware could add it on the way out.
        response.headers["X-Request-Id"] = request.get(RID, "")
        writer = await response.prepare(request)
        fileno = getattr(obj, "fileno", None)
        stream = getattr(obj, "stream_range", None)
        if request.method == "HEAD" or start == end:
            pass
        elif callable(fileno) and writer is not None and request.transport is not None:
            await _sendfile(request, writer, fileno(), start, end - start)
        elif callable(stream) and (streamed := stream(start, end)) is not None:
            async with contextlib.aclosing(streamed):
                async for data in streamed:
                    await response.write(data)
        elif callable(views := getattr(obj, "read_views", None)):
            await _send_views(response, views(start, end, nowait=True), end - start)
        else:
            chunks = obj.read_range(start, end)
            left = end - start  # stop once it is all sent: no thread hop to find the end
            while left > 0 and (batch := await asyncio.to_thread(_next_batch, chunks)):
                left -= sum(len(piece) for piece in batch)
                batch.reverse()
                while batch:  # each piece dropped once written: its buffer can be reused
                    await response.write(batch.pop())
        await response.write_eof()
        return response
    finally:
        obj.close()


BATCH = 4 << 20


def _next_batch(chunks: Iterator[bytes] | Iterator[memoryview]) -> list[bytes | memoryview]:
    """The next chunks, up to about ``BATCH`` bytes; empty at the end. Empty pieces (``nowait``
    announcing a read from disk: it happens here) are skipped."""
    batch: list[bytes | memoryview] = []
    size = 0
    for data in chunks:
        if not data:
            continue
        batch.append(data)
        size += len(data)
        if size >= BATCH:
            break
    return batch


async def _send_views(response: web.StreamResponse, views: Iterator[memoryview], n: int) -> None:
    """Send the ``n`` bytes of ``views`` (``read_views(..., nowait=True)``): a piece read from
    memory is taken here on the loop (one batch: about a MiB read and decrypted), one that
    needs the disk, with those after it up to ``BATCH``, in a worker thread."""
    while n > 0:
        piece = next(views, None)
        if piece is None:
            return
        if piece:
            n -= len(piece)
            await response.write(piece)
            del piece  # its buffer is reused once no view of it is left
            continue
        batch = await asyncio.to_thread(_next_batch, views)
        if not batch:
            return
        n -= sum(len(p) for p in batch)
        batch.reverse()
        while batch:  # each piece dropped once written: its buffer can be reused
            await response.write(batch.pop())


async def _sendfile(
    request: web.Request, writer: AbstractStreamWriter, fd: int, offset: int, count: int
) -> None:
    """``count`` bytes of ``fd`` from ``offset`` to the client, zero-copy where possible."""
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("connection lost")
    # loop.sendfile wants a file object; this one borrows the descriptor (no I/O to open it)
    with open(fd, "rb", buffering=0, closefd=False) as f:  # noqa: ASYNC230
        await asyncio.get_running_loop().sendfile(transport, f, offset, count)
    writer.output_size += count  # the body bytes the access log reports (body_length)


def _unsatisfiable(request: web.Request, size: int, common: dict[str, str]) -> web.Response:
    """A 416 problem response carrying ``Content-Range: bytes */size`` (returned, not raised:
    the problem middleware would drop the header)."""
    exc = RangeNotSatisfiable(size)
    response = problem(416, exc.title, exc.detail, exc.type_uri, request.get(RID, ""))
    response.headers.update(common)
    response.headers["Content-Range"] = f"bytes */{size}"
    return response
