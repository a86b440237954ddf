"""Redaction jobs: render a redacted copy of an original and record it, once per job.

Guarantees (besides those of every media job, ``ingest.mediajobs``: the original read through
the content store, decrypted on the plaintext scratch when protected, never modified; the copy
stored write-once, sealed when its source is protected):

- The spec in the job's payload is validated again, against the probed original
  (``ingest.media.redact.check_against``); a spec that does not fit fails the job at once,
  naming its fields.
- The copy is a rendition of kind ``redacted`` whose label starts as the original's. It is
  recorded by a ``redacted`` ledger entry, in the same transaction as its row, holding what a
  ``derived`` entry holds (input and output hashes, ffmpeg version, the exact arguments, the
  label) and ``original_entry`` (the index of the original's ``acquired`` entry),
  ``spec_sha256`` (SHA-256 of the spec's canonical JSON) and ``spec_version``.
- The rendition's ``params`` keep the job id, the requester and the canonical spec, so a retried
  job records once and the spec can be shown and packaged with the copy.
- ``media.suggest`` jobs search the original for faces and number plates
  (``ingest.media.suggest``) and return the suggested box tracks as the job's result; nothing
  is stored or recorded (a suggestion is not evidence until a reviewer submits it as a spec).
  Without the detector installed the job fails at once, saying which package is missing.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ingest.media import MediaError, probe
from ingest.media.redact import make_redacted
from ingest.media.suggest import suggest
from ingest.mediajobs import MEDIA_JOBS, MEDIA_SECONDS, MediaJobs, _Source
from vault import evidence as evrows
from vault.jobs import Job, JobFailed
from vault.redaction.spec import InvalidSpec, parse_spec, spec_json, spec_sha256
from vault.storage.storage import file_of

__all__ = ["REDACT", "SUGGEST", "RedactJobs"]

REDACT = "media.redact"
SUGGEST = "media.suggest"
KIND = "redacted"


class RedactJobs(MediaJobs):
    """The ``media.redact`` handler (constructed like :class:`~ingest.mediajobs.MediaJobs`)."""

    def handlers(self) -> dict[str, Any]:
        return {REDACT: self.redact, SUGGEST: self.suggest}

    async def suggest(self, job: Job) -> Mapping[str, Any]:
        """Suggested face and plate box tracks of the original (see module)."""
        src = await self._source(str(job.payload["evidence_id"]))
        if src is None:
            raise JobFailed("the evidence does not exist or was disposed of")
        obj = await self._content.open(src.sha256)
        try:
            async with file_of(obj) as path:
                info = await probe(path, tools=self._tools, limits=self._probe_limits)
                boxes = await suggest(path, info, tools=self._tools, limits=self._limits)
        except MediaError as exc:
            raise JobFailed(f"suggestions: {exc.reason}") from exc
        finally:
            obj.close()
        MEDIA_JOBS.labels(SUGGEST, "ready").inc()
        return {"boxes": boxes}

    async def redact(self, job: Job) -> Mapping[str, Any]:
        """Render and record the redacted copy the job asks for (see module)."""
        src = await self._source(str(job.payload["evidence_id"]))
        if src is None:
            raise JobFailed("the evidence does not exist or was disposed of")
        existing = await evrows.rendition_of_job(
            self._ledger.pool, src.evidence_id, KIND, str(job.id)
        )
        if existing is not None:
            return {"rendition_id": str(existing)}
        try:
            spec = parse_spec(job.payload.get("spec"))
        except InvalidSpec as exc:
            raise JobFailed(f"redaction spec: {exc.detail}") from exc
        obj = await self._content.open(src.sha256)
        try:
            async with file_of(obj) as path:
                return await self._redact(job, src, path, spec)
        finally:
            obj.close()

    async def _redact(self, job: Job, src: _Source, path: Path, spec: Any) -> Mapping[str, Any]:
        work = await self._workdir(src, KIND)
        started = time.perf_counter()
        try:
            info = await probe(path, tools=self._tools, limits=self._probe_limits)
            r = await make_redacted(path, work, spec, info, tools=self._tools, limits=self._limits)
            extra = {
                "original_entry": src.ledger_idx,
                "spec_sha256": spec_sha256(spec),
                "spec_version": spec.version,
            }
            params = {
                "job": str(job.id),
                "requested_by": job.payload.get("requested_by"),
                "spec": spec_json(spec),
            }
            rid = await self._record(src, path, KIND, r, extra, params, entry_kind=KIND)
        except InvalidSpec as exc:
            raise JobFailed(f"redaction spec: {exc.detail}") from exc
        except MediaError as exc:
            raise JobFailed(f"redaction: {exc.reason}") from exc
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        MEDIA_SECONDS.labels(KIND).observe(time.perf_counter() - started)
        MEDIA_JOBS.labels(REDACT, "ready").inc()
        if rid is None:  # recorded meanwhile by a worker that took the job over
            again = await evrows.rendition_of_job(
                self._ledger.pool, src.evidence_id, KIND, str(job.id)
            )
            rid = None if again is None else str(again)
        return {"rendition_id": rid}
