"""The aiohttp application: wiring through ``cleanup_ctx`` and typed ``AppKey``s."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from api import metrics, routes_ledger
from api.config import Config
from api.keys import ALL_PARTS, PARTS, READINESS, RUNTIME
from api.problems import problem_middleware
from api.runtime import open_runtime
from ingest.service import cleanup_ctx as ingest_cleanup_ctx

CONFIG: web.AppKey[Config] = web.AppKey("config", Config)


async def _runtime_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_runtime(app[CONFIG], background=True) as rt:
        app[RUNTIME] = rt
        yield


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
    app.add_routes(routes_ledger.routes)
    app.add_routes(metrics.routes)
    return app
