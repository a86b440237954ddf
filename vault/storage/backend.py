"""``ObjectStore``: what the service's parts call on the blob store that ``open_storage`` made,
the file store (``vault.storage.blobstore.BlobStore``) or the S3 store
(``vault.storage.s3blobs.S3Blobs``). Blocking methods run in worker threads; ``ingest_stream`` is
a coroutine. Objects are addressed by their plaintext SHA-256 (sealed ones also by object id).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

from vault.storage.blobcopy import TempFile
from vault.storage.blobstore import StoredBlob

__all__ = ["ObjectStore"]


class ObjectStore(Protocol):
    """The blob store surface of the service (module docstring)."""

    @property
    def tmp_dir(self) -> Path:
        """A local folder for temporaries (sealed ciphertext before it is committed)."""
        ...

    def ingest_file(self, fd: int, *, max_bytes: int | None = None) -> StoredBlob: ...

    async def ingest_stream(
        self, chunks: AsyncIterator[bytes], *, expected_sha256: str | None, max_bytes: int | None
    ) -> StoredBlob: ...

    def commit_sealed(self, tmp: TempFile, sha256: str, object_id: bytes) -> Path: ...

    def exists(self, sha256: str) -> bool: ...

    def verify(self, sha256: str) -> bool: ...

    def open_sealed(self, sha256: str, object_id: bytes) -> BinaryIO: ...

    def remove(self, sha256: str) -> bool: ...

    def remove_plain(self, sha256: str) -> bool: ...

    def remove_sealed(self, sha256: str, object_id: bytes) -> bool: ...

    def sweep_tmp(self) -> int: ...
