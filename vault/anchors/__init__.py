"""Anchors: outside parties that vouch for the log (RFC 3161 time-stamps of checkpoints; an
SM2 cosignature on them, ``vault.anchors.sm2``).

Owns ``ledger_timestamps`` (append-only). Guarantee: never in the way of checkpointing; a token
is stored only after it verifies for its checkpoint.
"""
