"""Recording an offer: the ledger entry and the evidence rows, in one transaction (DESIGN §3-4).

Guarantees:

* ``record_offer`` returns only once the ``acquired`` or ``reoffered`` entry is durable together
  with its rows (``evidence`` + ``evidence_offers``, or an ``evidence_offers`` row alone) and a
  signed checkpoint covers it; if it raises, nothing of it was committed, or (a checkpoint
  timeout) the entry was committed and a retry records a re-offer.
* Exactly one ``acquired`` entry and one evidence row per content: the evidence row's unique
  hash decides; an acquisition that loses the race is retried as a re-offer.
* Entries carry only the hash, size, evidence id and label in the clear; file name, dock,
  device, officer and recording time are salted commitments (openings kept in PostgreSQL).
* An acquisition whose name does not match the dock's pattern, or whose recording time is after
  its acquisition, is logged as a warning and counted (``evault_dock_name_mismatch_total``,
  ``evault_dock_recorded_after_acquired_total``); the latter is also flagged in the evidence's
  metadata (``recorded_after_acquired``).
* The label on arrival is the dock's, raised (never lowered) by a sidecar's ``"label"``
  (``arrival_label``). A sealed blob's wrapped data key is stored (``object_keys``) in the same
  transaction as its evidence row, so content is never recorded without the key to read it.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ingest import metrics
from ingest.config import DockConfig
from ingest.dockfs import DockPath, display, name_b64
from ingest.mediajobs import PROCESS as MEDIA_PROCESS
from ingest.naming import NameInfo, NameParser
from ingest.receipts import Receipt, SourceState
from vault import evidence as evrows
from vault.db import Conn
from vault.errors import BadRequest
from vault.events import emit
from vault.jobs import enqueue
from vault.keys.hostmac import HostMac
from vault.ledger import Ledger, make_entry
from vault.ledger.entry import rfc3339
from vault.policy.labels import Label
from vault.storage.blobstore import StoredBlob
from vault.storage.keystore_db import insert_key
from vault.storage.sealwrite import SealedBlob

__all__ = ["Copied", "arrival_label", "read_sidecar", "record_offer"]

log = logging.getLogger("evault.ingest")

_MAX_SIDECAR = 64 << 10
_SIDECAR_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_Effect = Callable[[Conn, list[int]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Copied:
    """A durable blob and what is known about where it came from (``state`` None: a push)."""

    blob: StoredBlob
    state: SourceState | None
    sidecar: dict[str, Any] | None
    sidecar_error: str | None


def arrival_label(dock_label: Label, sidecar: dict[str, Any] | None) -> tuple[Label, str | None]:
    """(label on arrival, why the sidecar's label was unusable): the dock's label joined with a
    sidecar ``"label"`` (``level[+caveat...]`` or ``{"level", "caveats"}``, as in the API). An
    unusable one leaves the dock's label and is reported; the acquirer then seals the footage
    anyway (fail closed)."""
    raw = None if sidecar is None else sidecar.get("label")
    if raw is None:
        return dock_label, None
    try:
        return dock_label.join(Label.from_wire(raw, "sidecar: label")), None
    except BadRequest as exc:
        return dock_label, exc.detail


def _info(parser: NameParser, name: bytes, copied: Copied) -> tuple[NameInfo, str | None]:
    info = parser.parse(name)
    error = copied.sidecar_error
    if copied.sidecar is not None:
        try:
            info = parser.merge_sidecar(info, copied.sidecar)
        except BadRequest as exc:
            error = exc.detail
    return info, error


async def record_offer(
    ledger: Ledger,
    dock: DockConfig,
    parser: NameParser,
    label: Label,
    rel: bytes,
    copied: Copied,
    *,
    via: str,
) -> Receipt:
    """Record ``copied`` as offered by ``dock`` (whose label is ``label``) under the path
    ``rel`` (module docstring)."""
    blob = copied.blob
    name = rel.rpartition(b"/")[2]
    info, sidecar_error = _info(parser, name, copied)
    label, label_error = arrival_label(label, copied.sidecar)
    sidecar_error = sidecar_error or label_error
    secrets: dict[str, Any] = {"file_name": display(rel), "dock_id": dock.id}
    if (raw := name_b64(rel)) is not None:
        secrets["file_name_bytes"] = raw
    public = {"sha256": blob.sha256, "size": blob.size}
    ahead = False  # recorded after it was acquired (the row's acquired_at is later than now)
    while True:
        found = await evrows.by_sha256(ledger.pool, ledger.mac, blob.sha256)
        held = found[0].id if found else None
        effect: _Effect
        if held is not None:
            evidence_id, kind = str(held), "reoffered"
            entry = make_entry(kind, {"evidence_id": evidence_id, **public}, secrets)
            effect = _offer_effect(evidence_id, dock.id, display(rel), reoffer=True)
        else:
            evidence_id, kind = str(uuid.uuid4()), "acquired"
            when = None if info.recorded_at is None else info.recorded_at.isoformat()
            committed = {
                **secrets,
                "device_id": info.device_id,
                "officer_id": info.officer_id,
                "recorded_at": when,
            }
            fields = {"evidence_id": evidence_id, **public, "label": str(label)}
            ahead = info.recorded_at is not None and info.recorded_at > datetime.now(UTC)
            entry = make_entry(kind, fields, committed)
            meta = {
                "via": via,
                "source_path": display(rel),
                "source_path_b64": name_b64(rel),
                "name_matched": info.matched,
                "seq": info.seq,
                "sidecar": copied.sidecar,
                "sidecar_error": sidecar_error,
                "source_state": None if copied.state is None else asdict(copied.state),
            }
            if ahead:
                meta["recorded_after_acquired"] = True
            new = evrows.NewEvidence(
                id=uuid.UUID(evidence_id),
                sha256=blob.sha256,
                size=blob.size,
                dock_id=dock.id,
                device_id=info.device_id,
                officer_id=info.officer_id,
                recorded_at=info.recorded_at,
                acquired_at=datetime.now(UTC),
                file_name=display(name),
                extension=info.ext,
                label=label,
                metadata=json.dumps(meta, ensure_ascii=False),
            )
            effect = _evidence_effect(ledger.mac, new, dock.id, blob, str(meta["source_path"]))
        try:
            [index] = await ledger.append([entry], effect=effect, wait_checkpoint=True)
            break
        except asyncpg.UniqueViolationError:
            continue  # another acquisition stored this content first: record a re-offer
    checkpoint = await ledger.checkpoint_covering(index)
    acquired = kind == "acquired"
    (metrics.ACQUIRED_FILES if acquired else metrics.REOFFERED_FILES).labels(dock.id).inc()
    (metrics.ACQUIRED_BYTES if acquired else metrics.REOFFERED_BYTES).labels(dock.id).inc(blob.size)
    log.info("dock %s: %s %s as ledger entry %d", dock.id, kind, blob.sha256, index)
    if acquired:
        _warn_odd_arrival(dock.id, evidence_id, info, ahead=ahead)
    return Receipt(
        sha256=blob.sha256,
        size=blob.size,
        evidence_id=evidence_id,
        ledger_index=index,
        kind=kind,
        checkpoint=checkpoint.note,
        dock_id=dock.id,
        time=rfc3339(),
        source_name=display(rel),
        source=copied.state,
    )


def _warn_odd_arrival(dock_id: str, evidence_id: str, info: NameInfo, *, ahead: bool) -> None:
    """Log and count what an operator should look at (module docstring). Never the file name
    (it may name an officer or a place): the evidence id leads to it, under access control."""
    if not info.matched:
        metrics.DOCK_NAME_MISMATCH.labels(dock_id).inc()
        log.warning(
            "dock %s: the file name of evidence %s does not match the dock's pattern: no device,"
            " officer or recording time from its name",
            dock_id,
            evidence_id,
        )
    if ahead and info.recorded_at is not None:
        metrics.DOCK_RECORDED_AFTER_ACQUIRED.labels(dock_id).inc()
        log.warning(
            "dock %s: evidence %s recorded_at %s is after its acquisition: recorder clock or"
            " zone wrong? (flagged recorded_after_acquired)",
            dock_id,
            evidence_id,
            info.recorded_at.isoformat(),
        )


def _offer_effect(evidence_id: str, dock_id: str, source_name: str, *, reoffer: bool) -> _Effect:
    async def effect(conn: Conn, indexes: list[int]) -> None:
        await evrows.record_offer(
            conn, uuid.UUID(evidence_id), indexes[0], dock_id, source_name, reoffer=reoffer
        )

    return effect


def _evidence_effect(
    mac: HostMac, new: evrows.NewEvidence, dock_id: str, blob: StoredBlob, source: str
) -> _Effect:
    evidence_id = str(new.id)
    offer = _offer_effect(evidence_id, dock_id, source, reoffer=False)

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await evrows.insert_evidence(conn, mac, new, indexes[0])
        if isinstance(blob, SealedBlob):
            await insert_key(conn, blob.key, blob.chunk_size)
        await offer(conn, indexes)
        # Media work is queued in the same transaction: no acquisition without its job.
        await enqueue(
            conn, MEDIA_PROCESS, {"evidence_id": evidence_id}, dedupe_key=f"media:{evidence_id}"
        )
        await emit(
            conn,
            "evidence.acquired",
            {"evidence_id": evidence_id, "sha256": blob.sha256, "ledger_index": indexes[0]},
        )

    return effect


def read_sidecar(dp: DockPath) -> tuple[dict[str, Any] | None, str | None]:
    """The dock's ``<name>.json`` (a regular file, not a link, at most 64 KiB, a JSON object),
    or (None, None) if there is none, or (None, why) if it is unusable."""
    sname = dp.name + b".json"
    if len(sname) > 255:
        return None, None
    try:
        fd = os.open(sname, _SIDECAR_FLAGS, dir_fd=dp.fd)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"sidecar not readable: {os.strerror(exc.errno or 0)}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_SIDECAR:
            return None, "sidecar is not a regular file of at most 64 KiB"
        data = json.loads(os.read(fd, _MAX_SIDECAR + 1))
    except (OSError, ValueError) as exc:
        return None, f"sidecar unusable: {type(exc).__name__}"
    finally:
        os.close(fd)
    if not isinstance(data, dict):
        return None, "sidecar is not a JSON object"
    return data, None
