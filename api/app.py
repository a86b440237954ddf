"""The aiohttp application: wiring through ``cleanup_ctx`` and typed ``AppKey``s."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
from collections.abc import AsyncIterator

from aiohttp import web

from api import (
    console,
    metrics,
    metrics_disk,
    openapi,
    problems,
    routes_anchors,
    routes_cases,
    routes_docks,
    routes_evidence,
    routes_exports,
    routes_jobs,
    routes_ledger,
    routes_meta,
    routes_public,
    routes_redactions,
    routes_review,
    routes_verify,
    routes_witness,
)
from api.accesslog import access_log_middleware, setup_access_log
from api.auth import auth_header_middleware
from api.config import Config
from api.keys import ALL_PARTS, PARTS, READINESS, RUNTIME, WORKER
from api.readpath import read_ctx
from api.runtime import open_runtime
from ingest.mediajobs import MediaJobs, default_concurrency
from ingest.redactjobs import RedactJobs
from ingest.service import cleanup_ctx as ingest_cleanup_ctx
from vault.jobs import JobRunner
from vault.ops.scrubsched import ScrubScheduler
from vault.review.exportjobs import EXPORT, export_handler
from vault.storage.reseal import Resealer
from vault.storage.superseded import remove_expired

CONFIG: web.AppKey[Config] = web.AppKey("config", Config)


async def _runtime_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_runtime(app[CONFIG], background=True, follow=app[WORKER]) as rt:
        app[RUNTIME] = rt
        # Checkpoints stopped (entries not authenticated by the host key, tiles disagreeing):
        # the service is not ready, and says why.
        app[READINESS]["ledger_checkpoints"] = rt.ledger.checkpointer.health
        yield


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    """Media workers: claim media jobs from PostgreSQL (any number of processes may run them),
    and the re-encryption jobs that label changes queue (``vault.storage.reseal``)."""
    if "media" not in app[PARTS]:
        yield
        return
    rt = app[RUNTIME]
    cfg = rt.cfg
    storage = rt.storage
    # This node's own scratch folder: nodes sharing a store root (a shared file system) each
    # clear only theirs. It holds only half-made renditions of jobs that will be retried (a
    # job's lease outlives its worker): safe to clear at start.
    node = f"{socket.gethostname()}:{cfg.data.resolve()}"
    scratch = cfg.path(cfg.store.root) / "scratch" / hashlib.sha256(node.encode()).hexdigest()[:16]
    await asyncio.to_thread(shutil.rmtree, scratch, True)
    await asyncio.to_thread(scratch.mkdir, 0o700, True, True)
    media = MediaJobs(rt.ledger, storage.blobs, cfg.media, scratch, storage=storage)
    exports_dir = cfg.path(routes_exports.EXPORTS_DIR)
    await asyncio.to_thread(exports_dir.mkdir, 0o700, True, True)
    redact = RedactJobs(rt.ledger, storage.blobs, cfg.media, scratch, storage=storage)
    handlers = {
        **media.handlers(),
        **redact.handlers(),
        **Resealer(storage, rt.db.pool, mac=rt.mac, ledger=rt.ledger).handlers(),
        EXPORT: export_handler(
            rt.ledger,
            storage.content,
            exports_dir,
            cfg.export.timezone,
            timestamp_wait=cfg.anchors.export_wait,
            witnesses=cfg.anchors.witness_export,
        ),
    }
    runner = JobRunner(
        rt.db.pool,
        handlers,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        concurrency=default_concurrency(cfg.media),
        lease=cfg.media.lease_seconds,
    )
    runner.start()
    app[READINESS]["media_workers"] = lambda: "ok" if runner.alive() else "stopped"
    try:
        yield
    finally:
        await runner.stop()


async def _scrub_ctx(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: the scrub scheduler, in processes running the media part (they
    have the blob store) when ``scrub.enabled``; append it after the runtime's context."""
    rt = app[RUNTIME]
    if "media" not in app[PARTS] or not rt.cfg.scrub.enabled:
        yield
        return
    scheduler = ScrubScheduler(
        rt.ledger,
        rt.storage.content,
        rt.cfg.scrub,
        housekeeping=lambda: remove_expired(rt.storage, rt.db.pool, rt.ledger),
    )
    scheduler.start()
    app[READINESS]["scrub"] = lambda: "ok" if scheduler.alive() else "stopped"
    try:
        yield
    finally:
        await scheduler.stop()


def make_app(
    cfg: Config, parts: frozenset[str] = ALL_PARTS, *, worker: bool = False
) -> web.Application:
    """The HTTP service for ``cfg`` running ``parts``; opening and closing in cleanup contexts.

    Every process serves /healthz, /readyz, /metrics and the ledger read paths; one process
    on the database at a time (the leader) signs checkpoints of what any process appends.
    A ``worker`` (an API worker process of ``evault serve --workers``) never signs them and
    runs none of the once-per-data-directory tasks (``api.keys.WORKER``).
    """
    app = web.Application(
        middlewares=[
            access_log_middleware,
            metrics.metrics_middleware,
            auth_header_middleware,
            problems.problem_middleware,
        ],
        client_max_size=1 << 20,
    )
    app[CONFIG] = cfg
    problems.setup(app)  # errors after a response started are not turned into problems
    metrics_disk.watch(cfg)  # evault_disk_free_bytes for the data, store and dock volumes
    app[PARTS] = parts
    app[WORKER] = worker
    app[READINESS] = {}
    app.cleanup_ctx.append(_runtime_ctx)
    app.cleanup_ctx.append(read_ctx)
    app.cleanup_ctx.append(
        ingest_cleanup_ctx(
            lambda a: a[RUNTIME], lambda a: a[READINESS], lambda a: "ingest" in a[PARTS]
        )
    )
    app.cleanup_ctx.append(_media_ctx)
    app.cleanup_ctx.append(_scrub_ctx)
    app.cleanup_ctx.append(routes_anchors.anchors_ctx)  # RFC 3161 time-stamps, if configured
    app.cleanup_ctx.append(routes_witness.witness_ctx)  # witness and witness client, if configured
    app.add_routes(routes_ledger.routes)
    app.add_routes(routes_anchors.routes)
    app.add_routes(routes_witness.routes)
    app.add_routes(metrics.routes)
    # HTTP API: content store and push acquirer, then the routes; the OpenAPI
    # document is built at startup and refuses to start with an undocumented route.
    app.cleanup_ctx.append(routes_evidence.content_ctx)
    app.cleanup_ctx.append(routes_docks.acquirer_ctx)
    for module in (
        routes_docks,
        routes_evidence,
        routes_jobs,
        routes_redactions,
        routes_cases,
        routes_verify,
        routes_exports,
    ):
        app.add_routes(module.routes)
    # Legal review, publicity and event delivery.
    app.cleanup_ctx.append(routes_review.dispatch_ctx)
    app.add_routes(routes_review.routes)
    app.add_routes(routes_public.routes)
    app.add_routes(routes_meta.routes)  # /v1/me, /v1/review/step-types
    console.setup(app)  # reviewer console: /console/, static, CSP headers
    openapi.setup(app)
    setup_access_log()
    return app
