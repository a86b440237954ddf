"""Write-once, content-addressed blob store on an S3 bucket with Object Lock (Ceph RGW, MinIO,
AWS S3 and other WORM-capable S3 services); the ``s3`` backend beside ``vault.storage.blobstore``.

Layout (``vault.storage.s3names``): the object with plaintext SHA-256 ``h`` is the key
``objects/sha256/<h[:2]>/<h[2:4]>/<h>`` of a versioned bucket with Object Lock. Its *original*
is the oldest version under that key: a later version (someone overwrote the key) or a delete
marker never replaces it for reads, and ``verify`` reports them.

``S3BlobStore`` is made of one module per concern, each with its guarantees:

* ``vault.storage.s3read``: versions, the original, metadata, ranged reads, re-hashing;
* ``vault.storage.s3lock``: COMPLIANCE locks (set, extended, never shortened) and deletion
  once a lock has expired (``Conflict`` while it holds);
* ``vault.storage.s3write``: writes, durable (every part checked by the store, the bytes hash
  to the address, a HEAD confirmed size, version id and lock) and write-once, with bounded
  memory (``vault.storage.s3upload``);
* ``vault.storage.s3client`` / ``vault.storage.s3bucket``: the client, and the bucket's Object
  Lock checked at ``open``.

Errors: transport failures and unexpected S3 answers -> ``Unavailable`` (cause chained); a
missing object -> ``NotFound``; a hash that disagrees -> ``IntegrityError``; over the limit ->
``TooLarge``; a bucket without Object Lock -> ``ConfigError`` at ``open``.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from vault.config import S3StoreConfig
from vault.errors import ConfigError
from vault.storage.s3bucket import check_bucket
from vault.storage.s3client import S3Credentials, load_credentials, open_client
from vault.storage.s3names import S3Object, key_of, sealed_key_of
from vault.storage.s3write import S3Writer

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["S3BlobStore", "S3Object", "key_of", "sealed_key_of"]


class S3BlobStore(S3Writer):
    """The content-addressed store on one bucket. Safe to share between tasks; several
    processes and hosts may share one bucket. Make with ``S3BlobStore.open``."""

    def __init__(self, client: S3Client, bucket: str, *, part_size: int, spool_dir: Path) -> None:
        super().__init__(client, bucket)
        self.part_size = part_size
        self._spool = spool_dir
        self.default_lock = None

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

    async def check_bucket(self, *, create: bool = False, default_days: int = 1) -> None:
        """The bucket must exist with Object Lock enabled (``vault.storage.s3bucket``); its
        COMPLIANCE default retention, if any, is remembered (``default_lock``)."""
        self.default_lock = await check_bucket(
            self._s3, self.bucket, create=create, default_days=default_days
        )
