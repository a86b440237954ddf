"""The checks behind :func:`verify.package.verify_package`; see that module for the format.

Guarantees: every check runs even after another failed, so one report names every problem
(what and where); a failure becomes a :class:`~verify.report.Finding` whose severity follows
the exception class (:class:`WrongKeyError` -> ``wrong-key``, :class:`MalformedError` ->
``malformed``, any other :class:`VerificationError` -> ``tampered``). Signatures are checked
only against the verifier given, never against the package's own vkey copy. File contents are
hashed by streaming in :data:`verify.package.READ_CHUNK` blocks in ``HASH_THREADS`` threads;
no member is read whole except small metadata members, which are size-capped.
"""

from __future__ import annotations

import hashlib
import threading
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cryptography import x509

from verify import package as pkg
from verify.canonical import check_opening, parse_canonical
from verify.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint
from verify.cosignature import CosignerKey
from verify.encoding import b64encode
from verify.errors import (
    CommitmentError,
    MalformedError,
    ProofError,
    VerificationError,
    WrongKeyError,
)
from verify.merkle import leaf_hash, verify_consistency, verify_inclusion
from verify.note import Verifier, parse_note, parse_vkey, verify_note
from verify.package import (
    CHECKPOINT_PATH,
    COSIGNATURES_PATH,
    MANIFEST_PATH,
    MANIFEST_SIG_PATH,
    MAX_SMALL_BYTES,
    TIMESTAMP_PATH,
    VKEY_PATH,
    Manifest,
    Source,
    consistency_path,
    entry_path,
    opening_path,
    proof_path,
)
from verify.package_redacted import REDACTION_KINDS, check_redacted, unrecorded_redaction
from verify.package_sm2 import Sm2Key, check_sm2
from verify.package_timestamp import check_timestamp
from verify.package_unserved import check_unserved
from verify.package_witness import check_witnesses
from verify.report import EntryResult, FileResult, OpeningResult, PackageReport
from verify.tlogproof import TlogProof, parse_tlog_proof

__all__ = ["hash_members", "run_checks"]


def hash_members(
    src: pkg.Source, jobs: list[tuple[str, int]], progress: Callable[[int, int], None] | None
) -> dict[str, tuple[int, str] | str]:
    """Hash members in ``HASH_THREADS`` threads: name -> (bytes read, SHA-256 hex), or
    an error text. ``jobs`` are (name, expected size); reading stops past the expected size."""
    total, done, lock = sum(size for _, size in jobs), 0, threading.Lock()

    def tick(k: int) -> None:
        nonlocal done
        if progress is not None:
            with lock:
                done += k
                progress(done, total)

    def one(name: str, limit: int) -> tuple[int, str] | str:
        try:
            return pkg.hash_member(src, name, limit, tick)
        except zipfile.BadZipFile as exc:
            return f"the zip member is corrupt ({exc}): its content was altered"
        except OSError as exc:
            return f"cannot be read: {exc}"

    with ThreadPoolExecutor(pkg.HASH_THREADS) as pool:
        biggest_first = sorted(jobs, key=lambda job: -job[1])  # balances the two threads
        futures = {name: pool.submit(one, name, size) for name, size in biggest_first}
        return {name: fut.result() for name, fut in futures.items()}


T, M, W = "tampered", "malformed", "wrong-key"


def _severity(exc: VerificationError) -> str:
    return W if isinstance(exc, WrongKeyError) else M if isinstance(exc, MalformedError) else T


class _Checks:
    """One verification run: fills ``r`` from ``src``. Each step records findings and goes on,
    so one report names every problem, not just the first."""

    def __init__(
        self,
        src: pkg.Source,
        verifier: Verifier,
        r: PackageReport,
        tsa_ca: tuple[x509.Certificate, ...] | None = None,
        sm2: Sm2Key | None = None,
        witnesses: tuple[Sequence[CosignerKey] | None, int] = (None, 0),
    ) -> None:
        self.src, self.v, self.r, self.bad = src, verifier, r, r.add
        self.tsa_ca = tsa_ca
        self.sm2 = sm2
        self.witnesses = witnesses
        self.cp: Checkpoint | None = None
        self.cp_text = ""
        self.entries: dict[int, tuple[bytes, dict[str, Any] | None]] = {}
        self.proofs: dict[int, TlogProof] = {}

    def read(self, name: str, limit: int = MAX_SMALL_BYTES, missing: str = T) -> bytes | None:
        if name not in self.src.sizes:
            self.bad("missing", missing, name, f"{name} is missing from the package")
            return None
        try:
            return self.src.read(name, limit)
        except (OSError, zipfile.BadZipFile, MalformedError) as exc:
            self.bad("unreadable", M, name, f"{name} cannot be read: {exc}")
            return None

    def run(self, since: str | None, progress: Callable[[int, int], None] | None) -> None:
        for name, why in self.src.unsafe:
            self.bad("unsafe-path", M, name, f"unsafe package member {name!r}: {why}")
        self.check_vkey()
        self.check_checkpoint()
        m = self.check_manifest()
        if m is None:
            return
        self.check_entries(m)
        self.check_openings(m)
        self.check_since(m, since)
        check_timestamp(self.read, m, self.cp_text, self.tsa_ca, self.r)
        check_witnesses(self.read, m, self.cp_text, *self.witnesses, self.r)
        self.check_files(m, progress)
        check_redacted(m, self.entries, self.r)
        check_unserved(self.entries, self.r)
        expected = {MANIFEST_PATH, MANIFEST_SIG_PATH, VKEY_PATH, CHECKPOINT_PATH}
        expected |= {f.path for f in m.files} | {consistency_path(s) for s in m.consistency}
        for i in m.entries:
            expected |= {entry_path(i), proof_path(i), opening_path(i)}
        if m.report is not None:
            expected.add(m.report[0])
        if m.timestamp is not None:
            expected.add(TIMESTAMP_PATH)
        if m.cosignatures is not None:
            expected.add(COSIGNATURES_PATH)
        for name in sorted(self.src.sizes.keys() - expected):
            self.bad("unlisted", T, name, f"{name} is in the package but not in its manifest")

    def check_vkey(self) -> None:
        if (data := self.read(VKEY_PATH, 4096, M)) is None:
            return
        try:
            theirs = parse_vkey(data.decode("utf-8", "replace").removesuffix("\n"))
        except MalformedError as exc:
            self.bad("vkey-invalid", M, VKEY_PATH, f"the package's vkey: {exc}")
            return
        if theirs != self.v:
            msg = f"the package's vkey {theirs.vkey} is not the trusted key {self.v.vkey}"
            self.bad("vkey-mismatch", W, VKEY_PATH, msg)

    def check_checkpoint(self) -> None:
        if (data := self.read(CHECKPOINT_PATH, missing=M)) is None:
            return
        self.cp_text = data.decode("utf-8", "replace")
        if self.sm2 is not None:
            self.r.sm2 = check_sm2(data, self.sm2, CHECKPOINT_PATH, self.r)
        try:
            self.cp = open_checkpoint(data, self.v)
            self.r.checkpoint_trusted = True
        except VerificationError as exc:
            self.bad("checkpoint-signature", _severity(exc), CHECKPOINT_PATH, f"checkpoint: {exc}")
            try:
                self.cp = parse_checkpoint(parse_note(data).text)
            except MalformedError:
                return
        self.r.origin, self.r.checkpoint_size = self.cp.origin, self.cp.size
        self.r.checkpoint_root = b64encode(self.cp.root_hash)

    def check_manifest(self) -> Manifest | None:
        data = self.read(MANIFEST_PATH, pkg.MAX_MANIFEST_BYTES, M)
        sig = self.read(MANIFEST_SIG_PATH, missing=M)
        if data is None:
            return None
        try:
            signed = verify_note(sig, self.v).text if sig is not None else None
            if signed is not None and signed != pkg.manifest_sig_text(data):
                lines = signed.split("\n")
                what = lines[1] if lines[0] == pkg.MANIFEST_SIG_HEADER else repr(signed)
                msg = (
                    f"manifest.json was changed after it was signed: its SHA-256 is "
                    f"{hashlib.sha256(data).hexdigest()}, manifest.sig signs {what}"
                )
                self.bad("manifest-edited", T, MANIFEST_PATH, msg)
        except VerificationError as exc:
            self.bad("manifest-signature", _severity(exc), MANIFEST_SIG_PATH, f"{exc}")
        try:
            m = pkg.parse_manifest(data)
        except MalformedError as exc:
            self.bad("manifest-invalid", M, MANIFEST_PATH, str(exc))
            return None
        r, cp = self.r, self.cp
        r.case_id, r.case_label, r.exported_by = m.case_id, m.case_label, m.exported_by
        r.exported_at = m.exported_at
        if m.origin != self.v.name:
            msg = f"manifest origin {m.origin!r} is not the trusted key's log {self.v.name!r}"
            self.bad("origin-mismatch", W, MANIFEST_PATH, msg)
        if cp is not None and (cp.size, cp.origin) != (m.checkpoint_size, m.origin):
            msg = f"manifest says {m.origin} size {m.checkpoint_size}, checkpoint is {cp.origin}"
            self.bad("checkpoint-mismatch", T, CHECKPOINT_PATH, f"{msg} size {cp.size}")
        return m

    def check_entries(self, m: Manifest) -> None:
        failed: list[int] = []
        for i in m.entries:
            self.r.entries.append(res := EntryResult(i))
            data, proof, where = self.read(entry_path(i)), self.read(proof_path(i)), proof_path(i)
            if data is not None:
                obj = None
                try:
                    obj = parse_canonical(data)
                    res.canonical, res.kind = True, str(obj.get("kind"))
                except MalformedError as exc:
                    self.bad("entry-noncanonical", M, entry_path(i), f"entry {i}: {exc}")
                self.entries[i] = (data, obj)
            try:
                p = parse_tlog_proof(proof) if proof is not None else None
            except MalformedError as exc:
                self.bad("proof-invalid", M, where, str(exc))
                continue
            if p is None:
                continue
            self.proofs[i] = p
            if p.index != i:
                self.bad("proof-index", T, where, f"{where} proves index {p.index}, not entry {i}")
            elif p.checkpoint != self.cp_text:
                self.bad(
                    "proof-checkpoint",
                    T,
                    where,
                    f"{where} is for another checkpoint than the package's",
                )
            elif data is not None and self.cp is not None:
                try:
                    verify_inclusion(leaf_hash(data), i, self.cp.size, p.proof, self.cp.root_hash)
                    res.proof_ok = self.r.checkpoint_trusted
                except ProofError:
                    failed.append(i)
        # Entries moved between indexes: try each failed entry against the other places that
        # lack their own valid entry (bounded, so a wholesale forgery stays fast to report).
        places = ([*failed, *(i for i in m.entries if i not in self.entries)])[:64]
        for i in failed:
            msg = f"entry {i} ({entry_path(i)}) is not leaf {i} of the checkpoint"
            moved = self.moved(i, places) if len(failed) <= 64 else ""
            self.bad("inclusion", T, entry_path(i), f"{msg}{moved}: altered or replaced")

    def moved(self, i: int, places: list[int]) -> str:
        """Say so when entry file ``i`` verifies with the proof of another index ``j``."""
        leaf = leaf_hash(self.entries[i][0])
        for j in places:
            p = self.proofs.get(j)
            if j != i and self.cp is not None and p is not None and p.index == j:
                try:
                    verify_inclusion(leaf, j, self.cp.size, p.proof, self.cp.root_hash)
                    return f" (its content is entry {j}, moved to index {i})"
                except ProofError:
                    continue
        return ""

    def check_openings(self, m: Manifest) -> None:
        for i in m.entries:
            commits = (self.entries.get(i, (b"", None))[1] or {}).get("commitments")
            commits = commits if isinstance(commits, dict) else {}
            name, opened = opening_path(i), {}
            if name in self.src.sizes and (data := self.read(name)):
                try:
                    opened = pkg.parse_openings(data, name)
                except MalformedError as exc:
                    self.bad("opening-invalid", M, name, str(exc))
            for field, (salt, value) in opened.items():
                self.r.openings.append(res := OpeningResult(i, field, "ok", value))
                try:
                    if field not in commits:
                        res.status = "unknown-field"
                        raise CommitmentError(f"no commitment to field {field!r} in the entry")
                    check_opening(field, value, salt, commits[field])
                except CommitmentError as exc:
                    res.status = "mismatch" if res.status == "ok" else res.status
                    self.bad(f"opening-{res.status}", T, name, f"entry {i}: {exc}")
            for field in sorted(commits.keys() - opened.keys()):
                self.r.openings.append(OpeningResult(i, field, "not-disclosed"))

    def check_since(self, m: Manifest, since: str | None) -> None:
        proofs: dict[int, list[bytes]] = {}
        for s in m.consistency:
            if (data := self.read(consistency_path(s))) is not None:
                try:
                    proofs[s] = pkg.parse_consistency_proof(data, consistency_path(s))
                except MalformedError as exc:
                    self.bad("consistency-invalid", M, consistency_path(s), str(exc))
        if since is None:
            return
        try:
            seen = open_checkpoint(since, self.v)
        except VerificationError as exc:
            self.bad("since-invalid", _severity(exc), "--since", f"checkpoint seen before: {exc}")
            return
        self.r.since_size, self.r.since_ok, cp = seen.size, False, self.cp
        if cp is None:
            return
        here = f"package checkpoint (size {cp.size}, root {b64encode(cp.root_hash)})"
        there = f"the checkpoint seen before (size {seen.size}, root {b64encode(seen.root_hash)})"
        if seen.size > cp.size:
            msg = f"package checkpoint is older than the one seen before: {here}, {there}"
            self.bad("since-older", T, CHECKPOINT_PATH, msg)
        elif seen.size < cp.size and seen.size not in proofs:
            msg = f"no consistency proof from size {seen.size}: cannot show it extends {there}"
            self.bad("since-no-proof", M, MANIFEST_PATH, msg)
        else:
            try:
                proof = proofs.get(seen.size, [])
                verify_consistency(seen.size, cp.size, proof, seen.root_hash, cp.root_hash)
                self.r.since_ok = True
            except ProofError as exc:
                self.bad("since-fork", T, CHECKPOINT_PATH, f"{here} forks from {there}: {exc}")

    def check_files(self, m: Manifest, progress: Callable[[int, int], None] | None) -> None:
        originals = {f.evidence_id: f.sha256 for f in m.files if f.kind == "original"}
        proven = {e.index for e in self.r.entries if e.proof_ok}
        jobs: list[tuple[str, int, str, FileResult | None]] = []
        for f in m.files:
            fr = FileResult(f.path, f.kind, f.evidence_id, f.sha256, f.size, f.entry)
            self.r.files.append(fr)
            fr.proof_ok, what = f.entry in proven, f"{f.path} ({f.kind} of {f.evidence_id})"
            if (obj := self.entries.get(f.entry, (b"", None))[1]) is not None:
                problem = _unrecorded(f, obj, originals.get(f.evidence_id))
                fr.recorded_ok = problem is None
                if problem:
                    msg = f"{what} is not recorded by entry {f.entry}: {problem}"
                    self.bad("file-unrecorded", T, f.path, msg)
            if f.path in self.src.sizes:
                jobs.append((f.path, f.size, f.sha256, fr))
            else:
                self.bad("missing", T, f.path, f"{what} is missing from the package")
        if m.report is not None:
            if m.report[0] in self.src.sizes:
                jobs.append((m.report[0], m.report[2], m.report[1], None))
            else:
                self.bad("missing", T, m.report[0], f"{m.report[0]} is missing from the package")
        hashed = hash_members(self.src, [(job[0], job[1]) for job in jobs], progress)
        for name, size, want, row in jobs:
            res = row
            what = f"{name} ({res.kind} of {res.evidence_id})" if res else name
            if isinstance(got := hashed[name], str):
                self.bad("file-hash", T, name, f"{what}: {got}")
                continue
            n, digest = got
            self.r.bytes_hashed += n
            if res is not None:
                res.present, res.got_size, res.got_sha256 = True, n, digest
                res.hash_ok = n == size and digest == want
            if n != size:
                more, cut = ("more than ", "") if n > size else ("", " (truncated)")
                self.bad("file-size", T, name, f"{what} has {more}{n} bytes, not {size}{cut}")
            elif digest != want:
                self.bad("file-hash", T, name, f"{what} has SHA-256 {digest}, not {want}")


def _unrecorded(f: pkg.PackageFile, e: dict[str, Any], original: str | None) -> str | None:
    """Why entry ``e`` does not record file ``f``, or None if it does."""
    if f.kind in REDACTION_KINDS:
        return unrecorded_redaction(f, e, original)
    rendition = f.kind != "original"
    want: dict[str, object] = {"kind": "derived" if rendition else "acquired"}
    want["output_sha256" if rendition else "sha256"] = f.sha256
    may: dict[str, object] = {"evidence_id": f.evidence_id}
    if rendition:
        may |= {"rendition": f.kind, "output_size": f.size}
        if original is not None:
            may["input_sha256"] = original
    else:
        want["size"] = f.size
    for key, value in [*want.items(), *((k, v) for k, v in may.items() if k in e)]:
        if e.get(key) != value:
            return f"its {key} is {e.get(key)!r}, want {value!r}"
    return None


def run_checks(
    src: pkg.Source,
    verifier: Verifier,
    report: PackageReport,
    since: str | None,
    progress: Callable[[int, int], None] | None,
    tsa_ca: tuple[x509.Certificate, ...] | None = None,
    sm2: Sm2Key | None = None,
    witnesses: tuple[Sequence[CosignerKey] | None, int] = (None, 0),
) -> None:
    """Fill ``report`` with everything that does (not) hold in ``src``; used by
    :func:`verify.package.verify_package`."""
    _Checks(src, verifier, report, tsa_ca, sm2, witnesses).run(since, progress)


def verify_package(
    path: Path,
    verifier: Verifier,
    *,
    since: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    tsa_ca: tuple[x509.Certificate, ...] | None = None,
    sm2: Sm2Key | None = None,
    witnesses: Sequence[CosignerKey] | None = None,
    witness_threshold: int = 0,
) -> PackageReport:
    """Verify the package at ``path`` (a folder or a zip) against the trusted ``verifier``.

    ``since`` is the text of a checkpoint note seen before; ``progress(done, total)`` is
    called with hashed byte counts, possibly from worker threads; ``tsa_ca`` are the CA
    certificates the package's time-stamp must chain to (None: not checked); ``sm2`` the SM2
    key whose cosignature the checkpoint must carry (None: not checked); ``witnesses`` the
    trusted witness keys of which ``witness_threshold`` must have cosigned. Raises
    :class:`OSError` only if ``path`` cannot be opened at all; everything else becomes a
    finding of the report.
    """
    report = PackageReport(path=str(path))
    try:
        src = Source(path)
    except zipfile.BadZipFile as exc:
        report.add(
            "not-a-package",
            "malformed",
            str(path),
            (
                "neither a package (a folder or a .zip) nor an integrity report, tlog-proof or "
                f"dock receipt: {exc}"
            ),
        )
        return report
    try:
        run_checks(
            src, verifier, report, since, progress, tsa_ca, sm2, (witnesses, witness_threshold)
        )
    finally:
        if src.zip is not None:
            src.zip.close()
    return report
