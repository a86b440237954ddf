"""Evidence and renditions: the component that owns the ``evidence`` and ``renditions`` tables.

The database is not trusted (DESIGN §7). Every row here carries a row tag
(``vault.keys.hostmac.HostMac.row``) over its bound values and ``state_idx``, the index of the
newest ledger entry that set them. Other layers read and write these tables only through this
package.

Guarantees:

- **Writes** happen inside the ledger effect of the entry that causes them, and tag the row with
  that entry's index: ``insert_evidence`` (the ``acquired`` entry), ``insert_rendition`` (the
  ``derived`` entry), ``set_label`` / ``raise_renditions`` (a ``labelled`` entry),
  ``set_category`` and ``mark_disposed`` (their entries). A write that changes bound values
  first verifies the stored row (under ``FOR UPDATE``): a tampered row is never re-tagged, so a
  legitimate change cannot launder a forged one.
- The tag covers exactly what Python wrote (computed from the values passed, not read back),
  so a trigger that rewrites a row on its way in yields a row that does not verify.
- **Reads** that decide access or serve bytes (``load_evidence``, ``load_rendition``,
  ``by_sha256``, ``check_page``) verify every row they return; a row that does not verify raises
  :class:`vault.keys.hostmac.RowTampered` (an ``IntegrityError``, HTTP 422) — or, in a listing, is
  left out — and raises the alarm (``alarm``): ``evault_integrity_failures{source="state"}``,
  an error log line and, once per tampered state and process, an ``integrity.failure`` event.
  No tampered value is ever returned.
- Working state (media status and reason, probe, metadata, scrub marks, a rendition's params
  and creation time) is not bound: changing it needs no entry and decides nothing.
"""

from __future__ import annotations

from vault.evidence.model import (
    EVIDENCE_BOUND,
    RENDITION_BOUND,
    Evidence,
    NewEvidence,
    NewRendition,
    Rendition,
)
from vault.evidence.rows import (
    RELEASED,
    alarm,
    by_sha256,
    check_evidence,
    check_page,
    check_rendition,
    evidence_columns,
    evidence_of,
    evidence_rows,
    finish_disposal,
    holders,
    insert_evidence,
    insert_rendition,
    load_evidence,
    load_rendition,
    mark_disposed,
    raise_renditions,
    rendition_columns,
    rendition_of,
    rendition_rows,
    renditions_of,
    set_category,
    set_label,
)
from vault.evidence.working import (
    clip_of_job,
    has_rendition,
    lock_for_mark,
    mark_integrity,
    mark_scrubbed_ok,
    mark_unprocessable,
    media_states,
    probes,
    record_offer,
    rendition_of_job,
    set_media_status,
    set_probe,
)

__all__ = [
    "EVIDENCE_BOUND",
    "RELEASED",
    "RENDITION_BOUND",
    "Evidence",
    "NewEvidence",
    "NewRendition",
    "Rendition",
    "alarm",
    "by_sha256",
    "check_evidence",
    "check_page",
    "check_rendition",
    "clip_of_job",
    "evidence_columns",
    "evidence_of",
    "evidence_rows",
    "finish_disposal",
    "has_rendition",
    "holders",
    "insert_evidence",
    "insert_rendition",
    "load_evidence",
    "load_rendition",
    "lock_for_mark",
    "mark_disposed",
    "mark_integrity",
    "mark_scrubbed_ok",
    "mark_unprocessable",
    "media_states",
    "probes",
    "raise_renditions",
    "record_offer",
    "rendition_columns",
    "rendition_of",
    "rendition_of_job",
    "rendition_rows",
    "renditions_of",
    "set_category",
    "set_label",
    "set_media_status",
    "set_probe",
]
