"""The decryption floor of sealed Range streaming: the AES-256-GCM decryption of the very
object the service streams, chunk by chunk as stored (``vault.storage.sealing``'s format:
nonce, associated data and tag per chunk), with ``cryptography`` in one thread, from memory.
No server can send sealed content for less CPU than this plus what sending the plaintext costs.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

from api.config import Config
from api.runtime import open_runtime
from vault.storage.keyring import unwrap
from vault.storage.sealing import HEADER_SIZE, TAG_SIZE, SealedReader

GIB = 1 << 30


async def sealed_object(cfg: Config, plaintext_copy: str) -> tuple[bytes, Path]:
    """The data key and the sealed file of the object whose plaintext is ``plaintext_copy``."""
    sha = await asyncio.to_thread(_digest, Path(plaintext_copy))
    async with open_runtime(cfg) as rt:
        content = rt.storage.content
        key = await content.key(sha)
        if key is None:
            raise RuntimeError("the sealed object has no key row")
        dek = await asyncio.to_thread(unwrap, content.keks, key.wrapped, key.object_id, sha)
        path: Path = rt.storage.blobs.sealed_path(sha, key.object_id)  # type: ignore[attr-defined]
    return dek, path


def _digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def decrypt_floor(dek: bytes, path: Path, passes: int) -> dict[str, float]:
    """``passes`` decryptions of every chunk of the sealed file at ``path`` (read into memory
    first), each into one reused buffer: {"rate": plaintext bytes/s, "cpu": CPU-s per GiB}."""
    with path.open("rb") as f:
        state = SealedReader(dek, f).state  # the header and sizes, authenticated; the cipher
        f.seek(0)
        raw = memoryview(f.read())
    chunk, stride = state.chunk_size, state.chunk_size + TAG_SIZE
    out = memoryview(bytearray(chunk))
    aead, oid, header = state.aead, state.object_id[:8], state.header
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(passes):
        for i in range(state.chunks):
            lo = HEADER_SIZE + i * stride
            sealed = raw[lo : min(lo + stride, len(raw))]
            final = i == state.chunks - 1
            aad = header + i.to_bytes(8, "big") + (b"\1" if final else b"\0")
            aead.decrypt_into(
                oid + i.to_bytes(4, "big"), sealed, aad, out[: len(sealed) - TAG_SIZE]
            )
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    size = passes * state.size
    return {"rate": size / wall, "cpu": cpu / (size / GIB)}
