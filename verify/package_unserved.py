"""``unserved`` entries in a package: an entry the service committed although the COMMIT that
wrote it failed for the service, which answered its request with an error.

Such an entry is followed in the log by an ``unserved`` entry with ``entry`` (the index it
names, earlier than its own), ``leaf_hash`` (that entry's RFC 6962 leaf hash, hex),
``entry_kind``, ``answered`` (``"error"``) and ``noted_at``. A package that holds an entry
holds the ``unserved`` entries naming it. Guarantees of :func:`check_unserved` (run after the
entries were read):

* ``unserved`` (``info``, not a failure): entry N, in the package, was answered with an error
  (for an ``accessed`` decision: nothing was served; for a change, it stands though its caller
  was told it failed); the named entry's result says by which entry (``unserved_by``).
* ``unserved-invalid`` (malformed): the entry names no earlier index, or no 64-hex leaf hash.
* ``unserved-mismatch`` (tampered): the named entry is in the package but its leaf hash or kind
  is not the one the ``unserved`` entry states.
"""

from __future__ import annotations

import re
from typing import Any

from verify.merkle import leaf_hash
from verify.package import entry_path
from verify.report import PackageReport

__all__ = ["UNSERVED", "check_unserved"]

UNSERVED = "unserved"
SERVING_KINDS = frozenset({"accessed"})  # a decision to serve: answered with an error, not served
_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_unserved(
    entries: dict[int, tuple[bytes, dict[str, Any] | None]], r: PackageReport
) -> None:
    """Check every ``unserved`` entry of ``entries`` (index -> bytes, parsed body) against the
    entry it names; record findings in ``r`` and mark the named entries' results."""
    results = {e.index: e for e in r.entries}
    for i, (_data, obj) in sorted(entries.items()):
        if obj is None or obj.get("kind") != UNSERVED:
            continue
        where = entry_path(i)
        named, leaf, kind = obj.get("entry"), obj.get("leaf_hash"), obj.get("entry_kind")
        if (
            not isinstance(named, int)
            or isinstance(named, bool)
            or not 0 <= named < i
            or not isinstance(leaf, str)
            or not _HEX64.fullmatch(leaf)
        ):
            r.add(
                "unserved-invalid",
                "malformed",
                where,
                f"entry {i} ({UNSERVED}) must name an earlier entry and its leaf hash",
            )
            continue
        target = entries.get(named)
        if target is None:
            r.add(
                UNSERVED,
                "info",
                where,
                f"entry {i} says entry {named} ({kind}), not in the package, was committed "
                "though its request was answered with an error",
            )
            continue
        data, body = target
        actual = None if body is None else body.get("kind")
        if leaf_hash(data).hex() != leaf or actual != kind:
            r.add(
                "unserved-mismatch",
                "tampered",
                where,
                f"entry {i} ({UNSERVED}) names entry {named} by leaf hash {leaf[:16]}… and kind "
                f"{kind!r}, but entry {named} is leaf {leaf_hash(data).hex()[:16]}… of kind "
                f"{actual!r}",
            )
            continue
        if named in results:
            results[named].unserved_by = i
        what = (
            "nothing was served"
            if kind in SERVING_KINDS
            else "what it records stands, its caller was told it failed"
        )
        r.add(
            UNSERVED,
            "info",
            entry_path(named),
            f"entry {named} ({kind}) was committed though its request was answered with an "
            f"error: {what} (entry {i}; 请求已报错)",
        )
