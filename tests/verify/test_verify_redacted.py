"""Packages that carry a redacted copy without its original, and the attacks on them.

The package holds the copy, its spec and the two ledger entries that bind them (the copy's
``redacted`` entry and the original's ``acquired`` entry), each with its proof; the original
itself stays with the vault. Each attack is rejected by a finding that names it.
"""

from __future__ import annotations

import hashlib
import io
import random
import uuid
from contextlib import redirect_stdout
from dataclasses import replace
from pathlib import Path

import pytest

from tests.verify.package_builder import (
    _EMPTY,
    ORIGIN,
    TIME,
    Built,
    Ledger,
    expect,
    note,
    verify_json,
)
from verify import package as pkg
from verify.canonical import canonical_json
from verify.cli import main
from verify.note import Signer
from verify.tlogproof import TlogProof, format_tlog_proof

SPEC = canonical_json({"version": 1, "effect": "blur", "boxes": [], "frame_ranges": [],
                       "mute_ranges": [{"start_ms": 0, "end_ms": 500}]})  # fmt: skip
OTHER_SPEC = canonical_json({"version": 1, "effect": "solid", "boxes": [], "frame_ranges": [],
                             "mute_ranges": [{"start_ms": 0, "end_ms": 5}]})  # fmt: skip


def build(dest: Path, *, point_at_other: bool = False, with_original: bool = False) -> Built:
    """A package with evidence A's redacted copy and spec (and A's original if asked). With
    ``point_at_other``, A's ``redacted`` entry names evidence B's ``acquired`` entry."""
    rng = random.Random(3)
    signer = Signer(ORIGIN, bytes(range(32)))
    dest.mkdir(parents=True)
    ledger = Ledger()
    note(ledger, "start")
    originals: dict[str, tuple[bytes, int]] = {}
    for name in ("A", "B"):
        data = rng.randbytes(50_000)
        eid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        idx = ledger.append({"v": 1, "kind": "acquired", "time": TIME, "evidence_id": eid,
                             "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})  # fmt: skip
        originals[name] = (data, idx)
        originals[name + "-id"] = (eid.encode(), idx)
    a_data, a_idx = originals["A"]
    a_id = originals["A-id"][0].decode()
    copy = rng.randbytes(20_000)
    copy_sha = hashlib.sha256(copy).hexdigest()
    r_idx = ledger.append(
        {
            "v": 1,
            "kind": "redacted",
            "time": TIME,
            "evidence_id": a_id,
            "rendition": "redacted",
            "rendition_id": str(uuid.uuid4()),
            "input_sha256": hashlib.sha256(a_data).hexdigest(),
            "output_sha256": copy_sha,
            "output_size": len(copy),
            "original_entry": originals["B"][1] if point_at_other else a_idx,
            "spec_sha256": hashlib.sha256(SPEC).hexdigest(),
            "spec_version": 1,
            "ffmpeg": "5.1.9",
            "args": ["ffmpeg", "-i", "{input}", "{output}"],
        }
    )
    note(ledger, "end")
    size = len(ledger.entries)
    cp = ledger.checkpoint(signer, size)
    built = Built(dest, signer, ledger, _EMPTY, [a_idx, originals["B"][1]], [r_idx])
    built.write(pkg.VKEY_PATH, signer.vkey + "\n")
    built.write(pkg.CHECKPOINT_PATH, cp)
    linked = originals["B"][1] if point_at_other else a_idx
    indexes = sorted({linked, r_idx})
    for i in indexes:
        built.write(pkg.entry_path(i), ledger.entries[i])
        built.write(
            pkg.proof_path(i), format_tlog_proof(TlogProof(i, ledger.inclusion(i, size), cp))
        )
    spec_sha = hashlib.sha256(SPEC).hexdigest()
    files = [
        pkg.PackageFile(f"files/{copy_sha}.mp4", copy_sha, len(copy), "redacted", a_id, r_idx),
        pkg.PackageFile(
            f"files/{spec_sha}.json", spec_sha, len(SPEC), "redaction-spec", a_id, r_idx
        ),
    ]
    built.write(files[0].path, copy)
    built.write(files[1].path, SPEC)
    if with_original:
        a_sha = hashlib.sha256(a_data).hexdigest()
        files.append(
            pkg.PackageFile(f"files/{a_sha}.mp4", a_sha, len(a_data), "original", a_id, a_idx)
        )
        built.write(files[-1].path, a_data)
    manifest = pkg.Manifest(
        origin=signer.name, case_id="case-1", case_label="internal", exported_by="legal-1",
        exported_at="2026-03-02T10:00:00Z", checkpoint_size=size, entries=tuple(indexes),
        files=tuple(files),
    )  # fmt: skip
    built.set_manifest(manifest, resign=signer)
    return built


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("redacted-tpl") / "pkg")


@pytest.fixture
def built(template: Built, tmp_path: Path) -> Built:
    return template.copy_to(tmp_path / "pkg")


def of_kind(b: Built, kind: str) -> pkg.PackageFile:
    return next(f for f in b.manifest.files if f.kind == kind)


def test_a_package_with_only_the_redacted_copy_verifies_and_says_the_original_is_absent(
    built: Built,
) -> None:
    status, report = verify_json(built.path, built.vkey)
    assert report["verdict"] == "ok" and status == 0, report["findings"]
    notes = [f for f in report["findings"] if f["code"] == "original-not-included"]
    assert len(notes) == 1 and notes[0]["severity"] == "info"
    assert (
        "NOT included" in notes[0]["message"]
        and f"entry {built.acquired[0]}" in notes[0]["message"]
    )
    out = io.StringIO()
    with redirect_stdout(out):
        assert main([str(built.path), "--vkey", built.vkey]) == 0
    assert "the original of evidence" in out.getvalue() and "NOT included" in out.getvalue()


def test_with_its_original_there_is_nothing_to_say(tmp_path: Path) -> None:
    b = build(tmp_path / "pkg", with_original=True)
    status, report = verify_json(b.path, b.vkey)
    assert status == 0 and not [
        f for f in report["findings"] if f["code"] == "original-not-included"
    ]


def test_attack_tampered_redacted_copy(built: Built) -> None:
    copy = of_kind(built, "redacted")
    data = bytearray(built.read(copy.path))
    data[1000] ^= 1
    built.write(copy.path, bytes(data))
    report = expect(verify_json(built.path, built.vkey), "tampered", "redacted-copy-tampered",
                    copy.path, "not the copy recorded", f"entry {built.derived[0]}")  # fmt: skip
    assert any(f["code"] == "file-hash" for f in report["findings"])


def test_attack_swapped_spec(built: Built) -> None:
    spec = of_kind(built, "redaction-spec")
    built.write(spec.path, OTHER_SPEC + b" " * (len(SPEC) - len(OTHER_SPEC)))
    expect(verify_json(built.path, built.vkey), "tampered", "redaction-spec-swapped", spec.path,
           "swapped", f"entry {built.derived[0]}")  # fmt: skip


def test_attack_swapped_spec_listed_in_a_resigned_manifest(built: Built) -> None:
    """Even a manifest signed by the log key cannot make another spec the copy's."""
    spec = of_kind(built, "redaction-spec")
    sha = hashlib.sha256(OTHER_SPEC).hexdigest()
    other = replace(spec, path=f"files/{sha}.json", sha256=sha, size=len(OTHER_SPEC))
    (built.path / spec.path).unlink()
    built.write(other.path, OTHER_SPEC)
    files = tuple(other if f == spec else f for f in built.manifest.files)
    built.set_manifest(replace(built.manifest, files=files), resign=built.signer)
    expect(verify_json(built.path, built.vkey), "tampered", "file-unrecorded", other.path,
           "spec_sha256")  # fmt: skip


def test_attack_copy_claimed_from_a_different_original(tmp_path: Path) -> None:
    b = build(tmp_path / "pkg", point_at_other=True)
    expect(verify_json(b.path, b.vkey), "tampered", "redacted-other-original",
           pkg.entry_path(b.derived[0]), "different original")  # fmt: skip


def test_attack_other_originals_entry_put_in_place_of_the_copys(built: Built) -> None:
    """The original's entry file replaced by another original's: its proof fails, and the
    copy's link names the substitution."""
    a_idx, b_idx = built.acquired
    built.write(pkg.entry_path(a_idx), built.ledger.entries[b_idx])
    report = expect(verify_json(built.path, built.vkey), "tampered", "redacted-other-original",
                    pkg.entry_path(built.derived[0]), "different original")  # fmt: skip
    assert any(f["code"] == "inclusion" for f in report["findings"])


def test_attack_original_entry_left_out(built: Built) -> None:
    a_idx = built.acquired[0]
    (built.path / pkg.entry_path(a_idx)).unlink()
    (built.path / pkg.proof_path(a_idx)).unlink()
    entries = tuple(i for i in built.manifest.entries if i != a_idx)
    built.set_manifest(replace(built.manifest, entries=entries), resign=built.signer)
    expect(verify_json(built.path, built.vkey), "tampered", "redacted-unlinked",
           pkg.entry_path(built.derived[0]), "cannot be checked")  # fmt: skip


def test_attack_original_proof_altered(built: Built) -> None:
    a_idx = built.acquired[0]
    size = built.manifest.checkpoint_size
    proof = list(built.ledger.inclusion(a_idx, size))
    proof[0] = bytes(32)
    cp = built.read(pkg.CHECKPOINT_PATH).decode()
    built.write(pkg.proof_path(a_idx), format_tlog_proof(TlogProof(a_idx, tuple(proof), cp)))
    expect(verify_json(built.path, built.vkey), "tampered", "redacted-original-unproven",
           pkg.entry_path(a_idx), "not proven")  # fmt: skip
