"""The ingest service: one watcher per configured dock, sharing one Acquirer.

``IngestService(cfg, runtime)`` resolves the docks' folders against the data directory, takes the
process's one storage from the runtime (blob store, sealing for classified footage), opens the
quarantine, and on ``start()`` sweeps temp files left by crashed writers, records quarantine moves
whose ledger entry never committed, and starts the watchers. ``stop()`` stops them and lets
acquisitions in flight finish. ``cleanup_ctx`` wires it into an aiohttp app without this layer
importing ``api`` (layers import downwards only).

Guarantees: start-up recovery never deletes evidence (only unlocked temp files in the store's
``tmp/``); the readiness probe reports "ok" only while every dock's observer thread and loop
are alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

import asyncpg
import msgspec
from aiohttp import web

from ingest.acquire import Acquirer
from ingest.config import DockConfig
from ingest.quarantine import Quarantine
from ingest.watcher import DockWatcher
from vault.config import KeysConfig, StoreConfig
from vault.errors import EvaultError
from vault.ledger import Ledger
from vault.storage.storage import Storage

__all__ = ["IngestService", "cleanup_ctx", "open_acquirer"]

log = logging.getLogger("evault.ingest")

CONCURRENCY = 4  # acquisitions at once across all docks (each is disk-bound)


class IngestConfig(Protocol):
    """What the ingest layer reads from the whole configuration."""

    @property
    def docks(self) -> tuple[DockConfig, ...]: ...
    @property
    def store(self) -> StoreConfig: ...
    @property
    def keys(self) -> KeysConfig: ...
    def path(self, p: Path) -> Path: ...


class IngestRuntime(Protocol):
    """What the ingest layer uses of an open runtime."""

    @property
    def cfg(self) -> IngestConfig: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def storage(self) -> Storage: ...


def open_acquirer(cfg: IngestConfig, ledger: Ledger, storage: Storage) -> Acquirer:
    """The Acquirer for ``cfg``: docks with absolute folders, the process's storage, the
    quarantine."""
    docks = [msgspec.structs.replace(d, path=cfg.path(Path(d.path))) for d in cfg.docks]
    quarantine = Quarantine(cfg.path(cfg.store.quarantine), ledger)
    return Acquirer(
        storage.blobs, ledger, quarantine, docks, verifier=ledger.verifier, storage=storage
    )


class IngestService:
    """Watchers for every dock in ``cfg``; see the module docstring."""

    def __init__(self, cfg: IngestConfig, runtime: IngestRuntime) -> None:
        self.acquirer = open_acquirer(cfg, runtime.ledger, runtime.storage)
        self._limit = asyncio.Semaphore(CONCURRENCY)
        self.watchers = [
            DockWatcher(d, self.acquirer, self._limit) for d in self.acquirer.docks.values()
        ]

    async def start(self) -> None:
        swept = await asyncio.to_thread(self.acquirer.store.sweep_tmp)
        if swept:
            log.info("blob store: removed %d temp files left by interrupted writes", swept)
        try:
            recorded = await self.acquirer.quarantine.recover()
        except (asyncpg.PostgresError, OSError, EvaultError) as exc:
            log.error("quarantine: pending moves not recorded yet: %s", exc)
        else:
            if recorded:
                log.warning("quarantine: recorded %d moves left pending by a crash", recorded)
        for watcher in self.watchers:
            try:
                watcher.start()
            except OSError as exc:  # one unusable dock folder must not stop the others
                log.error("dock %s: not watched: %s", watcher.dock.id, exc)

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.watchers))

    def readiness(self) -> str:
        down = [w.dock.id for w in self.watchers if not w.alive()]
        return "ok" if not down else "not watching: " + ", ".join(down)


def cleanup_ctx(
    runtime_of: Callable[[web.Application], IngestRuntime],
    readiness_of: Callable[[web.Application], dict[str, Callable[[], str]]],
    enabled: Callable[[web.Application], bool] = lambda app: True,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup context running an ``IngestService`` on the app's runtime (append
    it after the runtime's own context) and registering the "watchers" readiness probe. Does
    nothing where ``enabled(app)`` is false (a process started without the ingest part)."""

    async def ingest_ctx(app: web.Application) -> AsyncIterator[None]:
        if not enabled(app):
            yield
            return
        runtime = runtime_of(app)
        service = IngestService(runtime.cfg, runtime)
        await service.start()
        readiness_of(app)["watchers"] = service.readiness
        try:
            yield
        finally:
            await service.stop()

    return ingest_ctx
