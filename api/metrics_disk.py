"""Free and total bytes of the file systems the service writes to, read at scrape time.

``evault_disk_free_bytes{volume}`` (bytes available to the service, ``f_bavail``) and
``evault_disk_total_bytes{volume}``, where ``volume`` is one of a bounded set named by the
configuration: ``data``, ``store``, ``quarantine``, ``checkpoints_log``, and ``dock:<id>`` for each
configured dock. The alert rules (deploy/prometheus/alerts.yml) use their ratio.

Guarantees: reading is ``statvfs`` only (no file is opened, nothing is written); a volume that
cannot be read (unmounted share, missing folder) is left out of that scrape rather than
reported as empty, and ``evault_disk_errors`` is 1 for it, so "disk low" and "volume gone" are
different alerts. Registered once with the default registry at import; ``watch`` replaces the
volumes (the last application built in a process wins).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from api.config import Config


class DiskCollector(Collector):
    """A collector over a mapping of volume name to a folder on that volume."""

    def __init__(self) -> None:
        self._volumes: dict[str, Path] = {}

    def watch(self, volumes: Mapping[str, Path]) -> None:
        self._volumes = dict(volumes)

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "evault_disk_free_bytes",
                "Bytes available to the service on the volume holding this folder.",
                labels=["volume"],
            ),
            GaugeMetricFamily(
                "evault_disk_total_bytes",
                "Size of the volume holding this folder.",
                labels=["volume"],
            ),
            GaugeMetricFamily(
                "evault_disk_errors", "1 when the volume could not be read.", labels=["volume"]
            ),
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        free, total, errors = self._families()
        for name, folder in sorted(self._volumes.items()):
            try:
                st = os.statvfs(folder)
            except OSError:
                errors.add_metric([name], 1)
                continue
            errors.add_metric([name], 0)
            free.add_metric([name], st.f_bavail * st.f_frsize)
            total.add_metric([name], st.f_blocks * st.f_frsize)
        yield free
        yield total
        yield errors


DISK = DiskCollector()
REGISTRY.register(DISK)


def watch(cfg: Config) -> None:
    """Report the volumes of ``cfg``'s data directory, store, quarantine, log and docks."""
    volumes = {
        "data": cfg.data,
        "store": cfg.path(cfg.store.root),
        "quarantine": cfg.path(cfg.store.quarantine),
        "checkpoints_log": cfg.path(cfg.ledger.checkpoints_log).parent,
    }
    for dock in cfg.docks:
        volumes[f"dock:{dock.id}"] = cfg.path(dock.path)
    DISK.watch(volumes)
