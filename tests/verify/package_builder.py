"""Build valid evidence packages without a database, for tests and the verify bench.

An in-memory ledger (canonical entries and their RFC 6962 leaf hashes) stands in for the vault:
proof hashes are the MTHs of the leaf ranges named by ``inclusion_ranges`` /
``consistency_ranges``, computed with ``root_from_leaf_hashes`` over the leaf-hash slices.
Everything written follows ``verify.package`` (the format's single source of truth), so a
package built here is what the exporter must produce.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from verify import package as pkg
from verify.canonical import canonical_json, commitment
from verify.checkpoint import Checkpoint, format_checkpoint
from verify.merkle import consistency_ranges, inclusion_ranges, leaf_hash, root_from_leaf_hashes
from verify.note import Signer, sign_note
from verify.tlogproof import TlogProof, format_tlog_proof

ORIGIN = "evault.test/log"
TIME = "2026-03-01T09:00:00.000Z"
CHUNK = 4 << 20


@dataclass
class Ledger:
    """Canonical entries and their leaf hashes, indexed from 0."""

    entries: list[bytes] = field(default_factory=list)
    leaves: list[bytes] = field(default_factory=list)

    def append(self, obj: dict[str, Any]) -> int:
        data = canonical_json(obj)
        self.entries.append(data)
        self.leaves.append(leaf_hash(data))
        return len(self.entries) - 1

    def root(self, size: int) -> bytes:
        return root_from_leaf_hashes(self.leaves[:size])

    def inclusion(self, index: int, size: int) -> tuple[bytes, ...]:
        return tuple(
            root_from_leaf_hashes(self.leaves[a:b]) for a, b in inclusion_ranges(index, size)
        )

    def consistency(self, m: int, n: int) -> list[bytes]:
        return [root_from_leaf_hashes(self.leaves[a:b]) for a, b in consistency_ranges(m, n)]

    def checkpoint(self, signer: Signer, size: int, origin: str = ORIGIN) -> str:
        return sign_note(format_checkpoint(Checkpoint(origin, size, self.root(size))), signer)

    def copy(self) -> Ledger:
        return Ledger(list(self.entries), list(self.leaves))


def note(ledger: Ledger, text: str) -> int:
    return ledger.append({"v": 1, "kind": "note", "time": TIME, "text": text})


def write_random(folder: Path, size: int, ext: str, rng: random.Random) -> tuple[str, str]:
    """Write ``size`` random bytes as files/<sha256>.<ext>; returns (path, sha256)."""
    tmp = folder / f"files/.tmp-{rng.getrandbits(64):016x}"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with tmp.open("wb") as f:
        left = size
        while left:
            block = rng.randbytes(min(CHUNK, left))
            h.update(block)
            f.write(block)
            left -= len(block)
    sha = h.hexdigest()
    path = f"files/{sha}.{ext}"
    tmp.rename(folder / path)
    return path, sha


_EMPTY = pkg.Manifest("", "", "", "", "", 0, (), ())


@dataclass
class Built:
    """A package on disk plus everything needed to attack it."""

    path: Path
    signer: Signer
    ledger: Ledger
    manifest: pkg.Manifest
    acquired: list[int]  # ledger indexes of the acquired entries, one per evidence
    derived: list[int]

    @property
    def size(self) -> int:
        return self.manifest.checkpoint_size

    @property
    def vkey(self) -> str:
        return self.signer.vkey

    def write(self, name: str, data: bytes | str) -> None:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def set_manifest(self, m: pkg.Manifest, *, resign: Signer | None = None) -> None:
        """Write manifest.json for ``m``; re-sign it with ``resign`` if given."""
        data = pkg.manifest_bytes(m)
        self.write(pkg.MANIFEST_PATH, data)
        self.manifest = m
        if resign is not None:
            self.write(pkg.MANIFEST_SIG_PATH, pkg.sign_manifest(data, resign))

    def checkpoint_at(self, size: int, signer: Signer | None = None) -> str:
        """A checkpoint of this package's log at ``size`` (extending the ledger if needed)."""
        ledger = self.ledger.copy()
        while len(ledger.entries) < size:
            note(ledger, f"later {len(ledger.entries)}")
        return ledger.checkpoint(signer or self.signer, size)

    def forked_checkpoint(self, size: int) -> str:
        """A checkpoint at ``size`` of a log that agrees with this one except for entry 0."""
        ledger = self.ledger.copy()
        ledger.entries[0] = canonical_json({"v": 1, "kind": "note", "time": TIME, "text": "fork"})
        ledger.leaves[0] = leaf_hash(ledger.entries[0])
        while len(ledger.entries) < size:
            note(ledger, f"later {len(ledger.entries)}")
        return ledger.checkpoint(self.signer, size)

    def copy_to(self, dest: Path) -> Built:
        shutil.copytree(self.path, dest)
        return replace(self, path=dest)

    def zip_to(self, dest: Path, extra: Sequence[tuple[zipfile.ZipInfo | str, bytes]] = ()) -> Path:
        """Zip the package (members at the root), plus ``extra`` raw members."""
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
            for p in sorted(self.path.rglob("*")):
                if p.is_file():
                    zf.write(p, p.relative_to(self.path).as_posix())
            for info, data in extra:
                zf.writestr(info, data)
        return dest


def build_package(
    dest: Path,
    *,
    signer: Signer | None = None,
    sizes: Sequence[int] = (150_000, 70_000),
    renditions: bool = True,
    since_sizes: Sequence[int] = (),
    report: bool = True,
    seed: int = 7,
) -> Built:
    """Build a valid package at ``dest``: one evidence per item of ``sizes`` (original of that
    size, plus a proxy of a third of it when ``renditions``), openings for every commitment but
    ``file_name`` of the first evidence (not disclosed), and consistency proofs from each of
    ``since_sizes``."""
    rng = random.Random(seed)
    signer = signer or Signer(ORIGIN, bytes(range(32)))
    dest.mkdir(parents=True)
    ledger = Ledger()
    for i in range(3):
        note(ledger, f"before {i}")
    files: list[pkg.PackageFile] = []
    openings: dict[int, dict[str, tuple[bytes, Any]]] = {}
    acquired: list[int] = []
    derived: list[int] = []
    for n, size in enumerate(sizes):
        eid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        path, sha = write_random(dest, size, "mp4", rng)
        secrets = {"officer": f"officer-{n}", "file_name": f"REC_{n:04d}.MP4"}
        salts = {k: rng.randbytes(32) for k in secrets}
        idx = ledger.append(
            {
                "v": 1,
                "kind": "acquired",
                "time": TIME,
                "evidence_id": eid,
                "sha256": sha,
                "size": size,
                "commitments": {k: commitment(k, v, salts[k]) for k, v in secrets.items()},
            }
        )
        acquired.append(idx)
        disclosed = [k for k in secrets if not (n == 0 and k == "file_name")]
        openings[idx] = {k: (salts[k], secrets[k]) for k in disclosed}
        files.append(pkg.PackageFile(path, sha, size, "original", eid, idx))
        note(ledger, f"between {n}")
        if renditions:
            psize = max(1, size // 3)
            ppath, psha = write_random(dest, psize, "mp4", rng)
            didx = ledger.append(
                {
                    "v": 1,
                    "kind": "derived",
                    "time": TIME,
                    "evidence_id": eid,
                    "rendition": "proxy",
                    "input_sha256": sha,
                    "output_sha256": psha,
                    "output_size": psize,
                    "ffmpeg": "6.1.1",
                }
            )
            derived.append(didx)
            files.append(pkg.PackageFile(ppath, psha, psize, "proxy", eid, didx))
    for i in range(2):
        note(ledger, f"after {i}")
    size = len(ledger.entries)
    cp = ledger.checkpoint(signer, size)
    built = Built(dest, signer, ledger, _EMPTY, acquired, derived)
    built.write(pkg.VKEY_PATH, signer.vkey + "\n")
    built.write(pkg.CHECKPOINT_PATH, cp)
    indexes = sorted(acquired + derived)
    for i in indexes:
        built.write(pkg.entry_path(i), ledger.entries[i])
        built.write(
            pkg.proof_path(i), format_tlog_proof(TlogProof(i, ledger.inclusion(i, size), cp))
        )
        if openings.get(i):
            built.write(pkg.opening_path(i), pkg.format_openings(openings[i]))
    for m in since_sizes:
        built.write(
            pkg.consistency_path(m), pkg.format_consistency_proof(ledger.consistency(m, size))
        )
    report_ref = None
    if report:
        html = b"<!doctype html><title>Chain of custody</title><p>test report</p>\n"
        built.write(pkg.REPORT_PATH, html)
        report_ref = (pkg.REPORT_PATH, hashlib.sha256(html).hexdigest(), len(html))
    manifest = pkg.Manifest(
        origin=signer.name,
        case_id="case-2026-0042",
        case_label="secret+personal_privacy",
        exported_by="principal-legal-1",
        exported_at="2026-03-02T10:00:00Z",
        checkpoint_size=size,
        entries=tuple(indexes),
        files=tuple(files),
        report=report_ref,
        consistency=tuple(sorted(since_sizes)),
    )
    built.set_manifest(manifest, resign=signer)
    return built


def verify_json(path: Path, key: str, *args: str) -> tuple[int, dict[str, Any]]:
    """Run ``evault-verify PATH --vkey KEY --json ARGS`` in-process: (exit code, report)."""
    import io
    import json
    from contextlib import redirect_stdout

    from verify.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        code = main([str(path), "--vkey", key, "--json", *args])
    return code, json.loads(out.getvalue())


def expect(
    result: tuple[int, dict[str, Any]], verdict: str, code: str, where: str, *words: str
) -> dict[str, Any]:
    """Assert the verdict, its exit code, and a finding ``code`` at ``where`` whose message
    holds every one of ``words``; returns the report."""
    from verify.report import EXIT_CODES

    status, report = result
    assert report["verdict"] == verdict, report["findings"]
    assert status == EXIT_CODES[verdict] == report["exit_code"]
    hits = [f for f in report["findings"] if f["code"] == code and f["where"] == where]
    assert hits, f"no {code} finding at {where}: {report['findings']}"
    assert any(all(w in f["message"] for w in words) for f in hits), (words, hits)
    return report
