"""Ops: keeping the vault whole over the years.

``scrub`` (re-hash every object through the read path, run fsck and ``fsck --state``, record a
``scrub`` entry), ``retention`` and ``disposition`` (legal holds, disposal after the ``disposed``
entry), ``backup`` and ``restore``. Owns ``legal_holds`` and ``dispositions``.
"""
