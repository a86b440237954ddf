"""Review: what legal review, publicity and courts read.

The signed integrity report, coverage of enforcement steps by footage, publication-safe yearly
statistics, case packages (``export``, ``exportjobs``) and their human report. Owns no table
but the export jobs' payloads; reads evidence, cases and the ledger through their components,
and decides every item through ``vault.access``.
"""
