"""The vault layer's Prometheus metrics (exported at /metrics by the API)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import REGISTRY, CounterMetricFamily
from prometheus_client.registry import Collector


class LogEntries(Collector):
    """``evault_ledger_entries_total``: the entries the log holds (its tree size), whoever
    appended them, as last read: after each of this process's commits (``observe``) and at
    every scrape from the database (``api.metrics``), so appends by another process (a CLI
    command, another service process) show at the next scrape. A counter: the log only grows;
    never lowered by a stale read. No sample until the size was first read."""

    NAME = "evault_ledger_entries"
    DOC = "Entries in the ledger (its tree size), whichever process appended them."

    def __init__(self) -> None:
        self.size: int | None = None

    def observe(self, size: int) -> None:
        if self.size is None or size > self.size:
            self.size = size

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.NAME, self.DOC)

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.NAME, self.DOC, value=self.size)


LEDGER_ENTRIES = LogEntries()
REGISTRY.register(LEDGER_ENTRIES)
LEDGER_BATCH = Histogram(
    "evault_ledger_batch_entries",
    "Entries per group-commit transaction.",
    buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384),
)
LEDGER_COMMIT_SECONDS = Histogram(
    "evault_ledger_commit_seconds", "Duration of one group-commit transaction."
)
LEDGER_EARLY_WRITES = Counter(
    "evault_ledger_early_writes",
    "Append transactions that wrote their entries before the ledger lock, overlapping the"
    " commit before them, by outcome (applied; stale: rolled back and written again, lock first).",
    ["outcome"],
)
# multiprocess_mode: how the processes of `evault serve --workers N` are combined at a scrape
# (ignored with one process; see api.metrics).
LEDGER_SIZE = Gauge(
    "evault_ledger_size", "Tree size after this process's last commit.", multiprocess_mode="max"
)
CHECKPOINT_SIZE = Gauge(
    "evault_ledger_checkpoint_size",
    "Size of the latest checkpoint signed.",
    multiprocess_mode="max",
)
CHECKPOINT_TIME = Gauge(
    "evault_ledger_checkpoint_timestamp_seconds",
    "Unix time of the latest checkpoint signed.",
    multiprocess_mode="max",
)
CHECKPOINT_FAILURES = Counter(
    "evault_ledger_checkpoint_failures",
    "Checkpoints refused (tiles disagree with the recorded root, or not consistent).",
)
CHECKPOINTS_STOPPED = Gauge(
    "evault_ledger_checkpoints_stopped",
    "1 while this process refuses to sign checkpoints (entries not authenticated by the host"
    " key, or the tree disagrees with its tiles or checkpoints), else 0.",
    multiprocess_mode="livemax",
)
CHECKPOINT_LEADER = Gauge(
    "evault_ledger_checkpoint_leader",
    "1 while this process is the one that signs checkpoints for every process on the database"
    " (it holds the leader lock), else 0.",
    multiprocess_mode="livemax",
)
INTEGRITY_FAILURES = Counter(
    "evault_integrity_failures",
    "Integrity failures detected (fsck, scrub, reads, checkpointer).",
    ["source"],
)
