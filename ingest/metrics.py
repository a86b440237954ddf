"""The ingest layer's Prometheus metrics (exported at /metrics by the API).

Labels are bounded: ``dock`` is a configured dock id, ``reason`` one of a fixed set of short
codes (quarantine reasons, deferral reasons). No file name or path is ever a label value.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACQUIRED_FILES = Counter(
    "evault_ingest_acquired_files", "Files acquired (new content stored).", ["dock"]
)
ACQUIRED_BYTES = Counter("evault_ingest_acquired_bytes", "Bytes of new content stored.", ["dock"])
REOFFERED_FILES = Counter(
    "evault_ingest_reoffered_files", "Files offered whose content was already held.", ["dock"]
)
REOFFERED_BYTES = Counter(
    "evault_ingest_reoffered_bytes", "Bytes of files whose content was already held.", ["dock"]
)
QUARANTINED_FILES = Counter(
    "evault_ingest_quarantined_files", "Files refused and quarantined.", ["dock", "reason"]
)
FAILURES = Counter(
    "evault_ingest_failures",
    "Acquisitions that did not complete and will be retried, by reason.",
    ["dock", "reason"],
)
BACKLOG = Gauge(
    "evault_ingest_backlog",
    "Files seen in a dock folder and not yet taken or refused.",
    ["dock"],
    multiprocess_mode="livesum",
)
ACQUIRE_SECONDS = Histogram(
    "evault_ingest_acquire_seconds",
    "Time from opening a source to its receipt being written.",
    ["dock"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
DOCK_UNPROCESSABLE = Counter(
    "evault_dock_unprocessable",
    "Acquired recordings the media workers could not process (reason: probe, renditions).",
    ["dock", "reason"],
)
DOCK_NAME_MISMATCH = Counter(
    "evault_dock_name_mismatch",
    "Acquired files whose name does not match the dock's pattern (metadata from sidecar only).",
    ["dock"],
)
DOCK_RECORDED_AFTER_ACQUIRED = Counter(
    "evault_dock_recorded_after_acquired",
    "Acquired files whose recording time is later than their acquisition (a recorder clock "
    "ahead, or a wrong zone): flagged recorded_after_acquired.",
    ["dock"],
)
