"""Exports as jobs: a package built by a worker for the principal who asked, kept for download.

Guarantees: the package is built as that principal (reloaded when the job runs, so a principal
disabled meanwhile gets nothing) through ``vault.review.export.export_case``, with every decision
recorded there; each attempt writes its own file, so a retry never collides with a half-made
one; the result names the file, its size and the manifest's SHA-256.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vault.access import principals
from vault.config import DEFAULT_TIMEZONE
from vault.errors import Forbidden, NotFound
from vault.jobs import Handler, Job, JobFailed
from vault.ledger import Ledger
from vault.review.export import RENDITION_KINDS, export_case
from vault.storage.content import ContentStore

EXPORT = "export.case"


def package_path(exports_dir: Path, job_id: int, attempt: int) -> Path:
    return exports_dir / f"export-{job_id}-{attempt}.zip"


def export_handler(
    ledger: Ledger,
    content: ContentStore,
    exports_dir: Path,
    timezone: str = DEFAULT_TIMEZONE,
    *,
    timestamp_wait: float = 0.0,
    witnesses: tuple[int, float] = (0, 0.0),
) -> Handler:
    """The job handler for ``EXPORT`` jobs (payload: case_id, requested_by, renditions);
    reports show times in ``timezone``; ``timestamp_wait`` and ``witnesses`` as for
    :func:`vault.review.export.export_case`."""

    async def run(job: Job) -> Mapping[str, Any]:
        case_id = str(job.payload["case_id"])
        kinds = [k for k in job.payload.get("renditions", []) if k in RENDITION_KINDS]
        try:
            actor = await principals.load(ledger.pool, str(job.payload["requested_by"]))
            out = package_path(exports_dir, job.id, job.attempt)
            result = await export_case(
                ledger,
                content,
                actor,
                case_id,
                out,
                renditions=kinds,
                as_zip=True,
                timezone=timezone,
                timestamp_wait=timestamp_wait,
                witnesses=witnesses,
                originals=job.payload.get("originals", True) is not False,
            )
        except (NotFound, Forbidden) as exc:
            raise JobFailed(exc.detail) from exc
        return {
            "file": out.name,
            "size": (await asyncio.to_thread(out.stat)).st_size,
            "manifest_sha256": result.manifest_sha256,
            "files": result.files,
            "entries": result.entries,
            "exported_index": result.exported_index,
        }

    return run
