"""Sealed objects: AES-256-GCM in fixed-size chunks, readable by range (DESIGN §5).

This docstring is the format's specification.

Layout of a sealed object (all integers big-endian)::

    header   32 bytes  magic b"EVSEAL1\\0" (8) | version = 1 (1) | chunk exponent e (1)
                       | reserved, all zero (6) | object id: 16 random bytes (16)
    chunk 0  ciphertext (C bytes) || GCM tag (16 bytes)        C = 2**e, 12 <= e <= 22
    ...
    chunk n-1 ciphertext (1..C bytes; 0 only when the plaintext is empty) || tag (16 bytes)

* Every chunk but the last holds exactly C plaintext bytes; the last holds 1..C (a plaintext whose
  size is a multiple of C ends with a full chunk). An empty plaintext is one final empty chunk, so
  n = max(1, ceil(P / C)) and the sealed size is 32 + P + 16 n (``sealed_size``). The mapping is
  one-to-one: ``plaintext_size`` rejects every length no writer produces.
* The data key (DEK, 32 bytes) is NOT in the object: it is wrapped by a key-encryption key and
  stored elsewhere (``vault.storage.keyring``), so rotating keys never rewrites an object (objects
  are write-once). The wrapped DEK is bound to the object id.
* Chunk key = HKDF-SHA256(ikm=DEK, salt=object id, info=b"evidence-vault seal v1 chunk key"),
  32 bytes. With a fresh random DEK per object this is defence in depth: even if a DEK were ever
  reused, two objects never share a (key, nonce) pair.
* Nonce of chunk i (12 bytes) = object id[0:8] || uint32(i); hence at most 2**32 chunks.
* Associated data of chunk i = header (32 bytes) || uint64(i) || final flag (1 byte: 1 for the
  last chunk, else 0).

Guarantees:

* Authenticity: a flipped bit anywhere (header, ciphertext, tag), a truncated or extended object,
  reordered or swapped chunks, a chunk or header taken from another object (same or different
  DEK), or a wrong DEK all raise ``IntegrityError``; no byte of a chunk is ever returned before
  that whole chunk has authenticated. Reads stream chunk by chunk, so chunks *before* a damaged
  one may already have been yielded: a consumer that streams (HTTP) must abort the response on
  ``IntegrityError``, never complete it.
* The plaintext size is authenticated when a ``SealedReader`` opens: it decrypts the last chunk and
  checks its final flag, so a truncated object fails at open, before any range is served.
* Range reads decrypt only the chunks overlapping the range. Memory is bounded whatever the
  object size: file I/O goes in batches of whole sealed chunks holding 1 MiB of plaintext (at
  least one chunk) into one buffer reused for the whole read, and ``SealWriter`` holds at most one
  plaintext chunk besides its output batch. Sequential reads keep the kernel reading ahead
  (``vault.storage.prefetch``), so the disk works while chunks are decrypted, and a range of at
  least ``AHEAD_BATCHES`` batches is read and decrypted on a worker thread one batch ahead of its
  consumer (``vault.storage.pipeline.ahead``: the consumer's hashing or sending overlaps decryption;
  at most two decrypted batches are held). Authentication is unchanged: a batch is handed over
  only after each of its chunks authenticated, and an ``IntegrityError`` reaches the consumer
  after the chunks before the damaged one, as without the worker.
* ``read_views`` yields the same bytes as ``read_range``, a piece per I/O batch: the batch's
  chunks are decrypted in place into one buffer (``vault.storage.buffers``: reused only once no
  view of it is alive), so a streaming consumer writes a MiB at a time without a new allocation
  per chunk. The same authentication rule holds: a piece holds only authenticated chunks.
* The content address stays the plaintext SHA-256, computed by ``SealWriter`` while sealing.
* A reader over a file with a descriptor reads it with positional reads only (``os.preadv``: no
  shared file position), so what opening established (``SealedReader.state``: the header and
  sizes it authenticated, the chunk cipher) may open the same object again on another
  descriptor of it (``SealedReader.reopen``) without unwrapping the key, deriving the chunk key
  or decrypting the last chunk; ``reopen`` refuses a file whose length is no longer the
  authenticated one (truncated or extended since). A reopened reader serves only chunks it
  reads from the file and authenticates (the last one too), under the header as authenticated
  at open.

``OSError`` from the underlying files propagates unchanged (the blob store maps it).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vault.errors import IntegrityError, TooLarge
from vault.storage import buffers
from vault.storage.fileread import fileno_of, read_at, read_cached
from vault.storage.pipeline import ahead
from vault.storage.prefetch import ReadAhead

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "TAG_SIZE",
    "SealHeader",
    "SealResult",
    "SealWriter",
    "SealedReader",
    "SealedState",
    "plaintext_size",
    "read_header",
    "seal_stream",
    "sealed_size",
]

MAGIC = b"EVSEAL1\0"
VERSION = 1
HEADER_SIZE = 32
TAG_SIZE = 16
OBJECT_ID_SIZE = 16
DEK_SIZE = 32
MIN_EXP, MAX_EXP = 12, 22  # 4 KiB .. 4 MiB
DEFAULT_CHUNK_SIZE = 64 << 10
MAX_CHUNKS = 1 << 32
_HEADER = struct.Struct(">8sBB6s16s")
_HKDF_INFO = b"evidence-vault seal v1 chunk key"
_IO_BATCH = 1 << 20
AHEAD_BATCHES = 2  # ranges of at least this many I/O batches are decrypted a batch ahead


class SealResult(NamedTuple):
    """What sealing produced: plaintext SHA-256 (lower-case hex), plaintext size, object id (the
    16 header bytes the wrapped DEK must be bound to)."""

    sha256: str
    size: int
    object_id: bytes


@dataclass(frozen=True, slots=True)
class SealHeader:
    """A parsed header. Parsing checks its form only; chunks authenticate its bytes."""

    raw: bytes
    chunk_size: int
    object_id: bytes


@dataclass(frozen=True, slots=True)
class SealedState:
    """What opening a sealed object established (module docstring). It holds the chunk cipher
    (not the data key): keep it in-process only; ``repr`` does not show it."""

    header: bytes
    object_id: bytes
    chunk_size: int
    sealed_size: int
    size: int
    chunks: int
    aead: AESGCM = field(repr=False)


def _exponent(chunk_size: int) -> int:
    """Return log2(chunk_size); ValueError unless a power of two in 4 KiB..4 MiB."""
    exp = chunk_size.bit_length() - 1
    if chunk_size <= 0 or chunk_size != 1 << exp or not MIN_EXP <= exp <= MAX_EXP:
        raise ValueError(f"chunk size must be a power of two from 4 KiB to 4 MiB: {chunk_size}")
    return exp


def sealed_size(plaintext_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Size in bytes of the sealed object holding ``plaintext_size`` bytes."""
    _exponent(chunk_size)
    if plaintext_size < 0:
        raise ValueError("negative size")
    chunks = max(1, -(-plaintext_size // chunk_size))
    return HEADER_SIZE + plaintext_size + TAG_SIZE * chunks


def plaintext_size(sealed_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Inverse of ``sealed_size``; ``IntegrityError`` for a length no writer produces."""
    _exponent(chunk_size)
    body = sealed_size - HEADER_SIZE
    if body < TAG_SIZE:
        raise IntegrityError("sealed object too short")
    stride = chunk_size + TAG_SIZE
    chunks = -(-body // stride)
    last = body - (chunks - 1) * stride
    # last plaintext chunk: 1..C bytes, or 0 bytes only when it is the only chunk
    if last < TAG_SIZE or (last == TAG_SIZE and chunks > 1) or chunks > MAX_CHUNKS:
        raise IntegrityError("sealed object has an impossible length (truncated or extended)")
    return body - chunks * TAG_SIZE


def _header(chunk_size: int, object_id: bytes) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, _exponent(chunk_size), bytes(6), object_id)


def parse_header(raw: bytes) -> SealHeader:
    """Parse 32 header bytes; ``IntegrityError`` if they are not a version-1 sealed header."""
    if len(raw) != HEADER_SIZE:
        raise IntegrityError("sealed object too short")
    magic, version, exp, reserved, object_id = _HEADER.unpack(raw)
    if magic != MAGIC:
        raise IntegrityError("not a sealed object")
    if version != VERSION or not MIN_EXP <= exp <= MAX_EXP or reserved != bytes(6):
        raise IntegrityError("sealed object header is damaged or of an unknown version")
    return SealHeader(raw=bytes(raw), chunk_size=1 << exp, object_id=object_id)


def read_header(f: BinaryIO) -> SealHeader:
    """Read and parse the header at offset 0 (to find the object id before unwrapping the DEK)."""
    f.seek(0)
    return parse_header(_read_exact(f, HEADER_SIZE))


def _chunk_cipher(dek: bytes, object_id: bytes) -> AESGCM:
    if len(dek) != DEK_SIZE:
        raise ValueError("a data key is 32 bytes")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=object_id, info=_HKDF_INFO)
    return AESGCM(hkdf.derive(dek))


def _nonce(object_id: bytes, index: int) -> bytes:
    return object_id[:8] + struct.pack(">I", index)


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


def _batch_chunks(chunk_size: int) -> int:
    """Chunks per read or write call: 1 MiB of plaintext at a time (so a range of whole MiB
    is whole batches), at least one chunk."""
    return max(1, _IO_BATCH // chunk_size)


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    while len(data) < n:
        more = f.read(n - len(data))
        if not more:
            raise IntegrityError("sealed object ended early (truncated while open?)")
        data += more
    return data


def _write_all(out: BinaryIO, data: memoryview) -> None:
    while data:
        written = out.write(data)
        if written is None:  # non-blocking raw stream: not supported
            raise BlockingIOError("sealed output would block")
        data = data[written:]


class SealWriter:
    """Streaming sealer: ``write`` plaintext, then ``close`` to emit the final chunk.

    The header is written at construction; ``out`` is neither flushed, fsynced nor closed (the
    blob store does that). Memory: one plaintext chunk plus a batch of sealed chunks (about
    1 MiB) written to ``out`` in one call; everything is in ``out`` once ``close`` returns.
    After an exception the writer refuses further use and the partial output must be discarded.
    """

    def __init__(self, dek: bytes, out: BinaryIO, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.chunk_size = chunk_size
        self.object_id = secrets.token_bytes(OBJECT_ID_SIZE)
        self.header = _header(chunk_size, self.object_id)
        self._aead = _chunk_cipher(dek, self.object_id)
        self._out = out
        self._buf = bytearray(chunk_size)
        self._fill = 0
        self._batch = bytearray(_batch_chunks(chunk_size) * (chunk_size + TAG_SIZE))
        self._batch_fill = 0
        self._index = 0
        self._sha = hashlib.sha256()
        self._size = 0
        _write_all(out, memoryview(self.header))
        self._state = "open"

    def _seal(self, plain: memoryview, final: bool) -> None:
        if self._index >= MAX_CHUNKS:
            raise TooLarge("object too large for its chunk size")
        end = self._batch_fill + len(plain) + TAG_SIZE
        if end > len(self._batch):
            self._flush()
            end = len(plain) + TAG_SIZE
        self._aead.encrypt_into(
            _nonce(self.object_id, self._index),
            plain,
            _aad(self.header, self._index, final),
            memoryview(self._batch)[self._batch_fill : end],
        )
        self._batch_fill = end
        self._index += 1

    def _flush(self) -> None:
        _write_all(self._out, memoryview(self._batch)[: self._batch_fill])
        self._batch_fill = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Seal ``data`` (the caller may reuse its buffer afterwards). Returns ``len(data)``."""
        if self._state != "open":
            raise ValueError(f"SealWriter is {self._state}")
        src = memoryview(data).cast("B")
        self._state = "failed"
        self._sha.update(src)
        self._size += len(src)
        pos, size, chunk = 0, len(src), self.chunk_size
        while pos < size:
            if self._fill == chunk:  # more data follows, so the buffered chunk is not final
                self._seal(memoryview(self._buf), final=False)
                self._fill = 0
            if self._fill == 0 and size - pos > chunk:  # a whole chunk with data after it
                self._seal(src[pos : pos + chunk], final=False)
                pos += chunk
                continue
            take = min(chunk - self._fill, size - pos)
            self._buf[self._fill : self._fill + take] = src[pos : pos + take]
            self._fill += take
            pos += take
        self._state = "open"
        return size

    def close(self) -> SealResult:
        """Emit the final chunk and return (plaintext sha256 hex, plaintext size, object id)."""
        if self._state != "open":
            raise ValueError(f"SealWriter is {self._state}")
        self._state = "failed"
        self._seal(memoryview(self._buf)[: self._fill], final=True)
        self._flush()
        self._state = "closed"
        self._buf = self._batch = bytearray()
        return SealResult(self._sha.hexdigest(), self._size, self.object_id)


def seal_stream(
    dek: bytes, src: BinaryIO, dst: BinaryIO, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> SealResult:
    """Seal all of ``src`` into ``dst`` in one pass; returns (sha256 hex, size, object id)."""
    writer = SealWriter(dek, dst, chunk_size)
    buf = bytearray(max(chunk_size, 1 << 20))
    view = memoryview(buf)
    while True:
        n = src.readinto(buf)  # type: ignore[attr-defined]
        if n is None:  # a non-blocking source must not pass for end of file
            raise BlockingIOError("seal_stream source would block")
        if not n:
            break
        writer.write(view[:n])
    return writer.close()


class SealedReader:
    """Authenticated reader of one sealed object (not thread-safe: one reader per thread; while
    a large range is being read, a worker thread of its own reads the file, see the module
    docstring).

    Opening parses the header, derives the plaintext size from the file length, and decrypts the
    last chunk to authenticate that size (``IntegrityError`` otherwise). ``f`` must be seekable.
    """

    state: SealedState
    _fd: int | None

    def __init__(self, dek: bytes, f: BinaryIO) -> None:
        head = read_header(f)
        sealed = f.seek(0, os.SEEK_END)
        size = plaintext_size(sealed, head.chunk_size)
        chunks = max(1, -(-size // head.chunk_size))
        aead = _chunk_cipher(dek, head.object_id)
        self._bind(
            SealedState(head.raw, head.object_id, head.chunk_size, sealed, size, chunks, aead), f
        )
        self._last: bytes | None = self._decrypt(chunks - 1, self._tail())

    @classmethod
    def reopen(cls, state: SealedState, f: BinaryIO) -> SealedReader:
        """A reader of the object ``state`` was taken from, over ``f`` (another descriptor of
        the same file); ``IntegrityError`` if its length is no longer the authenticated one."""
        fd = fileno_of(f)
        length = os.fstat(fd).st_size if fd is not None else f.seek(0, os.SEEK_END)
        if length != state.sealed_size:
            raise IntegrityError("sealed object changed length since it was opened")
        reader = cls.__new__(cls)
        reader._bind(state, f)
        reader._last = None  # read and authenticated again when a range reaches it
        return reader

    def _bind(self, state: SealedState, f: BinaryIO) -> None:
        self.state = state
        self._f = f
        self._fd = fileno_of(f)
        self.header = state.header
        self.object_id = state.object_id
        self.chunk_size = state.chunk_size
        self._sealed_size = state.sealed_size
        self.size = state.size
        self._chunks = state.chunks
        self._aead = state.aead

    def _tail(self, buf: memoryview | None = None) -> memoryview:
        """The last sealed chunk, read from the file (into ``buf`` if given)."""
        at = self._offset(self._chunks - 1)
        if buf is None:
            buf = memoryview(bytearray(self._sealed_size - at))
        read_at(self._f, self._fd, buf, at)
        return buf

    def _last_plain(self) -> bytes:
        """The last chunk's plaintext: as authenticated at open, else read and authenticated."""
        if self._last is not None:
            return self._last
        return self._decrypt(self._chunks - 1, self._tail())

    def _offset(self, index: int) -> int:
        return HEADER_SIZE + index * (self.chunk_size + TAG_SIZE)

    def _decrypt(self, index: int, sealed: bytes | memoryview) -> bytes:
        final = index == self._chunks - 1
        try:
            return self._aead.decrypt(
                _nonce(self.object_id, index), sealed, _aad(self.header, index, final)
            )
        except InvalidTag:
            raise IntegrityError(f"sealed object: chunk {index} failed authentication") from None

    def read_range(self, start: int, end: int) -> Iterator[bytes]:
        """Yield exactly plaintext[start:end], decrypting only the chunks it overlaps.

        ``ValueError`` unless 0 <= start <= end <= size. Each yielded piece comes from one fully
        authenticated chunk; ``IntegrityError`` is raised at the first chunk that fails.
        """
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"range [{start}, {end}) outside 0..{self.size}")
        return self._chunks_of(start, end)

    def _chunks_of(self, start: int, end: int) -> Iterator[bytes]:
        if start == end:
            return
        chunk = self.chunk_size
        first, last = start // chunk, (end - 1) // chunk
        body_last = min(last, self._chunks - 2)  # the last chunk is read on its own
        batches = self._batches(first, body_last, start, end)
        if body_last + 1 - first >= AHEAD_BATCHES * _batch_chunks(chunk):
            batches = ahead(batches)  # decrypt the next batch while this one is consumed
        try:
            for pieces in batches:
                yield from pieces
        finally:  # a consumer that stops early: the worker is done with the file on return
            batches.close()  # type: ignore[attr-defined]
        if last == self._chunks - 1:
            yield self._cut(self._last_plain(), last, start, end)

    def _batches(self, first: int, body_last: int, start: int, end: int) -> Iterator[list[bytes]]:
        """Chunks ``first..body_last`` read from the file a batch at a time, decrypted, cut to
        ``[start, end)``: one list per batch."""
        stride = self.chunk_size + TAG_SIZE
        per_batch = min(_batch_chunks(self.chunk_size), body_last + 1 - first)
        if per_batch <= 0:
            return
        batch = memoryview(bytearray(per_batch * stride))  # reused: one read buffer
        ahead_hint = ReadAhead(self._f, self._offset(body_last + 1))
        index = first
        while index <= body_last:  # read a batch of sealed chunks with one call, then decrypt
            count = min(per_batch, body_last + 1 - index)
            sealed = batch[: count * stride]
            read_at(self._f, self._fd, sealed, self._offset(index))
            ahead_hint.at(self._offset(index + count))
            pieces = []
            try:
                for k in range(count):
                    plain = self._decrypt(index, sealed[k * stride : (k + 1) * stride])
                    pieces.append(self._cut(plain, index, start, end))
                    index += 1
            except IntegrityError:
                if pieces:  # the chunks before the damaged one, as a chunk-by-chunk read gives
                    yield pieces
                raise
            yield pieces

    def read_views(
        self, start: int, end: int, *, pipelined: bool = True, nowait: bool = False
    ) -> Iterator[memoryview]:
        """As ``read_range``, in pieces of about one I/O batch: each batch's chunks are
        decrypted straight into one buffer of its own (no allocation nor copy per chunk), and
        the piece is a view of it (never reused afterwards). A piece holds only chunks that all
        authenticated; at a damaged chunk, the chunks of its batch before it come first, then
        ``IntegrityError``, exactly as ``read_range`` yields them.

        ``nowait`` (not pipelined): a batch the kernel does not hold wholly in memory is
        announced by an empty piece before it is read; the next step reads it, waiting for the
        disk. A consumer on an event loop takes that step in a worker thread, and the others on
        its own thread (reading from memory and decrypting one batch)."""
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"range [{start}, {end}) outside 0..{self.size}")
        return self._views_of(start, end, pipelined and not nowait, nowait)

    def _views_of(
        self, start: int, end: int, pipelined: bool, nowait: bool
    ) -> Iterator[memoryview]:
        if start == end:
            return
        chunk = self.chunk_size
        first, last = start // chunk, (end - 1) // chunk
        body_last = min(last, self._chunks - 2)
        views = self._batch_views(first, body_last, start, end, nowait)
        if pipelined and body_last + 1 - first >= AHEAD_BATCHES * _batch_chunks(chunk):
            views = ahead(views)
        try:
            yield from views
        finally:
            views.close()  # type: ignore[attr-defined]
        if last == self._chunks - 1:
            tail = None
            if self._last is None and nowait:
                tail = memoryview(bytearray(self._sealed_size - self._offset(last)))
                if not read_cached(self._fd, tail, self._offset(last)):
                    yield memoryview(b"")  # would wait for the disk (read_views)
                    self._tail(tail)
            plain = self._last_plain() if tail is None else self._decrypt(last, tail)
            yield memoryview(self._cut(plain, last, start, end))

    def _batch_views(
        self, first: int, body_last: int, start: int, end: int, nowait: bool
    ) -> Iterator[memoryview]:
        """As ``_batches``, each batch decrypted into a buffer of its own (``buffers``: one
        nothing else holds a view of), cut to ``[start, end)``."""
        chunk, stride = self.chunk_size, self.chunk_size + TAG_SIZE
        per_batch = min(_batch_chunks(chunk), body_last + 1 - first)
        if per_batch <= 0:
            return
        readbuf = buffers.take(per_batch * stride)
        try:
            yield from self._decrypt_batches(
                readbuf, per_batch, first, body_last, start, end, nowait
            )
        finally:
            buffers.give(readbuf)

    def _decrypt_batches(
        self,
        readbuf: bytearray,
        per_batch: int,
        first: int,
        body_last: int,
        start: int,
        end: int,
        nowait: bool,
    ) -> Iterator[memoryview]:
        chunk, stride = self.chunk_size, self.chunk_size + TAG_SIZE
        ahead_hint = ReadAhead(self._f, self._offset(body_last + 1))
        index = first
        while index <= body_last:
            count = min(per_batch, body_last + 1 - index)
            with memoryview(readbuf) as whole:
                sealed = whole[: count * stride]
                if not (nowait and read_cached(self._fd, sealed, self._offset(index))):
                    if nowait:
                        yield memoryview(b"")  # would wait for the disk: the consumer decides where
                    read_at(self._f, self._fd, sealed, self._offset(index))
                    ahead_hint.at(self._offset(index + count))  # not from memory: may wait
                buf = buffers.take(count * chunk)
                done, failure, piece = 0, None, None
                with memoryview(buf) as plain:
                    for k in range(count):
                        out = plain[k * chunk : (k + 1) * chunk]
                        try:
                            self._decrypt_into(
                                index + k, sealed[k * stride : (k + 1) * stride], out
                            )
                        except IntegrityError as exc:
                            out[:] = bytes(chunk)  # what a failed chunk left is never handed out
                            failure = exc
                            break
                        done = k + 1
                    base = index * chunk
                    lo, hi = max(start - base, 0), min(end - base, done * chunk)
                    if hi > lo:  # the authenticated chunks (all, or those before a damaged one)
                        piece = plain[lo:hi]
                    del out, sealed
            if piece is not None:
                yield piece
            del piece
            buffers.give(buf)  # taken again only once the consumer holds no view of it
            if failure is not None:
                raise failure
            index += count

    def _decrypt_into(self, index: int, sealed: memoryview, out: memoryview) -> None:
        final = index == self._chunks - 1
        try:
            self._aead.decrypt_into(
                _nonce(self.object_id, index), sealed, _aad(self.header, index, final), out
            )
        except InvalidTag:
            raise IntegrityError(f"sealed object: chunk {index} failed authentication") from None

    def _cut(self, plain: bytes, index: int, start: int, end: int) -> bytes:
        base = index * self.chunk_size
        lo, hi = max(start - base, 0), min(end - base, len(plain))
        return plain if lo == 0 and hi == len(plain) else plain[lo:hi]

    def read_all(self) -> Iterator[bytes]:
        """Yield the whole plaintext, chunk by chunk."""
        return self.read_range(0, self.size)

    def verify(self) -> SealResult:
        """Decrypt everything; return (sha256 hex, size, object id) to compare with the record."""
        sha = hashlib.sha256()
        for piece in self.read_all():
            sha.update(piece)
        return SealResult(sha.hexdigest(), self.size, self.object_id)
