"""verify.package: happy paths and the mutation suite (issue 7), folder and zip.

Every attack asserts the verdict, the exit code of ``evault-verify`` and that a finding names
what failed and where (the package path, the entry index, the field).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from tests.verify.package_builder import ORIGIN, Built, build_package, expect, verify_json
from verify import package as pkg
from verify.note import Signer
from verify.package_checks import verify_package

SINCE = 4  # the package carries a consistency proof from this size


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_package(tmp_path_factory.mktemp("tpl") / "pkg", since_sizes=(SINCE,))


@pytest.fixture
def built(template: Built, tmp_path: Path) -> Built:
    return template.copy_to(tmp_path / "pkg")


def original(b: Built, n: int = 0) -> pkg.PackageFile:
    return [f for f in b.manifest.files if f.kind == "original"][n]


# --- happy paths -------------------------------------------------------------------------


def test_folder_verifies(built: Built) -> None:
    code, rep = verify_json(built.path, built.vkey)
    assert (code, rep["verdict"], rep["findings"]) == (0, "ok", [])
    c = rep["counts"]
    assert (c["files"], c["files_ok"], c["entries"], c["entries_ok"]) == (4, 4, 4, 4)
    assert (c["openings_ok"], c["openings_not_disclosed"]) == (3, 1)
    assert rep["checkpoint"] == {
        "origin": ORIGIN,
        "size": built.size,
        "root": rep["checkpoint"]["root"],
        "trusted": True,
    }
    assert all(f["hash_ok"] and f["recorded_ok"] and f["proof_ok"] for f in rep["files"])


def test_zip_verifies(built: Built) -> None:
    z = built.zip_to(built.path.parent / "pkg.zip")
    assert verify_json(z, built.vkey)[0] == 0


def test_progress_reports_all_bytes(built: Built) -> None:
    seen: list[tuple[int, int]] = []
    rep = verify_package(
        built.path, built.signer.verifier, progress=lambda d, t: seen.append((d, t))
    )
    assert rep.verdict == "ok"
    assert seen[-1][0] == seen[-1][1] == rep.bytes_hashed


# --- files -------------------------------------------------------------------------------


def test_flipped_byte_in_file(built: Built) -> None:
    f = original(built)
    data = bytearray(built.read(f.path))
    data[1000] ^= 0x01
    built.write(f.path, bytes(data))
    rep = expect(
        verify_json(built.path, built.vkey),
        "tampered",
        "file-hash",
        f.path,
        f.evidence_id,
        "SHA-256",
    )
    assert [x["hash_ok"] for x in rep["files"] if x["path"] == f.path] == [False]


def test_truncated_file(built: Built) -> None:
    f = original(built)
    built.write(f.path, built.read(f.path)[:-10])
    expect(
        verify_json(built.path, built.vkey),
        "tampered",
        "file-size",
        f.path,
        f"{f.size - 10} bytes",
        "truncated",
    )


def test_missing_file(built: Built) -> None:
    f = original(built, 1)
    (built.path / f.path).unlink()
    expect(
        verify_json(built.path, built.vkey), "tampered", "missing", f.path, "missing", f.evidence_id
    )


def test_unlisted_extra_file(built: Built) -> None:
    built.write("files/" + "ab" * 32 + ".mp4", b"planted")
    built.write("notes.txt", b"hello")
    rep = expect(
        verify_json(built.path, built.vkey),
        "tampered",
        "unlisted",
        "notes.txt",
        "not in its manifest",
    )
    assert {f["where"] for f in rep["findings"]} == {"notes.txt", "files/" + "ab" * 32 + ".mp4"}


def test_missing_report(built: Built) -> None:
    (built.path / pkg.REPORT_PATH).unlink()
    expect(
        verify_json(built.path, built.vkey), "tampered", "missing", pkg.REPORT_PATH, "report.html"
    )


def test_edited_report(built: Built) -> None:
    built.write(pkg.REPORT_PATH, built.read(pkg.REPORT_PATH).replace(b"test", b"best"))
    expect(verify_json(built.path, built.vkey), "tampered", "file-hash", pkg.REPORT_PATH, "SHA-256")


# --- entries and proofs ------------------------------------------------------------------


def test_edited_entry(built: Built) -> None:
    i = built.acquired[0]
    built.write(
        pkg.entry_path(i), built.read(pkg.entry_path(i)).replace(b'"officer"', b'"offices"')
    )
    expect(
        verify_json(built.path, built.vkey),
        "tampered",
        "inclusion",
        pkg.entry_path(i),
        f"entry {i}",
        "not leaf",
    )


def test_entry_moved_to_another_index(built: Built) -> None:
    i, j = built.acquired[0], built.derived[0]
    a, b = built.read(pkg.entry_path(i)), built.read(pkg.entry_path(j))
    built.write(pkg.entry_path(i), b)
    built.write(pkg.entry_path(j), a)
    expect(
        verify_json(built.path, built.vkey),
        "tampered",
        "inclusion",
        pkg.entry_path(i),
        f"its content is entry {j}, moved to index {i}",
    )


def test_entry_file_renamed_to_another_index(built: Built) -> None:
    i = built.acquired[0]
    (built.path / pkg.entry_path(i)).rename(built.path / pkg.entry_path(i + 1))
    rep = expect(
        verify_json(built.path, built.vkey), "tampered", "missing", pkg.entry_path(i), "missing"
    )
    assert any(
        f["code"] == "unlisted" and f["where"] == pkg.entry_path(i + 1) for f in rep["findings"]
    )


def test_proof_for_another_index(built: Built) -> None:
    i, j = built.acquired[0], built.acquired[1]
    built.write(pkg.proof_path(i), built.read(pkg.proof_path(j)))
    expect(
        verify_json(built.path, built.vkey),
        "tampered",
        "proof-index",
        pkg.proof_path(i),
        f"proves index {j}, not entry {i}",
    )


def test_proof_with_altered_hash(built: Built) -> None:
    i = built.derived[1]
    lines = built.read(pkg.proof_path(i)).decode().split("\n")
    lines[2] = "A" * 43 + "="
    built.write(pkg.proof_path(i), "\n".join(lines))
    expect(
        verify_json(built.path, built.vkey),
        "tampered",
        "inclusion",
        pkg.entry_path(i),
        f"entry {i}",
    )


def test_entry_listed_but_proof_missing(built: Built) -> None:
    i = built.derived[0]
    (built.path / pkg.proof_path(i)).unlink()
    expect(verify_json(built.path, built.vkey), "tampered", "missing", pkg.proof_path(i))


def test_file_not_recorded_by_its_entry(built: Built) -> None:
    proxy = next(f for f in built.manifest.files if f.kind == "proxy")
    files = tuple(
        pkg.PackageFile(f.path, f.sha256, f.size, f.kind, f.evidence_id, built.acquired[0])
        if f == proxy
        else f
        for f in built.manifest.files
    )
    built.set_manifest(replace(built.manifest, files=files), resign=built.signer)
    expect(
        verify_json(built.path, built.vkey),
        "tampered",
        "file-unrecorded",
        proxy.path,
        f"entry {built.acquired[0]}",
        "kind",
    )


# --- signatures and keys -----------------------------------------------------------------


def test_checkpoint_with_bad_signature(built: Built) -> None:
    text = built.read(pkg.CHECKPOINT_PATH).decode()
    lines = text.split("\n")
    lines[2] = "B" * 43 + "="  # another root, same signature
    built.write(pkg.CHECKPOINT_PATH, "\n".join(lines))
    rep = expect(
        verify_json(built.path, built.vkey),
        "tampered",
        "checkpoint-signature",
        pkg.CHECKPOINT_PATH,
        "invalid signature",
    )
    assert rep["checkpoint"]["trusted"] is False


def test_checkpoint_by_another_key(built: Built) -> None:
    other = Signer(ORIGIN, b"\x09" * 32)
    built.write(pkg.CHECKPOINT_PATH, built.ledger.checkpoint(other, built.size))
    expect(
        verify_json(built.path, built.vkey),
        "wrong-key",
        "checkpoint-signature",
        pkg.CHECKPOINT_PATH,
        "no signature by trusted key",
    )


def test_vkey_swapped_and_everything_resigned_by_attacker(template: Built, tmp_path: Path) -> None:
    attacker = Signer(ORIGIN, b"\x66" * 32)
    forged = build_package(tmp_path / "forged", signer=attacker, since_sizes=(SINCE,))
    assert verify_json(forged.path, attacker.vkey)[0] == 0  # consistent in itself
    rep = expect(
        verify_json(forged.path, template.vkey),
        "wrong-key",
        "vkey-mismatch",
        pkg.VKEY_PATH,
        attacker.vkey,
        template.vkey,
    )
    where = {f["where"] for f in rep["findings"] if f["severity"] == "wrong-key"}
    assert {pkg.CHECKPOINT_PATH, pkg.MANIFEST_SIG_PATH} <= where


def test_vkey_copy_swapped(built: Built) -> None:
    built.write(pkg.VKEY_PATH, Signer(ORIGIN, b"\x66" * 32).vkey + "\n")
    expect(
        verify_json(built.path, built.vkey),
        "wrong-key",
        "vkey-mismatch",
        pkg.VKEY_PATH,
        "not the trusted key",
    )


def test_wrong_trusted_key_given(built: Built) -> None:
    other = Signer("someone.else/log", b"\x05" * 32)
    rep = expect(
        verify_json(built.path, other.vkey),
        "wrong-key",
        "checkpoint-signature",
        pkg.CHECKPOINT_PATH,
    )
    assert rep["exit_code"] == 2


def test_manifest_edit(built: Built) -> None:
    data = built.read(pkg.MANIFEST_PATH).replace(b"principal-legal-1", b"principal-legal-2")
    built.write(pkg.MANIFEST_PATH, data)
    expect(
        verify_json(built.path, built.vkey),
        "tampered",
        "manifest-edited",
        pkg.MANIFEST_PATH,
        "changed after it was signed",
        hashlib.sha256(data).hexdigest(),
    )


def test_manifest_edit_resigned_by_attacker(built: Built) -> None:
    built.set_manifest(
        replace(built.manifest, exported_by="mallory"), resign=Signer(ORIGIN, b"\x66" * 32)
    )
    expect(
        verify_json(built.path, built.vkey),
        "wrong-key",
        "manifest-signature",
        pkg.MANIFEST_SIG_PATH,
        "no signature by trusted key",
    )


def test_manifest_not_canonical(built: Built) -> None:
    built.write(pkg.MANIFEST_PATH, built.read(pkg.MANIFEST_PATH) + b" ")
    rep = expect(
        verify_json(built.path, built.vkey), "tampered", "manifest-edited", pkg.MANIFEST_PATH
    )
    assert any(f["code"] == "manifest-invalid" for f in rep["findings"])


# --- openings ----------------------------------------------------------------------------


def test_opening_does_not_match_commitment(built: Built) -> None:
    i = built.acquired[1]
    built.write(
        pkg.opening_path(i), built.read(pkg.opening_path(i)).replace(b"officer-1", b"officer-9")
    )
    rep = expect(
        verify_json(built.path, built.vkey),
        "tampered",
        "opening-mismatch",
        pkg.opening_path(i),
        f"entry {i}",
        "'officer'",
    )
    assert {"index": i, "field": "officer", "status": "mismatch", "value": "officer-9"} in rep[
        "openings"
    ]


def test_opening_for_a_field_without_commitment(built: Built) -> None:
    i = built.acquired[1]
    opened = pkg.parse_openings(built.read(pkg.opening_path(i)), "x")
    opened["device"] = (b"\x00" * 32, "cam-7")
    built.write(pkg.opening_path(i), pkg.format_openings(opened))
    expect(
        verify_json(built.path, built.vkey),
        "tampered",
        "opening-unknown-field",
        pkg.opening_path(i),
        "'device'",
    )
