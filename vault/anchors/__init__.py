"""Anchors: outside parties that vouch for the log (RFC 3161 time-stamps of checkpoints,
witness cosignatures; an SM2 cosignature on them, ``vault.anchors.sm2``) and this service as a
witness of other logs.

Owns ``ledger_timestamps``, ``ledger_cosignatures``, ``witness_cosigned`` and
``witness_refusals`` (all append-only). Guarantee: never in the way of checkpointing; a token or
a cosignature is stored only after it verifies for its checkpoint.
"""
