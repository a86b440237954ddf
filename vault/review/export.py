"""Export a case as a self-verifying package (DESIGN §6, format in ``verify.package``).

Guarantees:
- Only what the exporting principal may export is included: the case itself is an ``export``
  decision, and so is every evidence item (each recorded as ``accessed``/``denied``); items the
  principal may not see leave no trace in the package.
- Commitment openings are disclosed only for evidence the principal may export (its acquisition
  metadata) and for the case being exported; every other commitment stays closed.
- Every entry is proven against one checkpoint that includes them all: the newest one with an
  RFC 3161 time-stamp if that includes them all (the token goes in as ``timestamp.tsr``),
  else the latest; the package is written
  to a temporary sibling and renamed into place (never over an existing path), and only then is
  an ``exported`` entry carrying the manifest's SHA-256 appended to the ledger.
- A package holds plaintext (also of footage stored encrypted): its files are created 0600 and
  its folders 0700 whatever the umask, and a zip's members are marked 0600 for unzip.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from vault import evidence as evrows
from vault.access import decisions, targets
from vault.access.listing import EvidenceQuery, list_evidence
from vault.anchors.cosigners import wait_cosignatures
from vault.anchors.sm2 import Sm2Cosigner
from vault.anchors.timestamps import anchored_checkpoint, stated_time, wait_anchored
from vault.config import DEFAULT_TIMEZONE
from vault.errors import BadRequest, Conflict, Forbidden, NotFound
from vault.keys.hostmac import HostMac
from vault.ledger import Ledger, make_entry
from vault.ledger.entry import rfc3339
from vault.ledger.indoubt import unserved_naming
from vault.ledger.tiles import consistency_proof, inclusion_proof
from vault.policy.decide import Action, Principal
from vault.review.report_html import ReportItem, render_report
from vault.storage.content import ContentStore, Readable
from verify.canonical import canonical_json, parse_canonical
from verify.checkpoint import open_checkpoint
from verify.note import parse_note
from verify.package import (
    CHECKPOINT_PATH,
    COSIGNATURES_PATH,
    MANIFEST_PATH,
    MANIFEST_SIG_PATH,
    REPORT_PATH,
    TIMESTAMP_PATH,
    VKEY_PATH,
    Manifest,
    PackageFile,
    consistency_path,
    entry_path,
    format_consistency_proof,
    format_openings,
    manifest_bytes,
    opening_path,
    proof_path,
    sign_manifest,
    vkey_file_text,
)
from verify.tlogproof import TlogProof, format_tlog_proof

RENDITION_KINDS = ("proxy", "poster", "clip", "fingerprint", "redacted")
_EXT = {"proxy": "mp4", "poster": "jpg", "clip": "mp4", "fingerprint": "json", "redacted": "mp4"}


@dataclass
class ExportResult:
    """What was written: the package path, the manifest hash and the ``exported`` entry."""

    path: Path
    manifest_sha256: str
    exported_index: int
    files: int
    entries: int
    skipped: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    entries: set[int] = field(default_factory=set)
    disclosed: set[int] = field(default_factory=set)
    files: list[tuple[PackageFile, str]] = field(default_factory=list)  # (file, blob sha256)
    items: list[ReportItem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    inline: dict[str, bytes] = field(default_factory=dict)  # files made here (redaction specs)


async def export_case(
    ledger: Ledger,
    content: ContentStore,
    actor: Principal,
    case_id: str,
    out: Path,
    *,
    renditions: Sequence[str] = (),
    as_zip: bool = False,
    since: str | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    timestamp_wait: float = 0.0,
    witnesses: tuple[int, float] = (0, 0.0),
    originals: bool = True,
) -> ExportResult:
    """Write the package for ``case_id`` to ``out`` (a folder, or a zip with ``as_zip``);
    ``report.html`` shows times in ``timezone`` (``export.timezone``); ``timestamp_wait``:
    seconds to wait for a time-stamped checkpoint covering the entries; ``witnesses``: (how
    many witnesses are configured, seconds to wait for their cosignatures of the checkpoint).
    ``originals=False`` leaves the originals' bytes out (their ``acquired`` entries stay,
    proven): a package of redacted copies only, each with its spec, for sharing without the
    footage itself."""
    bad = sorted(set(renditions) - set(RENDITION_KINDS))
    if bad:
        raise BadRequest(f"unknown rendition kinds {bad}; choose from {list(RENDITION_KINDS)}")
    if await asyncio.to_thread(os.path.lexists, out):
        raise Conflict(f"{out} exists: a package is never written over anything")
    db = ledger.pool
    case = await targets.authorize(db, ledger, actor, Action.EXPORT, "case", case_id)
    if not originals and not renditions:
        raise BadRequest("a package without originals needs renditions (e.g. redacted)")
    plan = await _plan(ledger, actor, case_id, renditions, originals)
    last = max(plan.entries, default=0)
    # The newest checkpoint with an RFC 3161 time-stamp, when one covers every entry (and
    # --since); else the latest checkpoint, without a time-stamp.
    stamped = await anchored_checkpoint(db, last + 1)
    if stamped is None and timestamp_wait > 0:
        await ledger.checkpoint_covering(last)  # signed now, so the time-stamper can stamp it
        stamped = await wait_anchored(db, last + 1, timestamp_wait)
    newer = since is not None and open_checkpoint(since, ledger.verifier).size
    if stamped is not None and newer and newer > stamped.checkpoint.size:
        stamped = None
    cp = stamped.checkpoint if stamped is not None else await ledger.checkpoint_covering(last)
    checkpoint = open_checkpoint(cp.note, ledger.verifier)
    consistency: dict[int, bytes] = {}
    if since is not None:
        old = open_checkpoint(since, ledger.verifier)
        if old.size > cp.size:
            raise Conflict("the --since checkpoint is newer than the ledger's latest")
        if 0 < old.size < cp.size:
            async with db.acquire() as conn:
                consistency[old.size] = format_consistency_proof(
                    await consistency_proof(conn, old.size, cp.size)
                )
    members = await _members(ledger, plan, cp.note, cp.size)
    cosigs = "".join(await wait_cosignatures(db, cp.size, *witnesses)) if witnesses[0] else ""
    if cosigs:
        members[COSIGNATURES_PATH] = cosigs.encode()
    for size, proof in consistency.items():
        members[consistency_path(size)] = proof
    report = render_report(
        case_id=case_id,
        case_label=str(case.label),
        exported_by=actor.id,
        exported_at=rfc3339(),
        checkpoint_size=checkpoint.size,
        root_hash=checkpoint.root_hash,
        vkey=ledger.signer.vkey,
        items=plan.items,
        timezone=timezone,
        timestamp=None if stamped is None else stated_time(stamped.token),
        sm2=_sm2_state(ledger, cp.note),
        witnesses=tuple(line[2:].split(" ")[0] for line in cosigs.splitlines()),
    ).encode()
    manifest = Manifest(
        origin=checkpoint.origin,
        case_id=case_id,
        case_label=str(case.label),
        exported_by=actor.id,
        exported_at=rfc3339(),
        checkpoint_size=cp.size,
        entries=tuple(sorted(plan.entries)),
        files=tuple(sorted((f for f, _ in plan.files), key=lambda f: f.path)),
        report=(REPORT_PATH, hashlib.sha256(report).hexdigest(), len(report)),
        consistency=tuple(sorted(consistency)),
        timestamp=None
        if stamped is None
        else (TIMESTAMP_PATH, hashlib.sha256(stamped.token).hexdigest(), len(stamped.token)),
        cosignatures=None
        if not cosigs
        else (COSIGNATURES_PATH, hashlib.sha256(cosigs.encode()).hexdigest(), len(cosigs.encode())),
    )
    mbytes = manifest_bytes(manifest)
    members[MANIFEST_PATH] = mbytes
    members[MANIFEST_SIG_PATH] = sign_manifest(mbytes, ledger.signer).encode()
    members[VKEY_PATH] = vkey_file_text(ledger.verifier).encode()
    members[CHECKPOINT_PATH] = cp.note.encode()
    members[REPORT_PATH] = report
    members.update(plan.inline)
    if stamped is not None:
        members[TIMESTAMP_PATH] = stamped.token
    blobs = {f.path: await content.open(sha) for f, sha in plan.files if f.path not in plan.inline}
    try:
        await asyncio.to_thread(_write, out, members, blobs, as_zip)
    finally:
        for obj in blobs.values():
            obj.close()
    digest = hashlib.sha256(mbytes).hexdigest()
    entry = make_entry(
        "exported",
        {"manifest_sha256": digest, "files": len(blobs), "entries": len(plan.entries)},
        {"case": case_id, "principal": actor.id},
    )
    (idx,) = await ledger.append([entry], effect=_refs(case_id))
    return ExportResult(out, digest, idx, len(blobs), len(plan.entries), plan.skipped)


def _sm2_state(ledger: Ledger, note: str) -> tuple[bool, str, str] | None:
    """(cosigned, key name, fingerprint) of the service's SM2 key on ``note``, if it has one."""
    for c in ledger.cosigners:
        if isinstance(c, Sm2Cosigner):
            lines = parse_note(note).signatures
            cosigned = any((s.name, s.key_id) == (c.name, c.key_id) for s in lines)
            return cosigned, c.name, c.fingerprint
    return None


def _refs(case_id: str) -> Any:
    async def effect(conn: Any, indexes: list[int]) -> None:
        await decisions.add_refs(conn, [(indexes[0], "case", case_id)])

    return effect


async def _plan(
    ledger: Ledger, actor: Principal, case_id: str, kinds: Sequence[str], originals: bool = True
) -> _Plan:
    db = ledger.pool
    plan = _Plan()
    cursor: str | None = None
    while True:
        page = await list_evidence(
            db, actor, EvidenceQuery(case_id=case_id), limit=500, cursor=cursor, mac=ledger.mac
        )
        for item in page.items:
            try:
                await targets.authorize(db, ledger, actor, Action.EXPORT, "evidence", item.id)
            except Forbidden as exc:
                plan.skipped.append(f"{item.id}: {exc.detail}")
                continue
            except NotFound:
                continue
            await _plan_item(db, ledger.mac, plan, item.id, case_id, kinds, originals)
        if page.next_cursor is None:
            return plan
        cursor = page.next_cursor


async def _plan_item(
    db: Any,
    mac: HostMac,
    plan: _Plan,
    evidence_id: str,
    case_id: str,
    kinds: Sequence[str],
    originals: bool = True,
) -> None:
    row = await evrows.load_evidence(db, mac, evidence_id, where="export")
    if row is None:
        raise NotFound(f"evidence {evidence_id} does not exist")
    plan.entries.add(row.ledger_idx)
    plan.disclosed.add(row.ledger_idx)
    ext = (row.extension or "bin").lower() if (row.extension or "").isalnum() else "bin"
    if originals:
        plan.files.append(
            (
                PackageFile(
                    f"files/{row.sha256}.{ext[:16]}",
                    row.sha256,
                    row.size,
                    "original",
                    evidence_id,
                    row.ledger_idx,
                ),
                row.sha256,
            )
        )
    for r in await evrows.renditions_of(db, mac, row.id, kinds):
        plan.entries.add(r.ledger_idx)
        kind_ext = "m4a" if r.media_type == "audio/mp4" else _EXT[r.kind]
        path = f"files/{r.sha256}.{kind_ext}"
        if any(f.path == path for f, _ in plan.files):
            continue
        plan.files.append(
            (PackageFile(path, r.sha256, r.size, r.kind, evidence_id, r.ledger_idx), r.sha256)
        )
        if r.kind == "redacted":
            _plan_spec(plan, r, evidence_id)
    custody = await db.fetch(
        "SELECT ledger_idx FROM ledger_refs WHERE ref_kind = 'evidence' AND ref_id = $1"
        " UNION SELECT ledger_idx FROM evidence_offers WHERE evidence_id = $1::uuid",
        evidence_id,
    )
    timeline = sorted({row.ledger_idx, *(c["ledger_idx"] for c in custody)})
    # ... with the ``unserved`` entries naming any of them (the package says it, and the
    # verifier checks each names an entry of the package by its leaf hash).
    unserved = await unserved_naming(db, timeline)
    timeline = sorted({*timeline, *(u for named in unserved.values() for u, _d in named)})
    plan.entries.update(timeline)
    # The case's own link entries disclose which case they name: this case, being exported.
    for r in await db.fetch(
        "SELECT ledger_idx FROM case_evidence_history"
        " WHERE case_id = $1 AND evidence_id = $2::uuid",
        case_id,
        evidence_id,
    ):
        plan.disclosed.add(r["ledger_idx"])
    plan.items.append(
        ReportItem(
            evidence_id=evidence_id,
            sha256=row.sha256,
            size=row.size,
            file_name=row.file_name,
            device_id=row.device_id,
            officer_id=row.officer_id,
            recorded_at=row.recorded_at,
            acquired_at=row.acquired_at,
            acquired_index=row.ledger_idx,
            timeline=timeline,
            files=[
                (f.kind, f.path, f.sha256) for f, _ in plan.files if f.evidence_id == evidence_id
            ],
        )
    )


def _plan_spec(plan: _Plan, r: evrows.Rendition, evidence_id: str) -> None:
    """The redaction spec that made copy ``r`` (its canonical JSON, kept in the rendition's
    params), listed with the copy's ``redacted`` entry."""
    params = json.loads(r.params) if isinstance(r.params, str) else r.params
    spec = params.get("spec") if isinstance(params, dict) else None
    if not isinstance(spec, dict):
        return  # a copy without its spec: the package carries the copy alone
    data = canonical_json(spec)
    sha = hashlib.sha256(data).hexdigest()
    path = f"files/{sha}.json"
    if path in plan.inline:
        return
    plan.inline[path] = data
    entry = PackageFile(path, sha, len(data), "redaction-spec", evidence_id, r.ledger_idx)
    plan.files.append((entry, sha))


async def _members(ledger: Ledger, plan: _Plan, note: str, size: int) -> dict[str, bytes]:
    db = ledger.pool
    indexes = sorted(i for i in plan.entries if i < size)
    plan.entries = set(indexes)
    members: dict[str, bytes] = {}
    rows = await db.fetch(
        "SELECT idx, kind, data FROM ledger_entries WHERE idx = ANY($1::bigint[])", indexes
    )
    kinds = {}
    for r in rows:
        members[entry_path(r["idx"])] = bytes(r["data"])
        kinds[r["idx"]] = r["kind"]
    openings = await db.fetch(
        "SELECT idx, field, salt, value FROM ledger_openings WHERE idx = ANY($1::bigint[])",
        sorted(plan.disclosed & plan.entries),
    )
    per: dict[int, dict[str, tuple[bytes, Any]]] = {}
    for o in openings:
        if kinds[o["idx"]] in ("linked", "unlinked") and o["field"] != "case":
            continue  # who linked it is the linking principal's business, not the package's
        per.setdefault(o["idx"], {})[o["field"]] = (bytes(o["salt"]), json.loads(bytes(o["value"])))
    for idx, fields in per.items():
        members[opening_path(idx)] = format_openings(fields)
    async with db.acquire() as conn:
        for idx in indexes:
            proof = await inclusion_proof(conn, idx, size)
            text = format_tlog_proof(TlogProof(index=idx, proof=tuple(proof), checkpoint=note))
            members[proof_path(idx)] = text.encode()
    for item in plan.items:
        item.entries = {
            i: parse_canonical(members[entry_path(i)]) for i in item.timeline if i < size
        }
    return members


FILE_MODE = 0o600  # a package holds plaintext of confidential footage: its owner's only
DIR_MODE = 0o700
_ZIP_FILE_ATTR = (stat.S_IFREG | FILE_MODE) << 16  # what unzip gives the extracted files


def _private_file(path: Path) -> BinaryIO:
    """A new file (never an existing one) opened for writing, mode 0600 whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "wb")


def _private_dirs(root: Path, path: Path) -> None:
    """Create ``path`` and its parents below ``root`` (which exists), each 0700."""
    missing = []
    while path != root and not path.is_dir():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE)
        d.chmod(DIR_MODE)


def _write(out: Path, members: dict[str, bytes], blobs: dict[str, Readable], as_zip: bool) -> None:
    """Write the package at ``out``: files 0600, folders 0700 (zip members marked 0600), via a
    0700 temporary sibling; never over an existing path."""
    out.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # mkdtemp: 0700
    try:
        if as_zip:
            target = tmp / "package.zip"
            with _private_file(target) as raw, zipfile.ZipFile(raw, "w") as zf:
                for name, data in sorted(members.items()):
                    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                    info.external_attr = _ZIP_FILE_ATTR
                    zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
                for name, obj in sorted(blobs.items()):
                    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                    info.external_attr = _ZIP_FILE_ATTR
                    with zf.open(info, "w", force_zip64=obj.size > 2**31) as dst:
                        for chunk in obj.read_range(0, obj.size):
                            dst.write(chunk)
            _fsync(target)
            os.link(target, out)  # fails rather than replace anything at `out`
        else:
            root = tmp / "package"
            _private_dirs(tmp, root)
            for name, data in members.items():
                p = root / name
                _private_dirs(root, p.parent)
                with _private_file(p) as dst:
                    dst.write(data)
            for name, obj in blobs.items():
                p = root / name
                _private_dirs(root, p.parent)
                with _private_file(p) as dst:
                    for chunk in obj.read_range(0, obj.size):
                        dst.write(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())
            if out.exists():  # rename() would replace an empty folder: refuse instead
                raise Conflict(f"{out} appeared while the package was written; nothing replaced")
            root.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
