"""Acquisition: take one dock file (or an HTTP push) into the vault, in the order that loses
nothing (DESIGN §4).

For a dock file, ``Acquirer.acquire_path``:

1. opens the file's folder from the dock root without following links (``dockfs``), ``lstat``s
   the name; a file with a valid receipt matching its current state is not taken again;
2. refuses (quarantines) a symlink, a hard link, anything not a regular file, a disallowed
   extension, a file over the size limit, a file it may not read;
3. opens it ``O_NOFOLLOW | O_NONBLOCK``, checks with ``fstat`` it is the regular file just seen,
   and copies + hashes it in one pass into the blob store (durable when it returns);
4. re-checks size, mtime, ctime, inode and device through the fd and the path: any change
   returns ``Deferred`` and the file is tried again later;
5. appends the ``acquired`` entry (content not held yet) or the ``reoffered`` entry (content
   held: never stored twice) with the ``evidence``/``evidence_offers`` rows in the same
   transaction, and waits for a signed checkpoint that covers it;
6. writes the receipt; 7. only then releases the source per the dock's policy.

Steps 5 and 6-7 live in ``ingest.record`` and ``ingest.release``; refusals in
``ingest.quarantine``; link-safe file-system access in ``ingest.dockfs``.

Guarantees: a crash or error at any step leaves the source in its dock, or the evidence fully
recorded (entry + rows + durable object); a ``move``/``delete`` release happens only after the
receipt is durable and only if the source is still exactly the file recorded. Exactly one
``acquired`` entry and one evidence row exist per content (a lost race on the evidence row's
unique hash becomes a re-offer). Sensitive fields (file name, dock, device, officer, recording
time) go into entries only as commitments.

Decisions: a zero-byte file is acquired (an empty recording is evidence that a recording ended
empty); names are never a reason to refuse. A blob stored for a source that then changed, or
whose ledger append failed, is left in the store unreferenced: removing it could race with a
concurrent acquisition of the same content that already found it stored. Such orphans are
harmless (content-addressed, never served without an evidence row) and left for a collector.
Parsing media is not done here: bytes that fail to parse are still the evidence.

Encryption at rest: when the label on arrival (the dock's, raised by a sidecar label:
``ingest.record.arrival_label``) needs encryption, or a sidecar label is unusable, step 3 seals
instead of copying (``vault.storage.sealwrite.Sealer``): the content is encrypted before its first
byte is written to the vault, so plaintext never touches the vault's disk. Without a ``storage``
such a file is not taken (deferred; a push is refused) rather than stored plain. After recording,
``Storage.settle`` removes the copy that lost (a sealed one for content already held, or a plain
one for content held sealed); a plain one its S3 Object Lock keeps is recorded and deleted once
the lock expired (``vault.storage.superseded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from ingest import metrics
from ingest.config import DockConfig
from ingest.dockfs import DockPath, open_parent
from ingest.naming import NameParser
from ingest.quarantine import Quarantine, Quarantined
from ingest.receipts import Receipt, SourceState, matching_receipt
from ingest.record import Copied, arrival_label, read_sidecar, record_offer
from ingest.release import release_source
from vault.db import is_outage
from vault.errors import (
    BadRequest,
    ConfigError,
    EvaultError,
    IntegrityError,
    NotFound,
    TooLarge,
    Unavailable,
)
from vault.ledger import Ledger
from vault.policy.labels import Label
from vault.storage.backend import ObjectStore
from vault.storage.blobstore import StoredBlob
from vault.storage.sealwrite import SealedBlob, Sealer
from vault.storage.storage import Storage
from vault.storage.superseded import keep_leftover
from verify.note import Verifier

__all__ = ["Acquirer", "Deferred", "Outcome"]

log = logging.getLogger("evault.ingest")

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
# What a failed ledger step can raise; each leaves the source in its dock (Deferred).
_LEDGER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Deferred:
    """Not taken now; try again later. ``reason`` is a short code (a metrics label):
    gone, directory, changed, link-race, open, store, ledger, receipt."""

    reason: str
    detail: str = ""


Outcome = Receipt | Quarantined | Deferred


def _changed(dp: DockPath, fd: int, state: SourceState, blob: StoredBlob) -> Deferred | None:
    """Step 4: ``Deferred`` if the source changed while it was copied, else None."""
    try:
        now = dp.lstat()
    except FileNotFoundError:
        return Deferred("changed", "removed while copied")
    if SourceState.of(os.fstat(fd)) != state or SourceState.of(now) != state:
        return Deferred("changed", "changed while copied")
    if blob.size != state.size:
        return Deferred("changed", "size differs from what was copied")
    return None


def _verdict(refuse: _Refuse | None) -> tuple[str, str] | None:
    return None if refuse is None else (refuse.reason, refuse.detail)


@dataclass(frozen=True, slots=True)
class _Refuse:
    reason: str
    detail: str
    st: os.stat_result | None = None  # what was judged (the quarantine checks it moved that)


class Acquirer:
    """Takes dock files and pushes into the vault. One instance per process; safe to call
    concurrently for different paths (the watcher makes calls single-flight per path).

    ``docks`` must have absolute paths (resolve them against the data directory first)."""

    def __init__(
        self,
        store: ObjectStore,
        ledger: Ledger,
        quarantine: Quarantine,
        docks: Sequence[DockConfig],
        *,
        verifier: Verifier | None = None,
        storage: Storage | None = None,
    ) -> None:
        """``storage`` (``vault.storage.storage.open_storage``): needed to take classified
        footage."""
        self.store = store
        self.storage = storage
        self.ledger = ledger
        self.quarantine = quarantine
        self.docks: Mapping[str, DockConfig] = {d.id: d for d in docks}
        self._verifier = verifier
        self._parsers = {d.id: NameParser(d.pattern, tz=d.timezone) for d in docks}
        self._labels = {d.id: Label.parse(d.label) for d in docks}

    def dock(self, dock_id: str) -> DockConfig:
        try:
            return self.docks[dock_id]
        except KeyError:
            raise NotFound(f"no dock {dock_id!r} is configured") from None

    # -- dock files ---------------------------------------------------------------------------

    async def acquire_path(self, dock: DockConfig, path: str | bytes | os.PathLike[str]) -> Outcome:
        """Acquire the file at ``path`` for ``dock`` (see the module docstring). A file outside
        the dock folder (``evault ingest``) is taken the same way, but never moved or deleted."""
        started = time.perf_counter()
        try:
            dp = await asyncio.to_thread(open_parent, dock.path, path)
        except FileNotFoundError:
            return self._deferred(dock, Deferred("gone"))
        except OSError as exc:
            # ELOOP/ENOTDIR: a folder on the way is (now) a link; the link itself is found and
            # quarantined by the scan. Never followed.
            return self._deferred(dock, Deferred("link-race", os.strerror(exc.errno or 0)))
        with dp:
            policy = dock.release if dp.inside else "keep"
            step = await asyncio.to_thread(self._copy, dock, dp, policy)
            if isinstance(step, Deferred):
                return self._deferred(dock, step)
            if isinstance(step, _Refuse):
                return await self._refuse(dock, dp, step)
            if isinstance(step, Receipt):
                if policy == "keep":
                    return step  # taken before and kept: nothing to do
                receipt = step  # recorded before (a crash stopped the release): finish it
            else:
                try:
                    receipt = await self._record(dock, dp.rel, step, via="dock")
                except (*_LEDGER_ERRORS, EvaultError, RuntimeError) as exc:
                    # Nothing released; the stored blob stays (module docstring). RuntimeError:
                    # the ledger was closed under us (shutdown).
                    return self._deferred(dock, Deferred("ledger", str(exc)))
            try:
                await asyncio.to_thread(release_source, dp, policy, receipt)
            except OSError as exc:
                if policy != "keep":
                    return self._deferred(dock, Deferred("receipt", os.strerror(exc.errno or 0)))
                metrics.FAILURES.labels(dock.id, "receipt").inc()
                log.warning("dock %s: receipt not written: %s", dock.id, exc)
        metrics.ACQUIRE_SECONDS.labels(dock.id).observe(time.perf_counter() - started)
        return receipt

    def _deferred(self, dock: DockConfig, deferred: Deferred) -> Deferred:
        metrics.FAILURES.labels(dock.id, deferred.reason).inc()
        return deferred

    async def _refuse(self, dock: DockConfig, dp: DockPath, refuse: _Refuse) -> Outcome:
        try:
            result = await self.quarantine.put(
                dock.id,
                dp,
                refuse.reason,
                refuse.detail,
                move=dp.inside,
                judged=refuse.st,
                judge=lambda st: _verdict(self._refusal(dock, dp.name, st)),
            )
        except (*_LEDGER_ERRORS, EvaultError, RuntimeError) as exc:
            # Moved with a pending reason file at worst: Quarantine.recover records it.
            return self._deferred(dock, Deferred("ledger", f"quarantine: {exc}"))
        metrics.QUARANTINED_FILES.labels(dock.id, result.reason).inc()
        log.warning("dock %s: quarantined (%s): %s", dock.id, result.reason, refuse.detail)
        return result

    def _copy(
        self, dock: DockConfig, dp: DockPath, policy: str
    ) -> Copied | _Refuse | Deferred | Receipt:
        """Steps 1-4 (blocking; runs in a worker thread)."""
        try:
            st = dp.lstat()
        except FileNotFoundError:
            return Deferred("gone")
        if stat.S_ISDIR(st.st_mode):
            return Deferred("directory", "a folder, not a file")
        if policy != "move" and stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            done = matching_receipt(dp.fd, dp.name, st, self._verifier)
            if done is not None:
                return done
        refusal = self._refusal(dock, dp.name, st)
        if refusal is not None:
            return refusal
        try:
            fd = os.open(dp.name, _OPEN_FLAGS, dir_fd=dp.fd)
        except FileNotFoundError:
            return Deferred("gone")
        except PermissionError:
            return _Refuse("unreadable", "permission denied", st)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # replaced by a symlink since the lstat
                try:
                    return self._refusal(dock, dp.name, dp.lstat()) or Deferred("changed")
                except FileNotFoundError:
                    return Deferred("gone")
            return Deferred("open", os.strerror(exc.errno or 0))
        try:
            return self._copy_open(dock, dp, fd, st)
        finally:
            os.close(fd)

    def _copy_open(
        self, dock: DockConfig, dp: DockPath, fd: int, seen: os.stat_result
    ) -> Copied | _Refuse | Deferred:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            return _Refuse("not-regular", "not a regular file when opened", before)
        if (before.st_dev, before.st_ino) != (seen.st_dev, seen.st_ino):
            return Deferred("changed", "replaced between look and open")
        refusal = self._refusal(dock, dp.name, before)
        if refusal is not None:
            return refusal
        sidecar, sidecar_error = read_sidecar(dp)
        try:
            if self._must_seal(dock, sidecar):
                blob: StoredBlob = self._sealer().seal_file(fd, max_bytes=dock.max_bytes)
            else:
                blob = self.store.ingest_file(fd, max_bytes=dock.max_bytes)
        except TooLarge:
            return Deferred("changed", "grew past the size limit while copied")
        except (Unavailable, ConfigError, IntegrityError) as exc:
            return Deferred("store", exc.detail)
        state = SourceState.of(before)
        changed = _changed(dp, fd, state, blob)
        if changed is not None:
            if isinstance(blob, SealedBlob):  # its own unique name: nobody else can use it
                with contextlib.suppress(Unavailable):
                    self.store.remove_sealed(blob.sha256, blob.key.object_id)
            return changed
        return Copied(blob, state, sidecar, sidecar_error)

    def _refusal(self, dock: DockConfig, name: bytes, st: os.stat_result) -> _Refuse | None:
        if stat.S_ISLNK(st.st_mode):
            return _Refuse("symlink", "a symbolic link (never followed)", st)
        if not stat.S_ISREG(st.st_mode):
            return _Refuse(
                "not-regular", f"not a regular file (mode {stat.filemode(st.st_mode)})", st
            )
        if st.st_nlink != 1:
            return _Refuse("hardlink", f"a file with {st.st_nlink} names (never followed)", st)
        ext = self._parsers[dock.id].parse(name).ext
        if ext not in dock.extensions:
            return _Refuse("extension", f"extension {ext!r} is not allowed in this dock", st)
        if st.st_size > dock.max_bytes:
            return _Refuse("too-large", f"{st.st_size} bytes, over the {dock.max_bytes} limit", st)
        return None

    # -- HTTP pushes --------------------------------------------------------------------------

    async def acquire_stream(
        self,
        dock_id: str,
        name: str,
        chunks: AsyncIterator[bytes],
        expected_sha256: str | None,
        max_bytes: int | None,
        sidecar: Mapping[str, Any] | None = None,
    ) -> Receipt:
        """Store an upload for ``dock_id`` under the file name ``name`` and record it exactly as
        a dock file (steps 5-6; the receipt is returned, not written). ``NotFound`` for an
        unknown dock, ``BadRequest`` for a disallowed extension (nothing read), ``TooLarge``
        past ``min(max_bytes, dock.max_bytes)``, ``IntegrityError`` on a hash mismatch,
        ``Unavailable`` if the store or ledger fails (the upload may be retried)."""
        dock = self.dock(dock_id)
        bname = os.fsencode(name).rpartition(b"/")[2]
        if b"\x00" in bname:  # no file system or database holds it: retrying cannot help
            raise BadRequest("file name: a NUL character can never be stored")
        ext = self._parsers[dock.id].parse(bname).ext
        if not bname or ext not in dock.extensions:
            raise BadRequest(f"extension {ext!r} is not allowed for dock {dock_id}")
        limit = dock.max_bytes if max_bytes is None else min(max_bytes, dock.max_bytes)
        started = time.perf_counter()
        if self._must_seal(dock, sidecar):
            blob: StoredBlob = await self._sealer().seal_stream(
                chunks, expected_sha256=expected_sha256, max_bytes=limit
            )
        else:
            blob = await self.store.ingest_stream(
                chunks, expected_sha256=expected_sha256, max_bytes=limit
            )
        copied = Copied(blob, None, dict(sidecar or {}), None)
        try:
            receipt = await self._record(dock, bname, copied, via="push")
        except Exception as exc:
            if not is_outage(exc):  # a refused record is not an outage: retrying cannot help
                raise
            metrics.FAILURES.labels(dock.id, "ledger").inc()
            raise Unavailable("ledger: the upload was stored but not recorded; retry") from exc
        metrics.ACQUIRE_SECONDS.labels(dock.id).observe(time.perf_counter() - started)
        return receipt

    # -- recording ----------------------------------------------------------------------------

    def _must_seal(self, dock: DockConfig, sidecar: Mapping[str, Any] | None) -> bool:
        label, error = arrival_label(
            self._labels[dock.id], None if sidecar is None else dict(sidecar)
        )
        return label.needs_encryption or error is not None

    def _sealer(self) -> Sealer:
        if self.storage is None:
            raise Unavailable("classified footage: no key store is configured; not taken")
        return self.storage.sealer

    async def _record(self, dock: DockConfig, rel: bytes, copied: Copied, *, via: str) -> Receipt:
        parser, label = self._parsers[dock.id], self._labels[dock.id]
        receipt = await record_offer(self.ledger, dock, parser, label, rel, copied, via=via)
        if self.storage is not None:
            try:
                await self.storage.settle(copied.blob)
                if not isinstance(copied.blob, SealedBlob):  # a plain copy a lock kept
                    await keep_leftover(self.storage, self.ledger, copied.blob.sha256)
            except (*_LEDGER_ERRORS, EvaultError) as exc:  # recorded: a leftover copy at worst
                log.warning(
                    "dock %s: leftover copy of %s not removed: %s", dock.id, receipt.sha256, exc
                )
        return receipt
