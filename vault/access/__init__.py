"""Access: who may act, what they may see, and the record of every decision.

Owns ``principals``, ``principal_cases`` (assignments), ``tokens`` and ``ledger_refs``.
Contract, by module:

- ``principals`` / ``tokens``: every change is a ``principal`` ledger entry written in the same
  transaction as its row and the row's host-keyed tag;
- ``state``: the process's verified access state: row tags checked on every read that decides
  access, and an in-memory replay of the authenticated ledger (``replay``) that refuses a row
  put back to an earlier genuine value; a row that does not verify is never used;
- ``audit``: targets (verified rows), decisions recorded as ``accessed``/``denied`` entries
  before anything is served, the audit trail;
- ``filters`` (SQL visibility filters, the verified link state) and ``listing`` (evidence
  queries, each page re-decided on verified rows);
- ``serving``: bytes only for the verified row a decision was made on; ``sessions``: the
  Range requests of one playback share one ``accessed`` entry (each still decided);
- ``adopt``: tagging the rows an upgrade finds, once.
"""
