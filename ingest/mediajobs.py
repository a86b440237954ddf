"""Media jobs: probe, proxy, poster and fingerprint for every acquisition; clips on request.

Guarantees:
- The original is never touched: ffmpeg reads the stored object, renditions go to a private
  scratch folder, are validated (by the render functions), stored write-once by content, and
  recorded in a ``derived`` ledger entry (input and output hashes, rendition kind, ffmpeg
  version, the exact arguments) in the same transaction as their ``renditions`` row.
- Idempotent under retries and worker deaths: a rendition already recorded is not made again,
  and the unique ``(evidence, kind)`` index makes a concurrent second record roll back whole.
- Renditions of evidence that is sealed, or whose effective label needs encryption, are sealed
  too (``vault.storage.sealwrite``; a rendition's label is at least its source's), their key row
  stored in the same transaction as the rendition row; ffmpeg then works in a private scratch
  folder on /dev/shm (``vault.storage.storage.PlaintextScratch``), never on the vault's disk. A
  rendition stored plain while its source's label rose meanwhile gets re-encryption queued in that
  transaction.
- Which renditions a file gets is decided by ``ingest.media.plan.plan_renditions`` from its probe
  (audio gets no poster). Those not recorded yet are made from one decode of the original
  (``ingest.media.onepass``), each checked and recorded on its own: one that fails does not stop
  the others. The evidence ends ``ready`` (every planned rendition made), ``partial`` (some made;
  ``media_reason`` lists each failed rendition with its own reason, ``kind: reason`` joined by
  ``; ``) or ``unprocessable`` (the probe failed, or every rendition did; the reason says which;
  logged as a warning and counted in ``evault_dock_unprocessable_total{dock,reason}``, reason
  ``probe`` or ``renditions``). The original is kept whatever happens and the job completes (it
  never blocks the queue); ``media.ready`` is emitted for ready and partial (the latter naming
  what failed). ffmpeg itself missing or broken is a retryable failure instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncpg
from prometheus_client import Counter, Histogram

from ingest.config import MediaConfig
from ingest.media import (
    Fingerprint,
    Limits,
    MediaError,
    ProbeInfo,
    Rendition,
    Tools,
    make_clip,
    make_fingerprint,
    make_poster,
    make_proxy,
    make_renditions,
    probe,
)
from ingest.media.plan import plan_renditions
from ingest.media.probe import probe_limits
from ingest.metrics import DOCK_UNPROCESSABLE
from vault import evidence as evrows
from vault.access import decisions
from vault.access.filters import label_of
from vault.db import Conn
from vault.errors import EvaultError
from vault.events import emit
from vault.jobs import Job, JobFailed
from vault.ledger import Ledger, make_entry
from vault.ops import objectlock
from vault.storage.backend import ObjectStore
from vault.storage.blobstore import BlobStore, StoredBlob
from vault.storage.content import ContentStore, PlainContentStore
from vault.storage.keystore_db import insert_key
from vault.storage.reseal import enqueue_seal, evidence_label
from vault.storage.sealwrite import SealedBlob
from vault.storage.storage import Storage, file_of

log = logging.getLogger("evault.media")

PROCESS = "media.process"
CLIP = "media.clip"

MEDIA_JOBS = Counter(
    "evault_media_jobs", "Media jobs finished, by kind and outcome.", ["kind", "outcome"]
)
RENDITION_FAILURES = Counter(
    "evault_media_rendition_failures", "Renditions that could not be made, by kind.", ["kind"]
)
MEDIA_SECONDS = Histogram(
    "evault_media_render_seconds",
    "Time to make one rendition, by kind.",
    ["kind"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)


@dataclass(frozen=True)
class _Source:
    evidence_id: uuid.UUID
    sha256: str
    label_level: int
    label_caveats: list[str]
    protect: bool = False  # renditions are sealed and made on the plaintext scratch
    ledger_idx: int = 0  # the original's ``acquired`` entry


class MediaJobs:
    """Job handlers for media work; see the module docstring."""

    def __init__(
        self,
        ledger: Ledger,
        store: ObjectStore,
        cfg: MediaConfig,
        scratch: Path,
        *,
        storage: Storage | None = None,
    ) -> None:
        """``storage`` (``vault.storage.storage.open_storage``): sealing-aware reads and writes;
        without it, every object is read and written plain (``store``)."""
        self._ledger = ledger
        self._store = store
        self._storage = storage
        if storage is None and not isinstance(store, BlobStore):
            raise TypeError("media jobs on the S3 store need its storage (open_storage)")
        self._content: ContentStore = (
            storage.content if storage is not None else PlainContentStore(cast(BlobStore, store))
        )
        self._cfg = cfg
        self._scratch = scratch
        self._tools = Tools(ffmpeg=cfg.ffmpeg, ffprobe=cfg.ffprobe)
        self._limits = media_limits(cfg)
        self._probe_limits = probe_limits(self._limits)

    def handlers(self) -> dict[str, Any]:
        return {PROCESS: self.process, CLIP: self.clip}

    async def _source(self, evidence_id: str) -> _Source | None:
        row = await evrows.load_evidence(
            self._ledger.pool, self._ledger.mac, evidence_id, where="media job"
        )
        if row is None or row.disposed_at is not None:
            return None
        protect = False
        if self._storage is not None:
            label = await evidence_label(self._ledger.pool, row.id, mac=self._ledger.mac)
            protect = await self._storage.content.is_sealed(row.sha256) or bool(
                label and label.needs_encryption
            )
        src = _Source(row.id, row.sha256, row.label_level, list(row.label_caveats))
        return dataclasses.replace(src, protect=protect, ledger_idx=row.ledger_idx)

    async def _set_status(self, eid: uuid.UUID, status: str, reason: str | None = None) -> None:
        await evrows.set_media_status(self._ledger.pool, eid, status, reason)

    async def _unprocessable(self, src: _Source, code: str, reason: str) -> None:
        """Mark ``src`` unprocessable, count it per dock (``code``: probe or renditions) and
        warn: the original is kept, but nobody can play it until someone looks."""
        dock = await evrows.mark_unprocessable(self._ledger.pool, src.evidence_id, reason)
        MEDIA_JOBS.labels(PROCESS, "unprocessable").inc()
        DOCK_UNPROCESSABLE.labels(dock or "none", code).inc()
        log.warning(
            "dock %s: evidence %s is unprocessable (%s): %s; the original is kept",
            dock,
            src.evidence_id,
            code,
            reason,
        )

    async def process(self, job: Job) -> Mapping[str, Any]:
        """Probe, then make whichever of proxy, poster and fingerprint are not recorded yet."""
        src = await self._source(str(job.payload["evidence_id"]))
        if src is None:
            return {"status": "gone"}
        obj = await self._content.open(src.sha256)
        try:
            async with file_of(obj) as path:
                return await self._process(src, path)
        finally:
            obj.close()

    async def _process(self, src: _Source, path: Path) -> Mapping[str, Any]:
        try:
            info = await probe(path, tools=self._tools, limits=self._probe_limits)
        except MediaError as exc:
            await self._unprocessable(src, "probe", exc.reason)
            return {"status": "unprocessable", "reason": exc.reason}
        await evrows.set_probe(self._ledger.pool, src.evidence_id, _json(info.to_json()))
        made: list[str] = []
        todo: list[str] = []
        for kind in plan_renditions(info):
            (made if await self._recorded(src.evidence_id, kind) else todo).append(kind)
        failed: dict[str, str] = {}
        if len(todo) >= 2:  # one decode for all of them
            done, why = await self._render_together(src, path, info, todo)
            made += done
            failed.update(why)
            todo = []
        for kind in todo:
            try:
                await self._render(src, path, info, kind)
            except MediaError as exc:  # this rendition only: the others are still made
                failed[kind] = exc.reason
                RENDITION_FAILURES.labels(kind).inc()
                continue
            made.append(kind)
        return await self._finish(src, made, failed)

    async def _finish(
        self, src: _Source, made: list[str], failed: dict[str, str]
    ) -> Mapping[str, Any]:
        """Record the outcome: ready, partial (some renditions failed) or unprocessable."""
        reason = "; ".join(f"{kind}: {why}" for kind, why in failed.items())
        if failed and not made:
            await self._unprocessable(src, "renditions", reason)
            return {"status": "unprocessable", "reason": reason, "made": made, "failed": failed}
        status = "partial" if failed else "ready"
        async with self._ledger.pool.acquire() as conn, conn.transaction():
            await evrows.set_media_status(conn, src.evidence_id, status, reason or None)
            payload: dict[str, Any] = {"evidence_id": str(src.evidence_id)}
            if failed:
                payload.update(status=status, made=made, failed=sorted(failed))
            await emit(conn, "media.ready", payload)
        MEDIA_JOBS.labels(PROCESS, status).inc()
        out: dict[str, Any] = {"status": status, "made": made}
        if failed:
            out.update(reason=reason, failed=failed)
        return out

    async def clip(self, job: Job) -> Mapping[str, Any]:
        """A frame-exact clip ``[start_ms, end_ms)`` of the original, recorded once per job."""
        src = await self._source(str(job.payload["evidence_id"]))
        if src is None:
            raise JobFailed("the evidence does not exist or was disposed of")
        start, end = int(job.payload["start_ms"]), int(job.payload["end_ms"])
        existing = await evrows.clip_of_job(self._ledger.pool, src.evidence_id, str(job.id))
        if existing is not None:
            return {"rendition_id": str(existing)}
        obj = await self._content.open(src.sha256)
        try:
            async with file_of(obj) as path:
                return await self._clip(job, src, path, start, end)
        finally:
            obj.close()

    async def _clip(
        self, job: Job, src: _Source, path: Path, start: int, end: int
    ) -> Mapping[str, Any]:
        try:
            info = await probe(path, tools=self._tools, limits=self._probe_limits)
            if info.duration_ms is not None and not 0 <= start < end <= info.duration_ms:
                raise JobFailed(
                    f"clip {start}-{end} ms is outside the recording (0-{info.duration_ms} ms)"
                )
            params = {"start_ms": start, "end_ms": end, "job": str(job.id)}
            rid = await self._render(src, path, info, "clip", params)
        except MediaError as exc:
            raise JobFailed(f"clip: {exc.reason}") from exc
        MEDIA_JOBS.labels(CLIP, "ready").inc()
        return {"rendition_id": rid}

    async def _recorded(self, eid: uuid.UUID, kind: str) -> bool:
        return await evrows.has_rendition(self._ledger.pool, eid, kind)

    async def _render(
        self,
        src: _Source,
        path: Path,
        info: ProbeInfo,
        kind: str,
        params: dict[str, Any] | None = None,
    ) -> str | None:
        work = await self._workdir(src, kind)
        started = time.perf_counter()
        try:
            extra: dict[str, Any] = {}
            lim, tools = self._limits, self._tools  # wall limits: scaled to the duration
            if kind == "proxy":
                h = self._cfg.proxy_height
                r = await make_proxy(path, work, info, max_height=h, tools=tools, limits=lim)
            elif kind == "poster":
                r = await make_poster(path, work, info, tools=tools, limits=lim)
            elif kind == "fingerprint":
                wall = lim.with_wall(60.0 + 4.0 * (info.duration_ms or 0) / 1000)
                seg = self._cfg.segment_ms
                r, fp = await make_fingerprint(
                    path, work, info, segment_ms=seg, tools=tools, limits=wall
                )
                extra = _fingerprint_fields(fp)
            else:
                assert params is not None
                a, b = params["start_ms"], params["end_ms"]
                r = await make_clip(path, work, a, b, info, tools=tools, limits=lim)
                extra = {"start_ms": a, "end_ms": b}
            rid = await self._record(src, path, kind, r, extra, params or {})
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        MEDIA_SECONDS.labels(kind).observe(time.perf_counter() - started)
        return rid

    async def _workdir(self, src: _Source, kind: str) -> Path:
        """A fresh private folder for making one rendition (on the plaintext scratch for a
        protected source); the caller removes it."""
        scratch = self._scratch
        if src.protect and self._storage is not None:
            scratch = self._storage.content.scratch.base_for(0)
        made = await asyncio.to_thread(tempfile.mkdtemp, prefix=f"evault-{kind}-", dir=scratch)
        return Path(made)

    async def _render_together(
        self, src: _Source, path: Path, info: ProbeInfo, kinds: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        """Make ``kinds`` from one decode (``ingest.media.onepass``) and record each that was
        made; returns (made, failed with reasons), in ``kinds`` order."""
        work = await self._workdir(src, "renditions")
        started = time.perf_counter()
        made: list[str] = []
        failed: dict[str, str] = {}
        try:
            out = await make_renditions(
                path,
                work,
                info,
                kinds=kinds,
                max_height=self._cfg.proxy_height,
                segment_ms=self._cfg.segment_ms,
                tools=self._tools,
                limits=self._limits,
            )
            for kind in kinds:
                if kind in out.failed or kind not in out.made:
                    failed[kind] = out.failed[kind].reason if kind in out.failed else "not made"
                    RENDITION_FAILURES.labels(kind).inc()
                    continue
                extra: dict[str, Any] = {}
                if kind == "fingerprint" and out.fingerprint is not None:
                    extra = _fingerprint_fields(out.fingerprint)
                await self._record(src, path, kind, out.made[kind], extra, {})
                made.append(kind)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        MEDIA_SECONDS.labels("shared" if out.shared else "separate").observe(
            time.perf_counter() - started
        )
        return made, failed

    async def _record(
        self,
        src: _Source,
        path: Path,
        kind: str,
        r: Rendition,
        extra: dict[str, Any],
        params: dict[str, Any],
        entry_kind: str = "derived",
    ) -> str | None:
        fd = os.open(r.path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            if src.protect and self._storage is not None:
                blob: StoredBlob = await asyncio.to_thread(self._storage.sealer.seal_file, fd)
            else:
                blob = await asyncio.to_thread(self._store.ingest_file, fd)
        finally:
            os.close(fd)
        rid = uuid.uuid4()
        fields = {
            "evidence_id": str(src.evidence_id),
            "rendition": kind,
            "rendition_id": str(rid),
            "input_sha256": src.sha256,
            "output_sha256": blob.sha256,
            "output_size": blob.size,
            "media_type": r.media_type,
            "ffmpeg": r.ffmpeg_version,
            "args": r.portable_args(path),
            "method": r.method,
            "label": str(label_of(src.label_level, src.label_caveats)),  # the row's label
            **extra,
        }

        new = evrows.NewRendition(
            id=rid,
            evidence_id=src.evidence_id,
            kind=kind,
            sha256=blob.sha256,
            size=blob.size,
            media_type=r.media_type,
            label=label_of(src.label_level, src.label_caveats),
            params=_json(params),
        )

        async def effect(conn: Conn, indexes: list[int]) -> None:
            await evrows.insert_rendition(conn, self._ledger.mac, new, indexes[0])
            await decisions.add_refs(
                conn,
                [
                    (indexes[0], "evidence", str(src.evidence_id)),
                    (indexes[0], "rendition", str(rid)),
                ],
            )
            if isinstance(blob, SealedBlob):
                await insert_key(conn, blob.key, blob.chunk_size)
            elif self._storage is not None:  # the source's label may have risen meanwhile
                label = await evidence_label(conn, src.evidence_id, mac=self._ledger.mac)
                if label is not None and label.needs_encryption:
                    await enqueue_seal(conn, "evidence", str(src.evidence_id), indexes[0])

        recorded = True
        try:
            await self._ledger.append([make_entry(entry_kind, fields)], effect=effect)
        except asyncpg.UniqueViolationError:
            recorded = False  # recorded meanwhile by a worker that took the job over
        if self._storage is not None:  # committed or rolled back: remove the copy that lost
            await self._storage.settle(blob)
            if recorded:
                await self._lock(src.evidence_id, blob.sha256)
        return str(rid) if recorded else None

    async def _lock(self, evidence_id: uuid.UUID, sha256: str) -> None:
        """On the S3 store: a rendition of a linked item is locked like its original
        (``vault.ops.objectlock``); a failure leaves it to the next retention run."""
        assert self._storage is not None
        try:
            await objectlock.lock_rendition(
                self._storage.blobs, self._ledger.pool, evidence_id, sha256
            )
        except EvaultError as exc:
            log.warning("rendition %s: Object Lock not extended (retention run will): %s",
                        sha256, exc)  # fmt: skip


def _fingerprint_fields(fp: Fingerprint) -> dict[str, Any]:
    return {"fingerprint_root": fp.merkle_root.hex(), "segment_ms": fp.segment_ms}


def _json(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def media_limits(cfg: MediaConfig) -> Limits:
    """Limits of every ffmpeg/ffprobe child under ``cfg`` (wall times are set per run)."""
    return Limits(
        memory_bytes=cfg.memory_limit_mb << 20,
        memory_origin=f"media.memory_limit_mb = {cfg.memory_limit_mb}",
    )


def default_concurrency(cfg: MediaConfig) -> int:
    return cfg.workers or os.cpu_count() or 1
