"""Tamper localisation: where does a suspect copy differ from the original recording?

The original's fingerprint (per-segment hashes of its decoded frames and samples, plus a
perceptual sketch; :mod:`ingest.media.fpmodel`) comes from the vault — the evidence's
``fingerprint`` rendition — or from an exported package; the suspect copy is decoded and
fingerprinted with the same segment length, and :func:`ingest.media.compare` says where.

Guarantees:

- From the vault, the acting principal must be allowed to ``verify`` the evidence (and the
  rendition, when its label is above the evidence's); the decision is recorded
  (``decisions.guard``) before anything is read, and a missing or invisible item is the same
  ``NotFound``. The fingerprint is read through the ContentStore; its bytes must hash to the
  rendition's recorded SHA-256, which must be the ``output_sha256`` of its ``derived`` entry,
  whose ``fingerprint_root`` must be the fingerprint's own Merkle root — else IntegrityError.
- From a package, the fingerprint is the file the manifest lists for the evidence whose
  original is recorded by ledger entry ``index``; its bytes must have the listed size and
  SHA-256 and be named by its ``derived`` entry in the package — else IntegrityError. (That
  the manifest and entries themselves are authentic is what ``evault-verify`` checks against
  the log key; ``evault localize --vkey`` runs it first.)
- The suspect is opened only through the media sandbox (time and memory bounded; hostile
  files are refused with MediaError). Nothing is written anywhere.
- The suspect's decoded audio is aligned on the original's decoded samples first
  (:mod:`ingest.media.fpalign`: a shift of at most 2112 samples, found by the original's own
  segment hashes), so codec priming that one container trims (MP4/MOV edit lists) and another
  keeps (Matroska, MPEG-TS) does not make a remux look re-encoded; a shift found is stated in
  the report (``audio_shift``), never hidden.
- The result states one verdict with its exit status (:data:`EXIT_CODES`): ``identical``
  (every decoded frame and sample equal, audio aligned as above: the same file or a
  remux), ``similar`` (the same
  recording, perceptually equal throughout, decoded content not identical: a re-encode such as
  the proxy), ``altered`` (the same recording with differing time ranges, given for video and
  audio separately, each within one segment of the change), ``different`` (not the same
  recording).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.media import Comparison, Fingerprint, Limits, Tools, compare, probe
from ingest.media.fingerprint import fingerprint_copy
from ingest.media.probe import probe_limits
from vault import evidence as evrows
from vault.access import decisions, targets
from vault.db import Db
from vault.errors import BadRequest, IntegrityError, NotFound
from vault.ledger import Ledger
from vault.policy.decide import Action, Principal
from vault.storage.content import ContentStore
from verify.canonical import parse_canonical
from verify.errors import VerificationError
from verify.package import MANIFEST_PATH, Source, entry_path, parse_manifest

__all__ = [
    "EXIT_CODES",
    "Localization",
    "Original",
    "dumps",
    "format_ms",
    "localize",
    "original_from_package",
    "original_from_vault",
]

EXIT_CODES = {"identical": 0, "similar": 1, "altered": 3, "different": 4}
"""Exit status per verdict; 2 is every error (bad input, not found, refused, unreadable)."""
MAX_FINGERPRINT_BYTES = 256 << 20
_MANIFEST_LIMIT = 64 << 20


@dataclass(frozen=True)
class Original:
    """The original's fingerprint and where it was taken from (for the report)."""

    fingerprint: Fingerprint
    evidence_id: str
    fingerprint_sha256: str
    where: str


@dataclass(frozen=True)
class Localization:
    """A finished comparison of one suspect copy with one original."""

    original: Original
    suspect_path: str
    suspect_sha256: str
    suspect: Fingerprint
    comparison: Comparison
    audio_shift: int = 0  # samples; see ingest.media.fingerprint.fingerprint_copy

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.comparison.verdict]

    def to_json(self) -> dict[str, Any]:
        c = self.comparison

        def ranges(rs: tuple[tuple[int, int], ...]) -> list[dict[str, Any]]:
            return [
                {"start_ms": a, "end_ms": b, "start": format_ms(a), "end": format_ms(b)}
                for a, b in rs
            ]

        def stream(kind: str, exact: bool | None, perceptual: Any, exact_rs: Any) -> dict[str, Any]:
            return {
                "decoded_identical": exact,
                "differs": ranges(perceptual),
                "decoded_differs": ranges(exact_rs),
                "summary": _decoded(exact, exact_rs, self.original.fingerprint, kind),
            }

        return {
            "verdict": c.verdict,
            "same_recording": c.same_recording,
            "reason": c.reason,
            "segment_ms": self.original.fingerprint.segment_ms,
            "original": {
                "evidence_id": self.original.evidence_id,
                "fingerprint_sha256": self.original.fingerprint_sha256,
                "from": self.original.where,
                "duration_ms": self.original.fingerprint.duration_ms,
            },
            "suspect": {
                "path": self.suspect_path,
                "sha256": self.suspect_sha256,
                "duration_ms": self.suspect.duration_ms,
            },
            "video": stream("video", c.exact_video, c.video_ranges, c.exact_video_ranges),
            "audio": {
                **stream("audio", c.exact_audio, c.audio_ranges, c.exact_audio_ranges),
                "shift_samples": self.audio_shift,
                "alignment": self._alignment(),
            },
            "exit_code": self.exit_code,
        }

    def _headline(self) -> str:
        """The verdict's line; "similar" claims a re-encode only when a stream has no
        decoded segment equal to the original's (else it says where they differ)."""
        c, fp = self.comparison, self.original.fingerprint
        if c.verdict == "similar":
            summaries = (
                _decoded(c.exact_video, c.exact_video_ranges, fp, "video"),
                _decoded(c.exact_audio, c.exact_audio_ranges, fp, "audio"),
            )
            if not any(x.startswith("none identical") for x in summaries):
                return _SIMILAR_IN_PART
        return _VERDICT[c.verdict]

    def _alignment(self) -> str:
        """How the copy's decoded audio was aligned on the original's (see fpalign)."""
        d = self.audio_shift
        if d == 0:
            return "none needed (or none found): compared from the first decoded sample"
        rate = dict(self.original.fingerprint.audio).get("sample_rate", 0)
        ms = f" ({abs(d) * 1000 / rate:.3f} ms)" if rate else ""
        if d > 0:
            return (
                f"the copy decodes {d} samples{ms} before the original's first (codec priming"
                " that one container trims and the other keeps); compared from there"
            )
        return (
            f"the copy lacks the original's first {-d} samples{ms} (typically codec priming"
            " that the original's container keeps and the copy's trims); compared from there,"
            " so its first segment differs"
        )

    def text(self) -> str:
        """The report for people."""
        c, o = self.comparison, self.original
        full = o.fingerprint.duration_ms
        lines = [
            f"original  evidence {o.evidence_id}, fingerprint {o.fingerprint_sha256}",
            f"          from {o.where}; {len(o.fingerprint.segments)} segments of "
            f"{o.fingerprint.segment_ms} ms, {format_ms(full)} long",
            f"suspect   {self.suspect_path}",
            f"          sha256 {self.suspect_sha256}, {format_ms(self.suspect.duration_ms)} long",
            "",
            self._headline() + (f": {c.reason}" if c.verdict == "different" else ""),
        ]
        if c.verdict in ("altered", "similar"):
            lines.append(f"video     {_ranges_text(c.exact_video, c.video_ranges)}")
            lines.append(f"audio     {_ranges_text(c.exact_audio, c.audio_ranges)}")
        if c.verdict != "different":
            fp = o.fingerprint
            video = _decoded(c.exact_video, c.exact_video_ranges, fp, "video")
            lines.append(f"decoded   video: {video}")
            lines.append(
                f"          audio: {_decoded(c.exact_audio, c.exact_audio_ranges, fp, 'audio')}"
            )
            if self.audio_shift:
                lines.append(f"aligned   audio: {self._alignment()}")
        return "\n".join(lines) + "\n"


_VERDICT = {
    "identical": "IDENTICAL: every decoded video frame and audio sample equals the original's "
    "(the same file, or a remux)",
    "similar": "SAME RECORDING, RE-ENCODED: perceptually the same throughout, but not every "
    "decoded frame or sample is the original's (a transcode or proxy; 'decoded' says which "
    "stream was re-encoded)",
    "altered": "ALTERED: the same recording, but these time ranges differ from the original",
    "different": "NOT THE SAME RECORDING",
}
_SIMILAR_IN_PART = (
    "SAME RECORDING, NOT EVERY SAMPLE IDENTICAL: perceptually the same throughout; the decoded "
    "frames and samples are the original's except where 'decoded' says"
)


def format_ms(ms: int) -> str:
    """``mm:ss.mmm`` (minutes grow past 59 for long recordings)."""
    minutes, rest = divmod(ms, 60_000)
    return f"{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def _ranges_text(exact: bool | None, ranges: tuple[tuple[int, int], ...]) -> str:
    if not ranges:
        return "no difference" if exact is not None else "no stream to compare"
    return "differs " + ", ".join(f"{format_ms(a)}–{format_ms(b)}" for a, b in ranges)


def _decoded(
    exact: bool | None, ranges: tuple[tuple[int, int], ...], original: Fingerprint, kind: str
) -> str:
    """Whether a stream's decoded content is the original's: all, none (re-encoded), or where."""
    if exact is None:
        return "not compared (the stream is absent from the original or the copy)"
    if exact:
        return "identical to the original's (bit for bit after decoding: same file or remux)"
    seg = original.segment_ms
    differing = {i for a, b in ranges for i in range(a // seg, b // seg)}
    holding = {
        i
        for i, s in enumerate(original.segments)
        if (s.frames if kind == "video" else s.samples) > 0
    }
    if holding <= differing:
        return "none identical (re-encoded); compared perceptually"
    spans = ", ".join(f"{format_ms(a)}–{format_ms(b)}" for a, b in ranges)
    return f"identical except {spans}"


# -- the original's fingerprint ------------------------------------------------------------------


async def original_from_vault(
    db: Db, ledger: Ledger, content: ContentStore, actor: Principal, evidence_id: str
) -> Original:
    """The evidence's recorded fingerprint, access-checked and verified (see module)."""
    target = await targets.authorize(db, ledger, actor, Action.VERIFY, "evidence", evidence_id)
    source = await evrows.load_evidence(db, ledger.mac, evidence_id, where="localize")
    found = (
        []
        if source is None
        else await evrows.renditions_of(db, ledger.mac, source.id, ["fingerprint"])
    )
    if not found:
        status = "unknown" if source is None else source.media_status
        raise NotFound(f"evidence {evidence_id} has no fingerprint (media status: {status})")
    fpr = found[0]
    rid = str(fpr.id)
    rendition = await targets.rendition_target(db, rid, mac=ledger.mac)
    if rendition is None or rendition.label != target.label:
        await decisions.guard(ledger, actor, Action.VERIFY, "rendition", rid, rendition)
    obj = await content.open(fpr.sha256)
    try:
        data = b"".join(await asyncio.to_thread(lambda: list(obj.read_range(0, obj.size))))
    finally:
        obj.close()
    where = f"the vault (rendition {rid}, ledger entry {fpr.ledger_idx})"
    if len(data) != fpr.size or hashlib.sha256(data).hexdigest() != fpr.sha256:
        raise IntegrityError(f"the stored fingerprint of evidence {evidence_id} is damaged")
    fp = Fingerprint.from_bytes(data)
    _check_derived(await ledger.entry(fpr.ledger_idx), fpr.sha256, fp, where)
    return Original(fp, evidence_id, fpr.sha256, where)


def original_from_package(package: Path, index: int) -> Original:
    """The fingerprint a package holds for the original recorded by entry ``index``."""
    try:
        src = Source(package)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BadRequest(f"{package}: cannot open the package: {exc}") from exc
    try:
        if src.unsafe:
            name, why = src.unsafe[0]
            raise BadRequest(f"{package}: unsafe member {name!r} ({why}); run evault-verify")
        manifest = parse_manifest(src.read(MANIFEST_PATH, _MANIFEST_LIMIT))
        originals = [f for f in manifest.files if f.kind == "original" and f.entry == index]
        if not originals:
            known = sorted(f.entry for f in manifest.files if f.kind == "original")
            raise NotFound(
                f"{package}: no original is recorded by ledger entry {index} "
                f"(originals are recorded by entries {known})"
            )
        eid = originals[0].evidence_id
        fps = [f for f in manifest.files if f.kind == "fingerprint" and f.evidence_id == eid]
        if not fps:
            raise NotFound(
                f"{package}: no fingerprint of evidence {eid}; export the case with "
                "`--renditions fingerprint`"
            )
        f = fps[0]
        where = f"package {package.name} ({f.path}, ledger entry {f.entry})"
        if f.path not in src.sizes or f.size > MAX_FINGERPRINT_BYTES:
            raise IntegrityError(f"{where}: the listed fingerprint file is missing or too large")
        if src.sizes[f.path] != f.size:
            raise IntegrityError(f"{where}: the fingerprint file's size differs from the manifest")
        data = src.read(f.path, f.size)
        if hashlib.sha256(data).hexdigest() != f.sha256:
            raise IntegrityError(f"{where}: the fingerprint file's hash differs from the manifest")
        fp = Fingerprint.from_bytes(data)
        _check_derived(src.read(entry_path(f.entry), 1 << 16), f.sha256, fp, where)
        return Original(fp, eid, f.sha256, where)
    except (VerificationError, KeyError) as exc:
        raise BadRequest(f"{package}: not a readable package ({exc}); run evault-verify") from exc
    except OSError as exc:
        raise BadRequest(f"{package}: cannot read the package: {exc}") from exc
    finally:
        if src.zip is not None:
            src.zip.close()


def _check_derived(entry_bytes: bytes, sha256: str, fp: Fingerprint, where: str) -> None:
    try:
        entry = parse_canonical(entry_bytes)
    except VerificationError as exc:
        raise IntegrityError(f"{where}: its ledger entry is not canonical JSON: {exc}") from exc
    ok = (
        entry.get("kind") == "derived"
        and entry.get("rendition") == "fingerprint"
        and entry.get("output_sha256") == sha256
        and entry.get("fingerprint_root", fp.merkle_root.hex()) == fp.merkle_root.hex()
    )
    if not ok:
        raise IntegrityError(f"{where}: the fingerprint is not the one its ledger entry records")


# -- the suspect -----------------------------------------------------------------------------------


async def localize(
    original: Original, suspect: Path, *, tools: Tools, limits: Limits
) -> Localization:
    """Decode ``suspect`` in the sandbox, fingerprint it like the original, compare."""
    try:
        digest = await asyncio.to_thread(_sha256_file, suspect)
    except OSError as exc:
        raise BadRequest(f"{suspect}: cannot read the suspect copy: {exc}") from exc
    info = await probe(suspect, tools=tools, limits=probe_limits(limits))
    wall = limits.with_wall(60.0 + 4.0 * (info.duration_ms or 0) / 1000)
    fp, shift = await fingerprint_copy(
        suspect, info, original.fingerprint, tools=tools, limits=wall
    )
    return Localization(
        original, str(suspect), digest, fp, compare(original.fingerprint, fp), shift
    )


def _sha256_file(path: Path) -> str:
    if not path.is_file():
        raise IsADirectoryError(f"{path} is not a regular file")
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def dumps(loc: Localization) -> str:
    """The JSON report (one object)."""
    return json.dumps(loc.to_json(), ensure_ascii=False, indent=2, sort_keys=True)
