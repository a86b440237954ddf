"""Forensics: what a copy of a recording says about the logged original.

Not ingestion: it reads what the vault (or an exported package) already holds and writes
nothing. It sits in the ``ingest`` layer because it decodes the suspect copy with the
sandboxed media tools (:mod:`ingest.media`), which ``vault`` and ``verify`` may not import.
"""
