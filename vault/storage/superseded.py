"""Plain versions superseded by their sealed copy on the S3 store, deleted once their lock expired.

When content is re-encrypted after its label rose (``vault.storage.reseal``) its plain object
must go; on S3 a plain version under COMPLIANCE Object Lock cannot be deleted before its
retain-until date, by anyone. It is recorded instead, and a later pass deletes it:

* ``keep_superseded`` (the re-encryption, once the sealed copy's key row is stored and the
  removal of the plain object was refused): one ``retention`` ledger entry (op
  ``plain-superseded``: the content's SHA-256, the plain version id, the sealed object id) and,
  in the same transaction, a ``superseded_plain`` row (migration 018) carrying the host MAC tag
  of its key, sealed object id and that entry's index (``vault.keys.hostmac``). A row inserted
  or edited in the database does not verify and deletes nothing (the alarm is raised).
* ``keep_leftover`` (an acquisition of content held sealed, after ``Storage.settle`` could not
  remove the plain copy it wrote or found): the same record, for the live sealed object.
* ``remove_expired`` (each ``evault retention run``, and the service's scrub scheduler at every
  check): for each recorded version not removed yet, in order: the row verifies; the content is
  still sealed (a key row: content stored plain again keeps its plain version, which is live
  again); the plain version's lock has expired (else it waits for a later pass; the date read
  is remembered, and until then the store is not asked again); its sealed object reads back
  (decrypted in full, it hashes to the address; a copy that does not is reported and nothing is
  deleted). Only then is exactly that version deleted (S3 itself refuses while a
  lock holds), and a ``retention`` entry (op ``plain-removed``, naming the ``plain-superseded``
  entry) is appended, marking the row in the same transaction.
* Until then the plain version is never served: content with a key row is read only through
  its sealed object (``vault.storage.storage``), and locks are extended on its sealed forms
  only (``vault.ops.objectlock``), so the plain version's lock runs out.

On the file store nothing is recorded: a plain object is removed at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vault import evidence as evrows
from vault.db import Conn, Db
from vault.errors import Conflict, IntegrityError, NotFound
from vault.keys.hostmac import HostMac, RowTampered
from vault.ledger import LedgerWriter, make_entry
from vault.storage.backend import on_s3
from vault.storage.storage import Storage

__all__ = ["TABLE", "SupersededRun", "keep_leftover", "keep_superseded", "remove_expired"]

log = logging.getLogger("evault.storage")

TABLE = "superseded_plain"


def _tag(mac: HostMac, sha256: str, version: str, object_id: bytes, idx: int) -> bytes:
    return mac.row(TABLE, (sha256, version), {"object_id": object_id}, idx)


async def keep_superseded(
    storage: Storage, db: Db, ledger: LedgerWriter, sha256: str, object_id: bytes
) -> bool:
    """Record the plain version of ``sha256`` left in the bucket after it was sealed as
    ``object_id`` (module docstring). False if there is none (or the store is not S3) or it is
    recorded already."""
    blobs = storage.blobs
    if not on_s3(blobs):
        return False
    version = await asyncio.to_thread(blobs.plain_original, sha256)
    if version is None:
        return False
    known = await db.fetchval(
        "SELECT 1 FROM superseded_plain WHERE sha256 = $1 AND version_id = $2", sha256, version
    )
    if known:
        return False
    entry = make_entry(
        "retention",
        {
            "op": "plain-superseded",
            "sha256": sha256,
            "version": version,
            "sealed_object": object_id.hex(),
        },
    )

    async def effect(conn: Conn, indexes: list[int]) -> None:
        (idx,) = indexes
        await conn.execute(
            "INSERT INTO superseded_plain (sha256, version_id, object_id, ledger_idx, tag)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            sha256,
            version,
            object_id,
            idx,
            _tag(ledger.mac, sha256, version, object_id, idx),
        )

    await ledger.append([entry], effect=effect)
    log.info("S3 store: plain version %s of %s kept until its lock expires", version, sha256)
    return True


async def keep_leftover(storage: Storage, ledger: LedgerWriter, sha256: str) -> bool:
    """After ``Storage.settle`` of a plain copy of ``sha256``: if the content is held sealed
    and a plain version stayed in the bucket (locked), record it as ``keep_superseded`` does.
    False where nothing was recorded (the file store, plain content, nothing left)."""
    if not on_s3(storage.blobs):
        return False
    live = await storage.content.key(sha256)
    if live is None:
        return False
    return await keep_superseded(storage, storage.content.db, ledger, sha256, live.object_id)


@dataclass
class SupersededRun:
    """What a pass did: versions deleted, left for later (locked), kept (stored plain again),
    and refused (a row that does not verify, a sealed copy that does not read back)."""

    removed: list[tuple[str, str]] = field(default_factory=list)
    waiting: list[tuple[str, datetime]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


async def remove_expired(
    storage: Storage, db: Db, ledger: LedgerWriter, *, now: datetime | None = None
) -> SupersededRun:
    """Delete the recorded plain versions whose lock has expired (module docstring)."""
    run = SupersededRun()
    blobs = storage.blobs
    if not on_s3(blobs):
        return run
    at = now or datetime.now(UTC)
    rows = await db.fetch(
        "SELECT sha256, version_id, object_id, ledger_idx, tag, locked_until"
        " FROM superseded_plain WHERE removed_idx IS NULL ORDER BY ledger_idx"
    )
    for row in rows:
        sha, version, idx = row["sha256"], row["version_id"], int(row["ledger_idx"])
        if row["locked_until"] is not None and row["locked_until"] > at:
            run.waiting.append((sha, row["locked_until"]))  # a lock never shortens
            continue
        try:
            ledger.mac.check_row(
                row["tag"], TABLE, (sha, version), {"object_id": bytes(row["object_id"])}, idx
            )
        except RowTampered as exc:
            await evrows.alarm(db, exc, "removal of superseded plain versions")
            run.refused.append((sha, "its record does not verify"))
            continue
        if await storage.content.key(sha) is None:
            run.kept.append(sha)  # stored plain again: that version is the live one now
            continue
        try:
            until = await asyncio.to_thread(blobs.plain_lock, sha, version)
        except NotFound:
            until = None
        if until is not None and until > at:
            await db.execute(
                "UPDATE superseded_plain SET locked_until = $3 WHERE sha256 = $1"
                " AND version_id = $2",
                sha,
                version,
                until,
            )
            run.waiting.append((sha, until))
            continue
        why = await _sealed_reads_back(storage, sha)
        if why is not None:
            log.error("S3 store: plain version %s of %s kept: %s", version, sha, why)
            run.refused.append((sha, why))
            continue
        try:
            gone = await asyncio.to_thread(blobs.remove_plain_version, sha, version)
        except Conflict:  # S3 still holds it (its clock, or a lock extended meanwhile)
            run.waiting.append((sha, until or at))
            continue
        await _record_removal(ledger, sha, version, idx, present=gone)
        run.removed.append((sha, version))
    return run


async def _sealed_reads_back(storage: Storage, sha256: str) -> str | None:
    """None if the content's sealed object decrypts in full to bytes hashing to ``sha256``;
    else why not."""
    try:
        obj = await storage.content.open(sha256)
    except (NotFound, IntegrityError) as exc:
        return f"its sealed copy cannot be read: {exc}"
    try:

        def digest() -> str:
            h = hashlib.sha256()
            for piece in obj.read_range(0, obj.size):
                h.update(piece)
            return h.hexdigest()

        got = await asyncio.to_thread(digest)
    except IntegrityError as exc:
        return f"its sealed copy does not verify: {exc}"
    finally:
        obj.close()
    return None if got == sha256 else "its sealed copy does not hash to the address"


async def _record_removal(
    ledger: LedgerWriter, sha256: str, version: str, idx: int, *, present: bool
) -> None:
    entry = make_entry(
        "retention",
        {
            "op": "plain-removed",
            "sha256": sha256,
            "version": version,
            "superseded": idx,
            "found": present,
        },
    )

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await conn.execute(
            "UPDATE superseded_plain SET removed_idx = $3"
            " WHERE sha256 = $1 AND version_id = $2 AND removed_idx IS NULL",
            sha256,
            version,
            indexes[0],
        )

    await ledger.append([entry], effect=effect)
    log.info("S3 store: superseded plain version %s of %s deleted", version, sha256)
