"""The aiohttp application: wiring through ``cleanup_ctx`` and typed ``AppKey``s."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from api import metrics, routes_ledger
from api.config import Config
from api.keys import READINESS, RUNTIME
from api.problems import problem_middleware
from api.runtime import open_runtime

CONFIG: web.AppKey[Config] = web.AppKey("config", Config)


async def _runtime_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_runtime(app[CONFIG], background=True) as rt:
        app[RUNTIME] = rt
        yield


def make_app(cfg: Config) -> web.Application:
    """The whole HTTP service for ``cfg``; opening and closing happen in cleanup contexts."""
    app = web.Application(middlewares=[metrics.metrics_middleware, problem_middleware], client_max_size=1 << 20)
    app[CONFIG] = cfg
    app[READINESS] = {}
    app.cleanup_ctx.append(_runtime_ctx)
    app.add_routes(routes_ledger.routes)
    app.add_routes(metrics.routes)
    return app
