"""Backup and restore with the S3 store: the objects stay in their Object Lock bucket.

A bucket with COMPLIANCE locks is already the copy nobody can delete or overwrite before its date
(and the S3 service replicates it); copying it into every backup would double the footage for
nothing the lock does not already give. So with ``store.backend = "s3"``:

* ``evault backup`` copies the database, the checkpoints log, keys, configuration and the
  quarantine as always, and for the objects writes ``bucket-objects.jsonl``: for every object the
  snapshot references (the same list the file store's copy is checked against), its key, the
  version id of its original and its size, read from the bucket. An object the snapshot
  references but the bucket lacks is named in ``missing`` (the backup is then not ``ok``).
* ``evault restore`` restores the rest and, with the target configured on the same bucket,
  checks every recorded object: its original version must still be the one recorded, with the
  recorded size, and every plain object is re-hashed through the S3 API (``S3BlobStore.verify``:
  a version written over it or a delete marker also fails). Problems are ``bad_objects``.

The file listing (``bucket-objects.jsonl``) is covered by the manifest's hashes like every file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vault.errors import NotFound
from vault.ops import backupfmt as fmt
from vault.storage.s3store import S3BlobStore

__all__ = ["check_bucket_objects", "record_bucket_objects"]


async def record_bucket_objects(s3: S3BlobStore, needed: list[str], out: Path) -> list[str]:
    """Write ``bucket-objects.jsonl`` for the referenced keys ``needed`` into ``out``; returns
    the keys the bucket lacks."""
    lines: list[str] = []
    missing: list[str] = []
    for key in sorted(set(needed)):
        found = await s3.original_of(key)
        if found is None:
            missing.append(key)
            continue
        version, size = found
        item = {"key": key, "version": version, "size": size}
        lines.append(json.dumps(item, sort_keys=True) + "\n")
    fmt.write_durable(out / fmt.BUCKET_OBJECTS, "".join(lines).encode())
    return missing


def read_bucket_objects(backup: Path) -> list[dict[str, Any]]:
    path = backup / fmt.BUCKET_OBJECTS
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


async def check_bucket_objects(s3: S3BlobStore, backup: Path, needed: list[str]) -> list[str]:
    """Problems with the objects of a restored database in the bucket (module docstring)."""
    recorded = {str(i["key"]): i for i in read_bucket_objects(backup)}
    bad: list[str] = []
    for key in sorted(set(needed)):
        found = await s3.original_of(key)
        item = recorded.get(key)
        if found is None:
            bad.append(f"{key}: referenced by the database but not in the bucket")
        elif item is None:
            bad.append(f"{key}: referenced by the database but not in the backup's list")
        elif (found[0], found[1]) != (item["version"], item["size"]):
            bad.append(f"{key}: not the version the backup recorded")
        elif fmt.address_of(key) is not None:
            try:
                if not await s3.verify(key.rsplit("/", 1)[-1]):
                    bad.append(f"{key}: does not hash to its address, or was written over")
            except NotFound:
                bad.append(f"{key}: referenced by the database but not in the bucket")
    return bad
