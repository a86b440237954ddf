"""The aiohttp application: wiring through ``cleanup_ctx`` and typed ``AppKey``s."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator

from aiohttp import web

from api import metrics, routes_ledger
from api.config import Config
from api.keys import ALL_PARTS, PARTS, READINESS, RUNTIME
from api.problems import problem_middleware
from api.runtime import open_runtime
from ingest.mediajobs import MediaJobs, default_concurrency
from ingest.service import cleanup_ctx as ingest_cleanup_ctx
from vault.blobstore import BlobStore
from vault.jobs import JobRunner

CONFIG: web.AppKey[Config] = web.AppKey("config", Config)


async def _runtime_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_runtime(app[CONFIG], background=True) as rt:
        app[RUNTIME] = rt
        yield


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    """Media workers: claim media jobs from PostgreSQL (any number of processes may run them)."""
    if "media" not in app[PARTS]:
        yield
        return
    rt = app[RUNTIME]
    cfg = rt.cfg
    store = BlobStore(cfg.path(cfg.store.root))
    scratch = cfg.path(cfg.store.root) / "scratch"
    # Scratch holds only half-made renditions of jobs that will be retried: safe to clear.
    await asyncio.to_thread(shutil.rmtree, scratch, True)
    await asyncio.to_thread(scratch.mkdir, 0o700, True, True)
    handlers = MediaJobs(rt.ledger, store, cfg.media, scratch).handlers()
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


def make_app(cfg: Config, parts: frozenset[str] = ALL_PARTS) -> web.Application:
    """The HTTP service for ``cfg`` running ``parts``; opening and closing in cleanup contexts.

    Every process serves /healthz, /readyz, /metrics and the ledger read paths, and signs
    checkpoints as its appends grow the tree (signers are serialised by PostgreSQL).
    """
    app = web.Application(
        middlewares=[metrics.metrics_middleware, problem_middleware], client_max_size=1 << 20
    )
    app[CONFIG] = cfg
    app[PARTS] = parts
    app[READINESS] = {}
    app.cleanup_ctx.append(_runtime_ctx)
    app.cleanup_ctx.append(
        ingest_cleanup_ctx(
            lambda a: a[RUNTIME], lambda a: a[READINESS], lambda a: "ingest" in a[PARTS]
        )
    )
    app.cleanup_ctx.append(_media_ctx)
    app.add_routes(routes_ledger.routes)
    app.add_routes(metrics.routes)
    return app
