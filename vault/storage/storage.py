"""Opening the vault's storage: ONE factory, and the sealing-aware read path.

``open_storage(cfg, db)`` is how every part of the service (API, acquisition, media jobs,
export, CLI) gets its ``BlobStore``, its ``ContentStore`` and its ``Sealer``; nothing else
constructs them, so whether an object is sealed is decided in one place:

* content whose SHA-256 has a row in ``object_keys`` is sealed: its live object is
  ``sealed/sha256/../<sha256>.<object id>`` (the row names the object id), read through
  ``vault.storage.sealing.SealedReader`` with the data key unwrapped by its KEK; any other content
  is the plain ``objects/sha256/../<sha256>`` as before. Both are addressed by the PLAINTEXT
  SHA-256.

Guarantees of ``SealingContentStore``:

* Reads of sealed objects return authenticated plaintext only: a flipped bit, a truncated or
  extended object, swapped chunks, a chunk or header from another object, a row bound to
  another object all raise ``IntegrityError`` (at open or at the first bad chunk), never wrong
  bytes. Range reads decrypt only the chunks they overlap.
* A reader racing a re-encryption or a key rotation sees a consistent object: the key row is
  re-read once if the plain object vanished (re-encrypted meanwhile) or the row's KEK was just
  retired (re-wrapped meanwhile).
* ``as_file()`` of a sealed object decrypts to a new 0600 file in a new 0700 folder made with
  ``mkdtemp`` (never a pre-existing or guessable path), both removed when the ``with`` ends.
  The folder is on ``/dev/shm`` (RAM) when it exists and has room for the object plus 256 MiB,
  so plaintext of classified footage does not land on the vault's disk; otherwise, or when
  ``keys.plaintext_scratch`` names a folder, there (a warning says so). tmpfs pages can be
  swapped: run with encrypted swap or none. Use ``file_of`` from async code: decrypting a
  large object is done in a worker thread.
* Unwrapping and opening run in a worker thread; the event loop never waits on key files,
  key commands or decryption of a whole object.
* ``open`` may use a key row it read less than ``KEY_CACHE_SECONDS`` ago (the Range requests
  of one playback open the same object again and again). With ``reuse`` (the HTTP content
  routes) it keeps objects of the file store open for the next request while that row stays
  the same (``vault.storage.opencache``: no worker thread, unwrap or key derivation for a kept
  object); without it (scrub, integrity reports, jobs) every open opens what is stored now.
  A key row that changed since is noticed as the race above is: the object it names is gone,
  or its KEK retired, and the row is read again. A stale row never yields other bytes: a
  sealed object only ever decrypts, authenticated, to the content it was sealed from, and a
  plain object is the content itself. The same holds of a kept object (its content address
  and, sealed, its authentication do not depend on when it was opened); access is decided by
  the caller before every open, never by what is kept.

The blob store is the file store (``store.backend = "file"``) or an S3 bucket with Object Lock
(``"s3"``, ``vault.storage.s3blobs``): ``open_objects`` connects to the bucket (refusing one
without Object Lock) and ``open_storage`` builds the same ``Storage`` over either. On S3 plain
objects are read with ranged GETs of their original version, sealed ones through a seekable view
of their ciphertext, and ``foreign_versions`` tells scrub what was written over an object.

``Storage.settle`` is called after an acquisition or a rendition is recorded; it removes the
copy that lost: a sealed object whose key row was not stored (the content was held already), or
a plain copy of content that is held sealed, so classified content is never left plain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol

from vault.config import KeysConfig, StoreConfig
from vault.db import Db
from vault.errors import ConfigError, IntegrityError, NotFound
from vault.storage.backend import ObjectStore, on_s3
from vault.storage.blobstore import BlobStore, StoredBlob
from vault.storage.content import PlainObject, Readable
from vault.storage.kek import CommandKekStore, FileKekStore, KekStore
from vault.storage.keyring import ObjectKey, unwrap
from vault.storage.keystore_db import key_for
from vault.storage.opencache import OpenEntry, OpenObjects
from vault.storage.sealing import SealedReader, sealed_size
from vault.storage.sealwrite import SealedBlob, Sealer

__all__ = [
    "PlaintextScratch",
    "SealedObject",
    "SealingContentStore",
    "Storage",
    "StorageConfig",
    "file_of",
    "open_kek_store",
    "open_objects",
    "open_plain",
    "open_storage",
]

log = logging.getLogger("evault.storage")

SHM = Path("/dev/shm")  # noqa: S108 - a RAM file system; private folders made with mkdtemp
SHM_HEADROOM = 256 << 20
KEY_CACHE_SECONDS = 2.0
"""How long ``SealingContentStore.open`` may use a key row it read (module docstring)."""
KEY_CACHE_SIZE = 4096


class PlaintextScratch:
    """Where decrypted temporary copies go (module docstring)."""

    def __init__(self, configured: str = "") -> None:
        self.configured = Path(configured) if configured else None

    def base_for(self, size: int) -> Path:
        """The folder to create a private scratch folder in, for ``size`` plaintext bytes."""
        if self.configured is not None:
            return self.configured
        try:
            st = os.statvfs(SHM)
            room = st.f_bavail * st.f_frsize >= size + SHM_HEADROOM
            if room and SHM.is_dir() and os.access(SHM, os.W_OK | os.X_OK):
                return SHM
        except OSError:
            pass
        fallback = Path(tempfile.gettempdir())
        log.warning(
            "plaintext scratch: /dev/shm is missing or too small for %d bytes; decrypting to "
            "%s (set keys.plaintext_scratch to a RAM or encrypted folder)",
            size,
            fallback,
        )
        return fallback

    @contextmanager
    def folder(self, size: int) -> Iterator[Path]:
        """A new private (0700) folder for ``size`` plaintext bytes, removed afterwards."""
        path = Path(tempfile.mkdtemp(prefix="evault-plain-", dir=self.base_for(size)))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


class SealedObject:
    """An open sealed object: ``Readable`` over ``SealedReader`` (one consumer at a time)."""

    def __init__(self, f: BinaryIO, reader: SealedReader, scratch: PlaintextScratch) -> None:
        self._f = f
        self._reader = reader
        self._scratch = scratch
        self.size = reader.size
        self._reads: list[Iterator[bytes] | Iterator[memoryview]] = []

    def read_range(self, start: int, end: int) -> Iterator[bytes]:
        reads = self._reader.read_range(start, end)
        self._reads.append(reads)
        return reads

    def read_views(
        self, start: int, end: int, *, pipelined: bool = True, nowait: bool = False
    ) -> Iterator[memoryview]:
        """As ``read_range``, about one I/O batch per piece (``SealedReader.read_views``)."""
        reads = self._reader.read_views(start, end, pipelined=pipelined, nowait=nowait)
        self._reads.append(reads)
        return reads

    @contextmanager
    def as_file(self) -> Iterator[Path]:
        with self._scratch.folder(self.size) as folder:
            path = folder / "plaintext"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                for piece in self._reader.read_all():
                    out.write(piece)
            yield path

    def close(self) -> None:
        """Close the file, after any read still open (a client gone mid-stream): no worker
        reading ahead (``vault.storage.pipeline``) touches the file once it is closed."""
        for reads in self._reads:
            reads.close()  # type: ignore[union-attr]
        self._reads.clear()
        self._f.close()


def open_plain(blobs: ObjectStore, sha256: str, scratch: PlaintextScratch) -> Readable:
    """The plain object ``sha256`` of either store (blocking). ``NotFound`` if absent."""
    if on_s3(blobs):
        return blobs.open_plain(sha256, scratch.base_for)
    if isinstance(blobs, BlobStore):
        return PlainObject(blobs, sha256)
    raise TypeError(f"not a blob store: {blobs!r}")


def _open_reader(
    blobs: ObjectStore, keks: KekStore, key: ObjectKey
) -> tuple[BinaryIO, SealedReader]:
    dek = unwrap(keks, key.wrapped, key.object_id, key.sha256)
    f = blobs.open_sealed(key.sha256, key.object_id)
    try:
        reader = SealedReader(dek, f)
        if reader.object_id != key.object_id:
            raise IntegrityError(f"sealed object {key.sha256} has a foreign header")
        return f, reader
    except BaseException:
        f.close()
        raise


def _open_sealed(
    blobs: ObjectStore, keks: KekStore, key: ObjectKey, scratch: PlaintextScratch
) -> SealedObject:
    return SealedObject(*_open_reader(blobs, keks, key), scratch)


def _open_entry(
    blobs: BlobStore, keks: KekStore, sha256: str, key: ObjectKey | None, opened: float
) -> OpenEntry:
    """An object of the file store opened to be kept (``vault.storage.opencache``)."""
    if key is None:
        return OpenEntry(None, blobs.open(sha256), blobs.path_of(sha256), None, opened)
    f, reader = _open_reader(blobs, keks, key)
    return OpenEntry(key, f, None, reader.state, opened)


def _reader_of(entry: OpenEntry, scratch: PlaintextScratch) -> Readable:
    """A ``Readable`` of a kept object, over a descriptor of its own."""
    f = entry.dup()
    try:
        if entry.state is None:
            assert entry.path is not None
            return PlainObject.over(entry.path, f)
        return SealedObject(f, SealedReader.reopen(entry.state, f), scratch)
    except BaseException:
        f.close()
        raise


class SealingContentStore:
    """The ``ContentStore`` of the service: sealed objects decrypted, plain ones as they are."""

    def __init__(
        self, blobs: ObjectStore, keks: KekStore, db: Db, scratch: PlaintextScratch
    ) -> None:
        self.blobs = blobs
        self.keks = keks
        self.db = db
        self.scratch = scratch
        self._keys: dict[str, tuple[ObjectKey | None, float]] = {}  # sha256 -> (row, read at)
        self.kept = OpenObjects()

    async def _recent_key(self, sha256: str) -> ObjectKey | None:
        """The key row as read at most ``KEY_CACHE_SECONDS`` ago (module docstring)."""
        now = time.monotonic()
        kept = self._keys.get(sha256)
        if kept is not None and now - kept[1] <= KEY_CACHE_SECONDS:
            return kept[0]
        key = await self.key(sha256)
        if len(self._keys) >= KEY_CACHE_SIZE:
            self._keys.clear()
        self._keys[sha256] = (key, now)
        return key

    async def key(self, sha256: str) -> ObjectKey | None:
        """The live sealed object's key row, or None when this content is stored plain."""
        return await key_for(self.db, sha256)

    async def is_sealed(self, sha256: str) -> bool:
        return await self.key(sha256) is not None

    async def open(self, sha256: str, *, reuse: bool = False) -> Readable:
        """The object, or ``NotFound``; see the module docstring for races. ``reuse``: through
        the objects kept open (file store; ``vault.storage.opencache``), for serving."""
        for attempt in (1, 2):
            key = await (self._recent_key(sha256) if attempt == 1 else self.key(sha256))
            try:
                if reuse and isinstance(self.blobs, BlobStore):
                    return await self._open_kept(sha256, key)
                if key is None and on_s3(self.blobs) and self.blobs.on_loop():
                    return await self.blobs.open_plain_here(sha256, self.scratch.base_for)
                if key is None:
                    return await asyncio.to_thread(open_plain, self.blobs, sha256, self.scratch)
                return await asyncio.to_thread(
                    _open_sealed, self.blobs, self.keks, key, self.scratch
                )
            except (NotFound, ConfigError):
                self._keys.pop(sha256, None)
                if attempt == 2 or (key is not None and await self.key(sha256) == key):
                    raise
        raise AssertionError("unreachable")

    async def _open_kept(self, sha256: str, key: ObjectKey | None) -> Readable:
        """A file-store object, through the objects kept open (``vault.storage.opencache``)."""
        assert isinstance(self.blobs, BlobStore)
        entry = self.kept.get(sha256, key)
        if entry is None:
            entry = await asyncio.to_thread(
                _open_entry, self.blobs, self.keks, sha256, key, self.kept.now()
            )
            try:
                obj = _reader_of(entry, self.scratch)
            except BaseException:
                entry.f.close()
                raise
            self.kept.keep(sha256, entry)
            return obj
        try:
            return _reader_of(entry, self.scratch)
        except IntegrityError:  # changed since it was opened: never used again
            self.kept.forget(sha256)
            raise

    def forget(self, sha256: str) -> None:
        """This process removed or re-sealed a stored form of ``sha256``: stop keeping it open."""
        self.kept.forget(sha256)

    async def foreign_versions(self, sha256: str) -> str | None:
        """On S3: what was written over the object's live key besides its original (a later
        version, a delete marker), which reads ignore and scrub reports; None on the file
        store (whose files scrub re-hashes in place)."""
        if not on_s3(self.blobs):
            return None
        key = await self.key(sha256)
        oid = None if key is None else key.object_id
        return await asyncio.to_thread(self.blobs.foreign_versions, sha256, oid)


@asynccontextmanager
async def file_of(obj: Readable) -> AsyncIterator[Path]:
    """``obj.as_file()`` entered and left in a worker thread, for async callers."""
    cm = obj.as_file()
    path = await asyncio.to_thread(cm.__enter__)
    try:
        yield path
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)


class StorageConfig(Protocol):
    """What the storage factory reads from the whole configuration."""

    @property
    def store(self) -> StoreConfig: ...
    @property
    def keys(self) -> KeysConfig: ...
    def path(self, p: Path) -> Path: ...


class Storage(NamedTuple):
    """The vault's storage: unpacks as ``blobs, content, sealer``."""

    blobs: ObjectStore
    content: SealingContentStore
    sealer: Sealer

    async def settle(self, blob: StoredBlob) -> None:
        """After ``blob`` was recorded (acquired, re-offered, or a rendition): remove the copy
        that lost (module docstring). Call only once the record committed."""
        live = await self.content.key(blob.sha256)
        self.content.forget(blob.sha256)
        if isinstance(blob, SealedBlob):
            if live is None or live.object_id != blob.key.object_id:
                await asyncio.to_thread(self.blobs.remove_sealed, blob.sha256, blob.key.object_id)
        elif live is not None:
            await asyncio.to_thread(self.blobs.remove_plain, blob.sha256)


def open_kek_store(keys: KeysConfig, path: PathResolver) -> KekStore:
    """The key command when configured, else the key folder (resolved against the data dir)."""
    if keys.kek_command:
        return CommandKekStore(keys.kek_command)
    return FileKekStore(path(keys.kek_dir))


class PathResolver(Protocol):
    def __call__(self, p: Path, /) -> Path: ...


@asynccontextmanager
async def open_objects(cfg: StorageConfig) -> AsyncIterator[ObjectStore | None]:
    """The S3 store when ``store.backend = "s3"`` (connected, its bucket checked: ``ConfigError``
    for a bucket without Object Lock, or a missing one unless ``store.s3.create_bucket``), bound
    to the running loop; None for the file store (``open_storage`` makes it)."""
    if cfg.store.backend != "s3":
        yield None
        return
    # Imported here: the S3 client is loaded by the processes that use it only (see on_s3).
    from vault.storage.s3blobs import S3Blobs
    from vault.storage.s3store import S3BlobStore

    tmp = cfg.path(cfg.store.root) / "tmp"
    async with S3BlobStore.open(cfg.store.s3, spool_dir=tmp) as s3:
        yield S3Blobs(
            s3,
            asyncio.get_running_loop(),
            tmp,
            retain_for=timedelta(days=cfg.store.s3.retain_days),
            hold_for=timedelta(days=cfg.store.s3.hold_days),
        )


def open_storage(cfg: StorageConfig, db: Db, objects: ObjectStore | None = None) -> Storage:
    """The one factory (module docstring). ``db``: a pool (or connection) for key rows;
    ``objects``: the store ``open_objects`` opened (required for ``store.backend = "s3"``).
    ``ConfigError`` for a chunk size that is not a power of two from 4 KiB to 4 MiB."""
    if cfg.store.backend == "s3" and objects is None:
        raise ConfigError('store.backend = "s3": the bucket was not opened (open_objects)')
    try:
        sealed_size(0, cfg.keys.chunk_size)
    except ValueError as exc:
        raise ConfigError(f"keys.chunk_size: {exc}") from None
    blobs = objects if objects is not None else BlobStore(cfg.path(cfg.store.root))
    keks = open_kek_store(cfg.keys, cfg.path)
    scratch = PlaintextScratch(cfg.keys.plaintext_scratch)
    sealer = Sealer(blobs, keks, cfg.keys.chunk_size)
    return Storage(blobs, SealingContentStore(blobs, keks, db, scratch), sealer)
