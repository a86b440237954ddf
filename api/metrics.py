"""HTTP metrics and the /metrics endpoint (Prometheus text format).

With several processes (``evault serve --workers N``, which sets ``PROMETHEUS_MULTIPROC_DIR``
for all of them before any metric exists), every process writes its metrics to files there and
a scrape answered by any of them reads them all (prometheus_client's multiprocess mode):
counters and histograms are summed over every process that ran since the service started,
gauges combined as each one's ``multiprocess_mode`` says. The collectors that read at scrape
time (the log's size, the disks) are asked by the process answering.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    PLATFORM_COLLECTOR,
    REGISTRY,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from api.keys import RUNTIME
from api.metrics_disk import DISK
from vault.db import is_outage
from vault.metrics import LEDGER_ENTRIES

LOG_SIZE_TIMEOUT = 2.0

REQUEST_SECONDS = Histogram(
    "evault_http_request_seconds",
    "HTTP request latency by route and status class.",
    ["route", "method", "status"],
)
IN_FLIGHT = Gauge(
    "evault_http_requests_in_flight", "HTTP requests being served.", multiprocess_mode="livesum"
)

# The histogram's children by (route template, method, status class): bounded by the routes.
_CHILDREN: dict[tuple[str, str, int], Any] = {}

routes = web.RouteTableDef()


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Time every request by its route template (never by raw path: no id leaks, no explosion)."""
    start = time.perf_counter()
    IN_FLIGHT.inc()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        IN_FLIGHT.dec()
        key = (_route_name(request), request.method, status // 100)
        child = _CHILDREN.get(key)
        if child is None:
            child = _CHILDREN[key] = REQUEST_SECONDS.labels(key[0], key[1], f"{key[2]}xx")
        child.observe(time.perf_counter() - start)


async def _read_log_size(request: web.Request) -> None:
    """``evault_ledger_entries_total`` describes the log, not this process's appends: read its
    size now (one row), keeping the last value if the database does not answer in time."""
    rt = request.app.get(RUNTIME)
    if rt is None:
        return
    try:
        async with asyncio.timeout(LOG_SIZE_TIMEOUT):
            LEDGER_ENTRIES.observe(await rt.ledger.size())
    except Exception as exc:
        if not is_outage(exc):
            raise


@cache
def _registry() -> CollectorRegistry:
    """What a scrape reads: this process's registry, or every process's metric files."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    for collector in (LEDGER_ENTRIES, DISK, PLATFORM_COLLECTOR):
        registry.register(collector)
    return registry


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Every metric of the service in the Prometheus text format."""
    await _read_log_size(request)
    body = await asyncio.to_thread(generate_latest, _registry())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
