"""``ObjectStore``: what the service's parts call on the blob store that ``open_storage`` made,
the file store (``vault.storage.blobstore.BlobStore``) or the S3 store
(``vault.storage.s3blobs.S3Blobs``). Blocking methods run in worker threads; ``ingest_stream`` is
a coroutine. Objects are addressed by their plaintext SHA-256 (sealed ones also by object id).

``on_s3`` tells the S3 store apart without importing it: its client (botocore, aiohttp) costs a
fifth of a second at every start of a command that never meets S3.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, TypeGuard

from vault.storage.blobcopy import TempFile
from vault.storage.blobstore import StoredBlob

if TYPE_CHECKING:
    from vault.storage.s3blobs import S3Blobs

__all__ = ["ObjectStore", "on_s3"]


def on_s3(blobs: object) -> TypeGuard[S3Blobs]:
    """Whether ``blobs`` is the S3 store. An ``S3Blobs`` exists only once its module has been
    imported (by ``vault.storage.storage.open_objects``); before that nothing is one."""
    module = sys.modules.get("vault.storage.s3blobs")
    return module is not None and isinstance(blobs, module.S3Blobs)


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
