"""Packages holding an ``unserved`` entry: the entry the vault committed though its request was
answered with an error is shown as such, and an ``unserved`` entry that does not name the entry
it claims to is rejected."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

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
from verify.cli import main
from verify.merkle import leaf_hash
from verify.note import Signer
from verify.tlogproof import TlogProof, format_tlog_proof


def build(dest: Path, **override: Any) -> tuple[Built, int, int]:
    """A package with an ``accessed`` entry and the ``unserved`` entry naming it (fields
    overridden by ``override``); returns it with both indexes."""
    signer = Signer(ORIGIN, bytes(range(32)))
    dest.mkdir(parents=True)
    ledger = Ledger()
    note(ledger, "start")
    body = {"v": 1, "kind": "accessed", "time": TIME, "action": "stream", "allowed": True}
    accessed = ledger.append(body)
    note(ledger, "between")
    fields = {
        "entry": accessed,
        "leaf_hash": leaf_hash(ledger.entries[accessed]).hex(),
        "entry_kind": "accessed",
        "answered": "error",
        "noted_at": TIME,
    }
    unserved = ledger.append({"v": 1, "kind": "unserved", "time": TIME, **fields, **override})
    size = len(ledger.entries)
    cp = ledger.checkpoint(signer, size)
    built = Built(dest, signer, ledger, _EMPTY, [], [])
    built.write(pkg.VKEY_PATH, signer.vkey + "\n")
    built.write(pkg.CHECKPOINT_PATH, cp)
    for i in (accessed, unserved):
        built.write(pkg.entry_path(i), ledger.entries[i])
        built.write(
            pkg.proof_path(i), format_tlog_proof(TlogProof(i, ledger.inclusion(i, size), cp))
        )
    manifest = pkg.Manifest(
        origin=signer.name, case_id="case-1", case_label="internal", exported_by="legal-1",
        exported_at="2026-03-02T10:00:00Z", checkpoint_size=size,
        entries=(accessed, unserved), files=(),
    )  # fmt: skip
    built.set_manifest(manifest, resign=signer)
    return built, accessed, unserved


def test_an_unserved_entry_verifies_and_is_shown(tmp_path: Path) -> None:
    built, accessed, unserved = build(tmp_path / "pkg")
    status, report = verify_json(built.path, built.vkey)
    assert report["verdict"] == "ok" and status == 0, report["findings"]
    notes = [f for f in report["findings"] if f["code"] == "unserved"]
    assert len(notes) == 1 and notes[0]["severity"] == "info"
    assert notes[0]["where"] == pkg.entry_path(accessed)
    assert (
        "nothing was served" in notes[0]["message"] and f"entry {unserved}" in notes[0]["message"]
    )
    by_index = {e["index"]: e for e in report["entries"]}
    assert by_index[accessed]["unserved_by"] == unserved
    assert by_index[unserved]["kind"] == "unserved" and by_index[unserved]["unserved_by"] is None
    out = io.StringIO()
    with redirect_stdout(out):
        assert main([str(built.path), "--vkey", built.vkey]) == 0
    assert f"entry {accessed} (accessed) was committed though its request" in out.getvalue()


def test_attack_unserved_entry_naming_another_leaf_is_tampered(tmp_path: Path) -> None:
    built, _accessed, unserved = build(tmp_path / "pkg", leaf_hash="ab" * 32)
    expect(
        verify_json(built.path, built.vkey),
        "tampered",
        "unserved-mismatch",
        pkg.entry_path(unserved),
        "leaf hash",
    )


def test_attack_unserved_entry_claiming_another_kind_is_tampered(tmp_path: Path) -> None:
    built, _accessed, unserved = build(tmp_path / "pkg", entry_kind="denied")
    expect(
        verify_json(built.path, built.vkey),
        "tampered",
        "unserved-mismatch",
        pkg.entry_path(unserved),
        "'denied'",
    )


def test_attack_unserved_entry_naming_a_later_entry_is_malformed(tmp_path: Path) -> None:
    built, _accessed, unserved = build(tmp_path / "pkg", entry=99)
    expect(
        verify_json(built.path, built.vkey),
        "malformed",
        "unserved-invalid",
        pkg.entry_path(unserved),
        "earlier entry",
    )
