"""Cases: the case system's cases and their evidence links.

Owns ``cases``, ``case_evidence_history`` (links, append-only) and ``label_history``. Every
create, retitle, relabel, link and unlink is a ledger entry written in one transaction with its
rows and their tags; a change that moves an item's effective label adds a ``labelled`` entry
(``effective``) for that item, so every label change is in the ledger.
"""
