"""The vault layer's Prometheus metrics (exported at /metrics by the API)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LEDGER_ENTRIES = Counter("evault_ledger_entries", "Ledger entries appended by this process.")
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
LEDGER_SIZE = Gauge("evault_ledger_size", "Tree size after this process's last commit.")
CHECKPOINT_SIZE = Gauge("evault_ledger_checkpoint_size", "Size of the latest checkpoint signed.")
CHECKPOINT_TIME = Gauge(
    "evault_ledger_checkpoint_timestamp_seconds", "Unix time of the latest checkpoint signed."
)
CHECKPOINT_FAILURES = Counter(
    "evault_ledger_checkpoint_failures",
    "Checkpoints refused (tiles disagree with the recorded root, or not consistent).",
)
CHECKPOINTS_STOPPED = Gauge(
    "evault_ledger_checkpoints_stopped",
    "1 while this process refuses to sign checkpoints (entries not authenticated by the host"
    " key, or the tree disagrees with its tiles or checkpoints), else 0.",
)
CHECKPOINT_LEADER = Gauge(
    "evault_ledger_checkpoint_leader",
    "1 while this process is the one that signs checkpoints for every process on the database"
    " (it holds the leader lock), else 0.",
)
INTEGRITY_FAILURES = Counter(
    "evault_integrity_failures",
    "Integrity failures detected (fsck, scrub, reads, checkpointer).",
    ["source"],
)
