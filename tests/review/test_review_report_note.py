"""verify.report_note: signed integrity reports verify with the vkey, and nothing else does."""

from __future__ import annotations

import hashlib
import json

import pytest

from verify.canonical import canonical_json
from verify.checkpoint import Checkpoint, format_checkpoint, open_checkpoint
from verify.errors import MalformedError, VerificationError, WrongKeyError
from verify.note import Signer, parse_vkey, sign_note
from verify.report_note import (
    REPORT_HEADER,
    sign_report,
    verify_report,
    verify_report_response,
)

ORIGIN = "test.evidence-vault.local/ledger"
REPORT = {"case_id": "案-1", "verdict": "ok", "evidence": [{"sha256": "ab" * 32, "index": 3}]}


def test_round_trip_with_the_published_vkey() -> None:
    signer = Signer.generate(ORIGIN)
    data = canonical_json(REPORT)
    note = sign_report(data, signer)
    assert note.startswith(f"{REPORT_HEADER}\n{hashlib.sha256(data).hexdigest()}\n\n— {ORIGIN} ")
    assert verify_report(data, note, parse_vkey(signer.vkey)) == REPORT
    body = json.dumps({"report": REPORT, "signature": note}, indent=2, ensure_ascii=True)
    assert verify_report_response(body, signer.verifier) == REPORT


def test_a_changed_report_or_another_key_fails() -> None:
    signer = Signer.generate(ORIGIN)
    data = canonical_json(REPORT)
    note = sign_report(data, signer)
    changed = canonical_json({**REPORT, "verdict": "failed"})
    with pytest.raises(VerificationError, match="changed"):
        verify_report(changed, note, signer.verifier)
    with pytest.raises(WrongKeyError):
        verify_report(data, note, Signer.generate(ORIGIN).verifier)
    tampered = note.replace(hashlib.sha256(data).hexdigest(), hashlib.sha256(changed).hexdigest())
    with pytest.raises(VerificationError):
        verify_report(changed, tampered, signer.verifier)
    body = json.dumps({"report": {**REPORT, "verdict": "failed"}, "signature": note})
    with pytest.raises(VerificationError):
        verify_report_response(body, signer.verifier)


def test_non_canonical_bytes_are_refused_even_with_matching_hash() -> None:
    signer = Signer.generate(ORIGIN)
    loose = json.dumps(REPORT).encode()  # not canonical: spaces, escaped non-ASCII
    note = sign_note(f"{REPORT_HEADER}\n{hashlib.sha256(loose).hexdigest()}\n", signer)
    with pytest.raises(MalformedError):
        verify_report(loose, note, signer.verifier)


def test_reports_and_checkpoints_cannot_stand_in_for_each_other() -> None:
    signer = Signer.generate(ORIGIN)
    cp_note = sign_note(format_checkpoint(Checkpoint(ORIGIN, 1, b"\x00" * 32)), signer)
    with pytest.raises(MalformedError, match="not an integrity report"):
        verify_report(canonical_json(REPORT), cp_note, signer.verifier)
    report_note = sign_report(canonical_json(REPORT), signer)
    with pytest.raises(VerificationError):
        open_checkpoint(report_note, signer.verifier)
    extra = sign_note(
        f"{REPORT_HEADER}\n{hashlib.sha256(canonical_json(REPORT)).hexdigest()}\nmore\n", signer
    )
    with pytest.raises(MalformedError):
        verify_report(canonical_json(REPORT), extra, signer.verifier)


def test_malformed_responses_say_so() -> None:
    v = Signer.generate(ORIGIN).verifier
    for body in [b"\xff", "[]", '{"report": {}}', '{"report": 1, "signature": "x"}']:
        with pytest.raises(MalformedError):
            verify_report_response(body, v)
    with pytest.raises(MalformedError):
        verify_report_response('{"report": {"x": 1.5}, "signature": "x"}', v)
