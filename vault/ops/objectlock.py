"""Object Lock follows the retention rules: the S3 store's COMPLIANCE locks are extended as the
rules keep an item longer (never shortened: S3 refuses that to everyone).

* Every object is locked at its write for ``store.s3.retain_days`` (``vault.storage.s3blobs``).
* ``extend_item``: a link to a case extends the locks of the item's original and renditions (every
  stored form, plain and sealed) to ``now + store.s3.hold_days``. Callers run it after the link
  committed; a failure is logged and repaired by the next retention run.
* ``lock_rendition``: a rendition made for an item linked to a case gets the same at once.
* ``refresh``: each ``evault retention run`` brings every item's locks up to its rule: the end of
  its period (``retention.expires_at``), and at least ``now + hold_days`` while it is linked, held,
  or kept permanently. Items disposed of are skipped.

Content that is sealed has only its sealed forms extended: a plain version left in the bucket
is superseded, and its lock must run out (``vault.storage.superseded`` then deletes it).

The database decides disposal, as on the file store; a lock only makes S3 refuse deleting earlier.
Disposal of an item whose lock has not expired yet stays pending (its ``disposed`` entry is
written first) and is finished by a later run. On the file store these are no-ops.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from vault import evidence as evrows
from vault.access.filters import linked_cases
from vault.db import Db
from vault.keys.hostmac import HostMac
from vault.ops.disposition import gather
from vault.ops.retention import RetentionPolicy, expires_at
from vault.policy.decide import Principal
from vault.storage.backend import ObjectStore, on_s3
from vault.storage.keystore_db import key_for

if TYPE_CHECKING:
    from vault.storage.s3blobs import S3Blobs

__all__ = ["extend_item", "refresh"]

log = logging.getLogger("evault.retention")


async def _hashes(db: Db, mac: HostMac, evidence_id: uuid.UUID) -> list[str]:
    row = await evrows.load_evidence(db, mac, evidence_id, where="object lock")
    if row is None:
        return []
    renditions = await evrows.renditions_of(db, mac, evidence_id)
    return [row.sha256, *sorted({r.sha256 for r in renditions})]


async def extend_item(
    blobs: ObjectStore,
    db: Db,
    mac: HostMac,
    evidence_id: uuid.UUID | str,
    *,
    now: datetime | None = None,
) -> int:
    """Lock the item's objects until ``now + hold_days`` at least; how many objects that
    covered (0 on the file store)."""
    if not on_s3(blobs):
        return 0
    until = (now or datetime.now(UTC)) + blobs.hold_for
    done = 0
    for sha in await _hashes(db, mac, uuid.UUID(str(evidence_id))):
        done += await _extend(blobs, db, sha, until)
    return done


async def _extend(blobs: S3Blobs, db: Db, sha256: str, until: datetime) -> int:
    """Extend every live form of this content: the sealed ones only once it is sealed."""
    plain = await key_for(db, sha256) is None
    return await asyncio.to_thread(lambda: blobs.extend(sha256, until, plain=plain))


async def lock_rendition(
    blobs: ObjectStore, db: Db, evidence_id: uuid.UUID, sha256: str, *, now: datetime | None = None
) -> int:
    """After a rendition of ``evidence_id`` was recorded: if the item is linked to a case, lock
    the rendition ``hold_days`` ahead like its original (0 objects otherwise, and on the file
    store)."""
    if not on_s3(blobs) or not (await linked_cases(db, [evidence_id])).get(evidence_id):
        return 0
    until = (now or datetime.now(UTC)) + blobs.hold_for
    return await _extend(blobs, db, sha256, until)


async def refresh(
    blobs: ObjectStore,
    db: Db,
    mac: HostMac,
    actor: Principal,
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
) -> int:
    """Bring every listed item's locks up to its rule (module docstring); objects covered."""
    if not on_s3(blobs):
        return 0
    now = now or datetime.now(UTC)
    done = 0
    for item in await gather(db, actor, mac=mac):
        if item.disposed:
            continue
        until = expires_at(item, policy)
        if until is None or item.case_count or item.on_hold:
            until = max(until or now, now + blobs.hold_for)
        if until <= now:
            continue  # its period is over: the lock is left to expire
        for sha in await _hashes(db, mac, uuid.UUID(item.evidence_id)):
            done += await _extend(blobs, db, sha, until)
    return done
