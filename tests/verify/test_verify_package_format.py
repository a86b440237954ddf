"""verify.package format: manifest, openings, consistency proofs and manifest.sig are strict."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest

from verify import package as pkg
from verify.canonical import canonical_json
from verify.errors import MalformedError
from verify.note import Signer, verify_note

SHA = "ab" * 32
FILE = pkg.PackageFile(
    f"files/{SHA}.mp4", SHA, 10, "original", "6513270e-269e-4d37-b2a7-4de452e6b438", 3
)
M = pkg.Manifest(
    origin="evault.test/log",
    case_id="case-1",
    case_label="secret+personal_privacy",
    exported_by="p-1",
    exported_at="2026-03-02T10:00:00.123Z",
    checkpoint_size=9,
    entries=(3, 5),
    files=(FILE,),
    report=(pkg.REPORT_PATH, SHA, 4),
    consistency=(2, 4),
)


def obj() -> dict[str, Any]:
    return json.loads(pkg.manifest_bytes(M))


def test_manifest_round_trip_and_exact_text() -> None:
    data = pkg.manifest_bytes(M)
    assert pkg.parse_manifest(data) == M
    assert json.loads(data)["format"] == "evidence-vault-package/1"
    assert json.loads(data)["consistency"] == [
        {"from_size": 2, "proof_path": "consistency/2.proof"},
        {"from_size": 4, "proof_path": "consistency/4.proof"},
    ]
    bare = replace(M, report=None, consistency=())
    assert set(json.loads(pkg.manifest_bytes(bare))) == {
        "format",
        "origin",
        "case",
        "exported_by",
        "exported_at",
        "checkpoint_size",
        "entries",
        "files",
    }


def _mutate(path: str, value: Any) -> bytes:
    o = obj()
    target, *rest = path.split(".")
    cur: Any = o
    keys = [target, *rest]
    for k in keys[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur[k]
    last = keys[-1]
    if value is KeyError:
        del cur[last]
    elif isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value
    return canonical_json(o)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("format", "evidence-vault-package/2"),
        ("origin", ""),
        ("case.title", "secret title"),
        ("case.id", KeyError),
        ("exported_at", "yesterday"),
        ("checkpoint_size", -1),
        ("checkpoint_size", True),
        ("entries.1", 3),  # not ascending
        ("entries.1", 9),  # not below the size
        ("files.0.path", f"files/{'cd' * 32}.mp4"),  # not its own hash
        ("files.0.path", f"files/{SHA}.MP4"),
        ("files.0.path", f"files/{SHA}"),
        ("files.0.path", f"../{SHA}.mp4"),
        ("files.0.kind", "thumbnail"),
        ("files.0.evidence_id", "6513270E-269E-4D37-B2A7-4DE452E6B438"),
        ("files.0.entry", 4),  # not in entries
        ("files.0.size", "10"),
        ("files.0.extra", 1),
        ("report.path", "other.html"),
        ("consistency.0.from_size", 0),
        ("consistency.1.from_size", 9),
        ("consistency.0.proof_path", "consistency/3.proof"),
        ("consistency", []),
        ("consistency", {}),
        ("files", {}),
        ("surprise", 1),
    ],
)
def test_manifest_rejects(path: str, value: Any) -> None:
    with pytest.raises(MalformedError):
        pkg.parse_manifest(_mutate(path, value))


def test_manifest_rejects_duplicate_paths_and_non_canonical_json() -> None:
    with pytest.raises(MalformedError, match="listed twice"):
        pkg.manifest_bytes(replace(M, files=(FILE, FILE)))
    with pytest.raises(MalformedError, match="canonical"):
        pkg.parse_manifest(pkg.manifest_bytes(M) + b"\n")


def test_manifest_sig_is_not_a_checkpoint() -> None:
    signer = Signer("evault.test/log", bytes(32))
    data = pkg.manifest_bytes(M)
    sig = pkg.sign_manifest(data, signer)
    text = verify_note(sig, signer.verifier).text
    assert text == f"evidence-vault package manifest v1\n{hashlib.sha256(data).hexdigest()}\n"
    assert not text.startswith(signer.name)


def test_openings_round_trip_and_strictness() -> None:
    salt = bytes(range(32))
    data = pkg.format_openings({"officer": (salt, "A-1"), "tags": (salt, [1, {"b": None}])})
    assert data.startswith(b'{"officer":{"salt":"AAECAwQF')
    assert pkg.parse_openings(data, "o") == {
        "officer": (salt, "A-1"),
        "tags": (salt, [1, {"b": None}]),
    }
    for bad in [
        b'{"officer":{"salt":"AA==","value":1,"x":2}}',
        b'{"officer":{"value":1}}',
        b'{"officer":{"salt":"A A=","value":1}}',
        b'{"officer": {"salt":"AA==","value":1}}',
        b"[]",
    ]:
        with pytest.raises(MalformedError, match=r"^o: "):
            pkg.parse_openings(bad, "o")


def test_consistency_proof_round_trip_and_strictness() -> None:
    hashes = [bytes([i]) * 32 for i in range(3)]
    data = pkg.format_consistency_proof(hashes)
    assert data.count(b"\n") == 3
    assert pkg.parse_consistency_proof(data, "c") == hashes
    assert pkg.parse_consistency_proof(b"", "c") == []
    for bad in [
        data.rstrip(b"\n"),
        data + b"\n",
        data.replace(b"\n", b"\r\n"),
        b"AAAA\n",
        b" " + data,
    ]:
        with pytest.raises(MalformedError, match=r"^c"):
            pkg.parse_consistency_proof(bad, "c")


def test_paths() -> None:
    assert (pkg.entry_path(7), pkg.opening_path(7), pkg.proof_path(7), pkg.consistency_path(3)) == (
        "entries/7.json",
        "openings/7.json",
        "proofs/7.tlog-proof",
        "consistency/3.proof",
    )
    signer = Signer("evault.test/log", bytes(32))
    assert pkg.vkey_file_text(signer.verifier) == signer.vkey + "\n"
