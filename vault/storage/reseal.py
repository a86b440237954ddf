"""Re-encryption when a label rises, and decryption when an admin asks (DESIGN §5).

A label change (``vault.cases.links.set_label``) or a link to a classified case
(``vault.cases.links.link``) enqueues a ``vault.seal`` job in the same transaction as its ledger
entry (``enqueue_seal``), so the work survives crashes and runs wherever job workers run (``evault
serve``'s media part). The job seals every object of the evidence that its effective label (own
label joined with its current cases' labels, and each rendition's own label) says must be encrypted.

Guarantees:

* ``seal_object``: a new sealed object is written from the plain one (which must hash to its
  address, else ``IntegrityError`` and nothing changes), verified by decrypting all of it and
  hashing the plaintext, and only then is its key row stored and the plain object removed. A
  crash at any point leaves the plain object readable (no key row yet) or the sealed one (key
  row stored; a leftover plain copy is removed by the next run). Idempotent. On the S3 store a
  plain version still under its Object Lock cannot be removed yet: it is recorded, bound to
  the ledger, and deleted once its lock expired (``vault.storage.superseded``).
* ``unseal_object`` (an admin lowered the label and asked): the plaintext is written as a plain
  object checked against the address, then the key row is deleted, then the sealed object
  removed. Nothing is decrypted while the effective label (or a rendition's) still needs
  encryption.
* Content address, ledger entries and evidence rows never change: only the storage form does.
* Concurrent readers keep reading throughout (``vault.storage.storage.SealingContentStore``
  re-reads the key row once when an object moves under it).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from itertools import islice
from typing import Any

from vault import evidence as evrows
from vault.access.filters import label_of, linked_cases
from vault.db import Db
from vault.errors import IntegrityError, NotFound
from vault.jobs import Job, enqueue
from vault.keys.hostmac import HostMac, RowTampered
from vault.ledger import LedgerWriter
from vault.policy.decide import effective_label
from vault.policy.labels import Label
from vault.storage.keyring import unwrap
from vault.storage.keystore_db import delete_key, insert_key
from vault.storage.sealing import SealedReader
from vault.storage.sealwrite import SealedBlob
from vault.storage.storage import Storage, open_plain
from vault.storage.superseded import keep_superseded

__all__ = ["SEAL", "Resealer", "enqueue_seal", "evidence_label"]

log = logging.getLogger("evault.storage")

SEAL = "vault.seal"


async def enqueue_seal(
    db: Db, kind: str, target_id: str, idx: int, *, unseal: bool = False
) -> None:
    """Queue (re-)encryption -- or, with ``unseal``, decryption -- of what ``kind``/``target_id``
    (evidence, rendition or case) covers; call in the transaction that changed its label."""
    payload = {"kind": kind, "id": target_id, "unseal": unseal}
    await enqueue(db, SEAL, payload, dedupe_key=f"seal:{idx}:{kind}:{target_id}")


async def evidence_label(db: Db, evidence_id: uuid.UUID, *, mac: HostMac) -> Label | None:
    """The evidence's effective label (own joined with current cases'), None if absent; from a
    row that verifies (RowTampered otherwise: nothing is decided on a forged label)."""
    row = await evrows.load_evidence(db, mac, evidence_id, where="encryption at rest")
    if row is None:
        return None
    cases = (await linked_cases(db, [evidence_id]))[evidence_id]
    return effective_label(label_of(row.label_level, row.label_caveats), cases.values())


async def _evidence_ids(db: Db, mac: HostMac, kind: str, target_id: str) -> list[uuid.UUID]:
    if kind == "evidence":
        return [uuid.UUID(target_id)]
    if kind == "rendition":
        r = await evrows.load_rendition(db, mac, target_id, where="encryption at rest")
        return [] if r is None else [r.evidence_id]
    rows = await db.fetch(
        "SELECT DISTINCT evidence_id FROM case_evidence_history WHERE case_id = $1", target_id
    )
    return [r["evidence_id"] for r in rows]


async def _held_classified(db: Db, mac: HostMac, sha256: str) -> bool:
    """Whether a holder of ``sha256`` (an original or a rendition; identical content may be held
    twice) has its own label needing encryption: content is decrypted only when none has. A
    holder whose row does not verify counts as classified (fail closed)."""
    rows = await evrows.holders(db, sha256)
    for table, row in rows:
        try:
            (evrows.check_evidence if table == "evidence" else evrows.check_rendition)(mac, row)
        except RowTampered as exc:
            await evrows.alarm(db, exc, "decryption")
            return True
        if label_of(row["label_level"], row["label_caveats"]).needs_encryption:
            return True
    return False


class Resealer:
    """Moves objects between the plain and the sealed form (module docstring)."""

    def __init__(
        self, storage: Storage, db: Db, *, mac: HostMac, ledger: LedgerWriter | None = None
    ) -> None:
        """``ledger``: where a plain version kept by its Object Lock is recorded for its later
        removal (``vault.storage.superseded``); without it, such a version is only logged."""
        self.storage = storage
        self.db = db
        self.mac = mac
        self.ledger = ledger

    def handlers(self) -> dict[str, Any]:
        """Job handlers to register with a ``vault.jobs.JobRunner``."""
        return {SEAL: self.run}

    async def run(self, job: Job) -> Mapping[str, Any]:
        kind, target = str(job.payload["kind"]), str(job.payload["id"])
        unseal = bool(job.payload.get("unseal"))
        done: list[str] = []
        for eid in await _evidence_ids(self.db, self.mac, kind, target):
            done += await (self.unseal_evidence(eid) if unseal else self.seal_evidence(eid))
        return {"unsealed" if unseal else "sealed": done}

    async def _objects(self, eid: uuid.UUID) -> tuple[Label, list[tuple[str, Label]]] | None:
        """(effective label, [(sha256, label it must be stored under)]), None if disposed."""
        row = await evrows.load_evidence(self.db, self.mac, eid, where="encryption at rest")
        label = await evidence_label(self.db, eid, mac=self.mac)
        if row is None or label is None or row.disposed_at is not None:
            return None
        objects = [(row.sha256, label)]
        for r in await evrows.rendition_rows(self.db, [eid]):
            try:
                evrows.check_rendition(self.mac, r)
            except RowTampered as exc:  # never decide on a forged row: the job fails, retried
                await evrows.alarm(self.db, exc, "encryption at rest")
                raise
            objects.append(
                (r["sha256"], label.join(label_of(r["label_level"], r["label_caveats"])))
            )
        return label, objects

    async def seal_evidence(self, evidence_id: uuid.UUID) -> list[str]:
        """Seal the original and renditions whose label needs it; return what this sealed."""
        found = await self._objects(evidence_id)
        sealed: list[str] = []
        for sha, label in found[1] if found else []:
            if not label.needs_encryption:
                continue
            try:
                if await self.seal_object(sha):
                    sealed.append(sha)
            except NotFound:
                log.warning("re-encryption: object %s is missing (scrub reports it)", sha)
        return sealed

    async def unseal_evidence(self, evidence_id: uuid.UUID) -> list[str]:
        """Decrypt the original and renditions whose label no longer needs encryption."""
        found = await self._objects(evidence_id)
        if found is None:
            return []
        if found[0].needs_encryption:
            log.info("decryption: %s kept sealed (its effective label requires it)", evidence_id)
            return []
        done = []
        for sha, label in found[1]:
            if not label.needs_encryption and await self.unseal_object(sha):
                done.append(sha)
        return done

    # -- one object ---------------------------------------------------------------------------

    async def seal_object(self, sha256: str) -> bool:
        """Store ``sha256`` sealed (module docstring); True if this call sealed it."""
        storage = self.storage
        if await storage.content.key(sha256) is None:
            blob = await asyncio.to_thread(self._seal_plain, sha256)
            if await insert_key(self.db, blob.key, blob.chunk_size):
                await self._drop_plain(sha256, blob.key.object_id)
                log.info("re-encryption: %s is now sealed", sha256)
                return True
            await asyncio.to_thread(storage.blobs.remove_sealed, sha256, blob.key.object_id)
        live = await storage.content.key(sha256)
        if live is not None:  # sealed already: no plain copy may stay
            await self._drop_plain(sha256, live.object_id)
        return False

    async def _drop_plain(self, sha256: str, object_id: bytes) -> None:
        """Remove the plain copy of content now sealed as ``object_id``; one its Object Lock
        keeps is recorded for removal once the lock expires."""
        self.storage.content.forget(sha256)  # no plain copy kept open in this process either
        if await asyncio.to_thread(self.storage.blobs.remove_plain, sha256):
            return
        if self.ledger is not None:
            await keep_superseded(self.storage, self.db, self.ledger, sha256, object_id)

    def _seal_plain(self, sha256: str) -> SealedBlob:
        """Seal the plain object and verify the result by decrypting and hashing all of it."""
        storage = self.storage
        plain = open_plain(storage.blobs, sha256, storage.content.scratch)
        try:
            blob = storage.sealer.seal_chunks(plain.read_range(0, plain.size))
        finally:
            plain.close()
        try:
            if blob.sha256 != sha256:
                raise IntegrityError(f"plain object {sha256} does not match its address")
            dek = unwrap(storage.content.keks, blob.key.wrapped, blob.key.object_id, sha256)
            with storage.blobs.open_sealed(sha256, blob.key.object_id) as g:
                check = SealedReader(dek, g).verify()
            if (check.sha256, check.size) != (sha256, blob.size):
                raise IntegrityError(f"re-encrypted {sha256} does not read back as written")
        except BaseException:
            storage.blobs.remove_sealed(blob.sha256, blob.key.object_id)
            raise
        return blob

    async def unseal_object(self, sha256: str) -> bool:
        """Store ``sha256`` plain again (module docstring); True if this call did it."""
        storage = self.storage
        key = await storage.content.key(sha256)
        if key is None or await _held_classified(self.db, self.mac, sha256):
            return False
        obj = await storage.content.open(sha256)
        try:

            async def chunks() -> AsyncIterator[bytes]:
                pieces = obj.read_range(0, obj.size)
                while batch := await asyncio.to_thread(lambda: list(islice(pieces, 16))):
                    for piece in batch:
                        yield piece

            await storage.blobs.ingest_stream(chunks(), expected_sha256=sha256, max_bytes=None)
        finally:
            obj.close()
        if await delete_key(self.db, key):
            storage.content.forget(sha256)  # nor its data key's cipher kept in this process
            await asyncio.to_thread(storage.blobs.remove_sealed, sha256, key.object_id)
        log.info("decryption: %s is now stored plain", sha256)
        return True
