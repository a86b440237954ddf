"""Facts about the schema that code needs: which tables are append-only.

The app role gets SELECT and INSERT on these and nothing else; the migrations put ``ENABLE
ALWAYS`` triggers on them that refuse UPDATE, DELETE and TRUNCATE for every role.
"""

from __future__ import annotations

APPEND_ONLY_TABLES: frozenset[str] = frozenset(
    {
        "ledger_entries",
        "ledger_openings",
        "ledger_checkpoints",
        "ledger_batches",
        "case_evidence_history",
        "label_history",
        "dispositions",
        "ledger_refs",
        "ledger_timestamps",
        "ledger_cosignatures",
        "witness_cosigned",
        "witness_refusals",
    }
)
