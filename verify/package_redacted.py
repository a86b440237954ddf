"""Redacted copies in a package: the checks that bind a copy to its original without it.

Guarantees of :func:`check_redacted` (run after the files were hashed, so it sees what each
file really holds; format in :mod:`verify.package`):

* ``redacted-copy-tampered``: a ``redacted`` file whose bytes are not the ``output_sha256`` of
  its ``redacted`` entry.
* ``redaction-spec-swapped``: a ``redaction-spec`` file whose bytes are not the
  ``spec_sha256`` of the ``redacted`` entry it is listed with.
* ``redacted-unlinked``: the ``redacted`` entry names no ``original_entry`` listed in the
  package (the copy's origin cannot be checked), or one not before it in the log.
* ``redacted-other-original``: the ``original_entry`` is not the ``acquired`` entry of the same
  evidence whose ``sha256`` is the copy's ``input_sha256``: a copy claimed from a different
  original.
* ``redacted-original-unproven``: the original's ``acquired`` entry is not proven in the
  checkpoint (its own inclusion finding says how).
* ``original-not-included`` (``info``, not a failure): the copy's original is not in the
  package; the message says so plainly and names the entry and hash it is proven against.

Each is a finding naming the file or entry; every other check of the package still runs.
"""

from __future__ import annotations

from typing import Any

from verify.package import Manifest, PackageFile, entry_path
from verify.report import PackageReport

__all__ = ["REDACTION_KINDS", "check_redacted", "unrecorded_redaction"]

REDACTION_KINDS = frozenset({"redacted", "redaction-spec"})
T, INFO = "tampered", "info"


def unrecorded_redaction(f: PackageFile, e: dict[str, Any], original: str | None) -> str | None:
    """Why entry ``e`` does not record the redacted copy or spec ``f``, or None if it does."""
    want: dict[str, object] = {"kind": "redacted"}
    if f.kind == "redacted":
        want |= {"output_sha256": f.sha256, "rendition": "redacted"}
        may: dict[str, object] = {"evidence_id": f.evidence_id, "output_size": f.size}
        if original is not None:
            may["input_sha256"] = original
    else:
        want["spec_sha256"] = f.sha256
        may = {"evidence_id": f.evidence_id}
    for key, value in [*want.items(), *((k, v) for k, v in may.items() if k in e)]:
        if e.get(key) != value:
            return f"its {key} is {e.get(key)!r}, want {value!r}"
    return None


def _short(sha: object) -> str:
    return f"{str(sha)[:16]}…"


def check_redacted(
    m: Manifest, entries: dict[int, tuple[bytes, dict[str, Any] | None]], r: PackageReport
) -> None:
    """Add the findings of the module docstring to ``r``."""
    originals = {f.evidence_id for f in m.files if f.kind == "original"}
    proven = {e.index for e in r.entries if e.proof_ok}
    got = {fr.path: fr.got_sha256 for fr in r.files}
    for f in m.files:
        if f.kind not in REDACTION_KINDS:
            continue
        e = entries.get(f.entry, (b"", None))[1]
        if e is None or e.get("kind") != "redacted":
            continue  # file-unrecorded (or a missing/malformed entry) says so already
        seen = got.get(f.path)
        if f.kind == "redaction-spec":
            if seen is not None and seen != e.get("spec_sha256"):
                r.add(
                    "redaction-spec-swapped",
                    T,
                    f.path,
                    f"the redaction spec {f.path} (SHA-256 {_short(seen)}) is not the spec that"
                    f" made the copy of entry {f.entry} (spec_sha256"
                    f" {_short(e.get('spec_sha256'))}): swapped",
                )
            continue
        if seen is not None and seen != e.get("output_sha256"):
            r.add(
                "redacted-copy-tampered",
                T,
                f.path,
                f"the redacted copy {f.path} (SHA-256 {_short(seen)}) is not the copy recorded"
                f" by entry {f.entry} (output_sha256 {_short(e.get('output_sha256'))}): altered",
            )
        _check_link(f, e, m, entries, proven, originals, r)


def _check_link(
    f: PackageFile,
    e: dict[str, Any],
    m: Manifest,
    entries: dict[int, tuple[bytes, dict[str, Any] | None]],
    proven: set[int],
    originals: set[str],
    r: PackageReport,
) -> None:
    oi = e.get("original_entry")
    where = entry_path(f.entry)
    if type(oi) is not int or oi not in m.entries or oi >= f.entry:
        r.add(
            "redacted-unlinked",
            T,
            where,
            f"the redacted copy {f.path} names original entry {oi!r}, which is not an earlier"
            " entry listed in the package: where the copy comes from cannot be checked",
        )
        return
    acq = entries.get(oi, (b"", None))[1]
    if acq is None:
        return  # the original's entry is missing or malformed: its own finding says so
    theirs = (acq.get("kind"), acq.get("evidence_id"), acq.get("sha256"))
    ours = ("acquired", e.get("evidence_id"), e.get("input_sha256"))
    if theirs != ours:
        r.add(
            "redacted-other-original",
            T,
            where,
            f"the redacted copy {f.path} is claimed from a different original: entry {f.entry}"
            f" derives it from {_short(ours[2])} of evidence {ours[1]}, but entry {oi} is"
            f" {theirs[0]!r} of evidence {theirs[1]} with SHA-256 {_short(theirs[2])}",
        )
        return
    if oi not in proven:
        r.add(
            "redacted-original-unproven",
            T,
            entry_path(oi),
            f"the original's acquired entry {oi} of the redacted copy {f.path} is not proven"
            " in the checkpoint",
        )
    if f.evidence_id not in originals:
        r.add(
            "original-not-included",
            INFO,
            f.path,
            f"the original of evidence {f.evidence_id} is NOT included in this package (原始文件"
            f"未包含): the redacted copy {f.path} is proven derived from the original recorded"
            f" by entry {oi} (SHA-256 {ours[2]}), which stays with the vault",
        )
