"""evault-verify on every artefact the service gives out besides packages: a signed integrity
report response, a tlog-proof with its entry, a dock receipt; and the README's example of
``verify_report_response`` run exactly as written. Real files, the real CLI in a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.verify.package_builder import ORIGIN, TIME, Ledger, note
from verify.canonical import canonical_json
from verify.note import Signer
from verify.report_note import sign_report
from verify.tlogproof import TlogProof, format_tlog_proof

ROOT = Path(__file__).resolve().parents[2]
SIGNER = Signer(ORIGIN, b"\x05" * 32)
OTHER = Signer(ORIGIN, b"\x06" * 32)
SHA = "ab" * 32
EID = "6f1c2d3e-0000-4000-8000-000000000001"


def verify(*argv: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "verify", *argv], capture_output=True, text=True, timeout=60
    )
    return proc.returncode, proc.stdout, proc.stderr


def _ledger() -> tuple[Ledger, int]:
    led = Ledger()
    for i in range(5):
        note(led, f"before {i}")
    acquired = {"v": 1, "kind": "acquired", "time": TIME, "evidence_id": EID}
    idx = led.append({**acquired, "sha256": SHA, "size": 1234, "label": "internal"})
    for i in range(3):
        note(led, f"after {i}")
    return led, idx


def _report_body(led: Ledger, idx: int, signer: Signer = SIGNER, **change: Any) -> bytes:
    size = len(led.entries)
    item = {
        "evidence_id": EID,
        "sha256": SHA,
        "size": 1234,
        "ledger": {
            "index": idx,
            "tree_size": size,
            "status": "ok",
            "entry": led.entries[idx].decode(),
            "proof": [h.hex() for h in led.inclusion(idx, size)],
        },
        "verdict": "ok",
        "reasons": [],
    }
    report = {
        "format": "evidence-vault integrity report v1",
        "case_id": "C-1",
        "mode": "now",
        "log": {"origin": ORIGIN, "vkey": SIGNER.vkey, "checkpoint": led.checkpoint(SIGNER, size)},
        "evidence": [item],
        "verdict": "ok",
        "reasons": [],
    }
    report.update(change)
    note_text = sign_report(canonical_json(report), signer)
    return json.dumps({"report": report, "signature": note_text}).encode()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("artefacts")
    led, idx = _ledger()
    size = len(led.entries)
    (d / "report.json").write_bytes(_report_body(led, idx))
    proof = TlogProof(idx, led.inclusion(idx, size), led.checkpoint(SIGNER, size))
    (d / "entry.tlog-proof").write_text(format_tlog_proof(proof))
    (d / "entry.json").write_bytes(led.entries[idx])
    receipt = {
        "v": 1, "sha256": SHA, "size": 1234, "evidence_id": EID, "ledger_index": idx,
        "kind": "acquired", "checkpoint": led.checkpoint(SIGNER, idx + 1), "dock_id": "dock-01",
        "time": TIME, "source_name": "20260301_0900.mp4", "source": None,
    }  # fmt: skip
    (d / "x.mp4.evault-receipt.json").write_text(json.dumps(receipt, indent=1))
    return {"dir": d, "led": led, "idx": idx, "receipt": receipt}


def test_signed_integrity_report_verifies(world: dict[str, Any]) -> None:
    code, out, err = verify(str(world["dir"] / "report.json"), "--vkey", SIGNER.vkey)
    assert code == 0, out + err
    assert out.splitlines()[-1] == "VERIFIED 验证通过"
    assert "1 of 1 items: the acquired entry it carries is proven" in out
    code, out, _ = verify(str(world["dir"] / "report.json"), "--vkey", SIGNER.vkey, "--json")
    doc = json.loads(out)
    assert (doc["kind"], doc["verdict"], doc["facts"]["case_id"]) == (
        "integrity-report",
        "ok",
        "C-1",
    )


def test_attack_edited_integrity_report(world: dict[str, Any], tmp_path: Path) -> None:
    body = json.loads((world["dir"] / "report.json").read_bytes())
    body["report"]["verdict"] = "ok"
    body["report"]["evidence"][0]["sha256"] = "cd" * 32  # swap in other footage's hash
    f = tmp_path / "edited.json"
    f.write_text(json.dumps(body))
    code, out, _ = verify(str(f), "--vkey", SIGNER.vkey)
    assert code == 1 and "TAMPERED" in out.splitlines()[-1]
    assert "the report was changed or is not the one signed" in out


def test_attack_report_signed_by_another_key(world: dict[str, Any], tmp_path: Path) -> None:
    f = tmp_path / "forged.json"
    f.write_bytes(_report_body(world["led"], world["idx"], signer=OTHER))
    code, out, _ = verify(str(f), "--vkey", SIGNER.vkey)
    assert code == 2 and out.splitlines()[-1] == "WRONG KEY 密钥不符"


def test_attack_signed_report_whose_item_proof_does_not_hold(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """Even a genuinely signed report is re-checked: its entry must be in its checkpoint."""
    led: Ledger = world["led"]
    bad = led.copy()
    bad.entries[world["idx"]] = bad.entries[world["idx"]].replace(b"1234", b"1235")
    body = json.loads(_report_body(led, world["idx"]))
    report = body["report"]
    report["evidence"][0]["ledger"]["entry"] = bad.entries[world["idx"]].decode()
    f = tmp_path / "lying.json"
    f.write_text(
        json.dumps({"report": report, "signature": sign_report(canonical_json(report), SIGNER)})
    )
    code, out, _ = verify(str(f), "--vkey", SIGNER.vkey)
    assert code == 1 and "[tampered] evidence[0]" in out


def test_tlog_proof_with_its_entry_verifies(world: dict[str, Any], tmp_path: Path) -> None:
    d = world["dir"]
    proof, entry = str(d / "entry.tlog-proof"), str(d / "entry.json")
    code, out, err = verify(proof, "--entry", entry, "--vkey", SIGNER.vkey)
    assert code == 0, out + err
    assert f"the entry given is leaf {world['idx']} of that tree" in out
    assert SHA in out  # what the entry records, for the reader to compare
    changed = tmp_path / "entry.json"
    changed.write_bytes((d / "entry.json").read_bytes().replace(b"1234", b"1235"))
    code, out, _ = verify(proof, "--entry", str(changed), "--vkey", SIGNER.vkey)
    assert code == 1 and out.splitlines()[-1] == "TAMPERED 已被篡改"
    code, out, _ = verify(proof, "--entry", entry, "--vkey", OTHER.vkey)
    assert code == 2


def test_tlog_proof_without_its_entry_is_a_usage_error(world: dict[str, Any]) -> None:
    code, out, err = verify(str(world["dir"] / "entry.tlog-proof"), "--vkey", SIGNER.vkey)
    assert code == 4 and out == ""
    assert "--entry FILE" in err and "Traceback" not in err


def test_receipt_checks_its_checkpoint_and_says_what_it_cannot(world: dict[str, Any]) -> None:
    receipt = str(world["dir"] / "x.mp4.evault-receipt.json")
    code, out, err = verify(receipt, "--vkey", SIGNER.vkey)
    assert code == 0, out + err
    assert f"that checkpoint's tree contains ledger entry {world['idx']}" in out
    assert "not checked" in out and "a receipt carries no inclusion proof" in out
    assert f"evault ledger proof {world['idx']}" in out
    code, out, _ = verify(
        receipt, "--vkey", SIGNER.vkey, "--entry", str(world["dir"] / "entry.json")
    )
    assert code == 0 and "records the receipt's kind, evidence id, SHA-256 and size" in out


def test_attack_receipt_edited_or_checkpoint_too_small(
    world: dict[str, Any], tmp_path: Path
) -> None:
    r = dict(world["receipt"])
    r["ledger_index"] = r["ledger_index"] + 2  # points past its checkpoint
    f = tmp_path / "r.json"
    f.write_text(json.dumps(r))
    code, out, _ = verify(str(f), "--vkey", SIGNER.vkey)
    assert code == 1 and "does not contain entry" in out
    r = dict(world["receipt"], sha256="cd" * 32)  # another file's hash, entry given
    f.write_text(json.dumps(r))
    code, out, _ = verify(
        str(f), "--vkey", SIGNER.vkey, "--entry", str(world["dir"] / "entry.json")
    )
    assert code == 1 and "records another sha256 than the receipt" in out
    code, out, _ = verify(str(world["dir"] / "x.mp4.evault-receipt.json"), "--vkey", OTHER.vkey)
    assert code == 2


def test_unknown_file_is_malformed(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    code, out, _ = verify(str(f), "--vkey", SIGNER.vkey)
    assert code == 3
    assert "neither a package (a folder or a .zip) nor an integrity report" in out


def test_closed_pipe_ends_quietly_with_the_verdict(world: dict[str, Any]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "verify", str(world["dir"] / "report.json"),
         "--vkey", SIGNER.vkey, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head` gone before anything was written
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_readme_example_of_verify_report_response_runs_as_written(
    world: dict[str, Any], tmp_path: Path
) -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(b for b in blocks if "verify_report_response" in b)
    (tmp_path / "integrity-report.json").write_bytes((world["dir"] / "report.json").read_bytes())
    (tmp_path / "trusted-vkey.txt").write_text(SIGNER.vkey + "\n")
    proc = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok", "1"]
    # and it refuses an edited report, as the README says
    edited = json.loads((tmp_path / "integrity-report.json").read_text())
    edited["report"]["case_id"] = "C-2"
    (tmp_path / "integrity-report.json").write_text(json.dumps(edited))
    proc = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert proc.returncode != 0 and "VerificationError" in proc.stderr
