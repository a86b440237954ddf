"""verify.tlogproof: the C2SP tlog-proof@v1 text format and offline verification."""

from __future__ import annotations

import base64

import pytest

from verify.checkpoint import Checkpoint, format_checkpoint
from verify.errors import MalformedError, ProofError, SignatureError, WrongKeyError
from verify.merkle import (
    fold_right,
    inclusion_ranges,
    leaf_hash,
    range_nodes,
    root_from_leaf_hashes,
)
from verify.note import Signer, sign_note
from verify.tlogproof import (
    HEADER,
    TlogProof,
    format_tlog_proof,
    parse_tlog_proof,
    verify_tlog_proof,
)

ORIGIN = "example.org/log"
SIGNER = Signer(ORIGIN, b"\x01" * 32)
ENTRIES = [f'{{"i":{i}}}'.encode() for i in range(13)]
LEAVES = [leaf_hash(e) for e in ENTRIES]


def make_proof(index: int, size: int = len(ENTRIES), signer: Signer = SIGNER) -> TlogProof:
    hashes = tuple(
        fold_right(
            [root_from_leaf_hashes(LEAVES[i << lv : (i + 1) << lv]) for lv, i in range_nodes(a, b)]
        )
        for a, b in inclusion_ranges(index, size)
    )
    cp = Checkpoint(ORIGIN, size, root_from_leaf_hashes(LEAVES[:size]))
    return TlogProof(index, hashes, sign_note(format_checkpoint(cp), signer))


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def test_layout_is_exactly_the_spec_format() -> None:
    p = make_proof(5)
    text = format_tlog_proof(p)
    want = (
        "c2sp.org/tlog-proof@v1\n"
        "index 5\n" + "".join(b64(h) + "\n" for h in p.proof) + "\n" + p.checkpoint
    )
    assert text == want
    assert HEADER == "c2sp.org/tlog-proof@v1"
    with_extra = format_tlog_proof(TlogProof(5, p.proof, p.checkpoint, b"vrf"))
    assert with_extra.startswith("c2sp.org/tlog-proof@v1\nextra dnJm\nindex 5\n")


@pytest.mark.parametrize("extra", [None, b"", b"\x00opaque"])
@pytest.mark.parametrize("index", [0, 7, 12])
def test_tlog_proof_round_trip(index: int, extra: bytes | None) -> None:
    p = make_proof(index)
    p = TlogProof(p.index, p.proof, p.checkpoint, extra)
    assert parse_tlog_proof(format_tlog_proof(p)) == p
    assert parse_tlog_proof(format_tlog_proof(p).encode()) == p


def test_single_entry_log_has_no_proof_hashes() -> None:
    p = make_proof(0, size=1)
    assert p.proof == ()
    assert "index 0\n\nexample.org/log\n1\n" in format_tlog_proof(p)
    assert parse_tlog_proof(format_tlog_proof(p)) == p
    verify_tlog_proof(p, ENTRIES[0], SIGNER.verifier)


@pytest.mark.parametrize("index", range(len(ENTRIES)))
def test_every_entry_verifies(index: int) -> None:
    p = parse_tlog_proof(format_tlog_proof(make_proof(index)))
    cp = verify_tlog_proof(p, ENTRIES[index], SIGNER.verifier)
    assert (cp.origin, cp.size) == (ORIGIN, len(ENTRIES))


def test_other_entry_fails_proof() -> None:
    with pytest.raises(ProofError, match="leads to root"):
        verify_tlog_proof(make_proof(3), ENTRIES[4], SIGNER.verifier)


def test_shifted_index_fails_proof() -> None:
    p = make_proof(3)
    with pytest.raises(ProofError):
        verify_tlog_proof(TlogProof(2, p.proof, p.checkpoint), ENTRIES[3], SIGNER.verifier)


def test_index_beyond_checkpoint_fails_proof() -> None:
    p = make_proof(3, size=4)
    with pytest.raises(ProofError, match="beyond tree size 4"):
        verify_tlog_proof(TlogProof(4, p.proof, p.checkpoint), ENTRIES[4], SIGNER.verifier)


def test_proof_against_other_log_key_is_wrong_key() -> None:
    p = make_proof(3, signer=Signer.generate(ORIGIN))
    with pytest.raises(WrongKeyError):
        verify_tlog_proof(p, ENTRIES[3], SIGNER.verifier)


def test_tampered_checkpoint_fails_signature() -> None:
    p = make_proof(3)
    forged = p.checkpoint.replace(f"\n{len(ENTRIES)}\n", f"\n{len(ENTRIES) + 1}\n")
    with pytest.raises(SignatureError):
        verify_tlog_proof(TlogProof(3, p.proof, forged), ENTRIES[3], SIGNER.verifier)


GOOD = format_tlog_proof(make_proof(5))
H0 = b64(make_proof(5).proof[0])


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (GOOD.replace(HEADER, "c2sp.org/tlog-proof@v2"), "line 1"),
        (GOOD.replace("\n", "\r\n"), "line 1"),
        (GOOD.replace("index 5", "index 05"), "leading zeros"),
        (GOOD.replace("index 5", "index -5"), "leading zeros"),
        (GOOD.replace("index 5", "index  5"), "leading zeros"),
        (GOOD.replace("index 5", "index"), "not 'index <n>'"),
        (GOOD.replace("index 5\n", ""), "not 'index <n>'"),
        (GOOD.replace("index 5", "extra !!\nindex 5"), "base64"),
        (GOOD.replace("index 5", "extra\nindex 5"), "not 'index <n>'"),
        (GOOD.replace("index 5", "index 5\nextra AA=="), "proof hash"),
        (GOOD.replace(H0, H0[:-4] + "AA=="), "bytes, want 32"),
        (GOOD.replace(H0, H0 + H0), "base64"),
        (GOOD.replace(H0 + "\n", H0 + "\n\n"), "checkpoint"),
        (GOOD.split("\n\n", 1)[0] + "\n", "missing or unterminated"),
        (GOOD.split("\n\n", 1)[0] + "\n\n", "checkpoint"),
        (GOOD.replace("\nexample.org/log\n13\n", "\nexample.org/log\n013\n"), "checkpoint"),
        (GOOD.rstrip("\n"), "checkpoint"),
    ],
)
def test_malformed_tlog_proof_is_rejected(text: str, why: str) -> None:
    with pytest.raises(MalformedError, match=why):
        parse_tlog_proof(text)


def test_tlog_proof_with_invalid_utf8_is_malformed() -> None:
    with pytest.raises(MalformedError, match="UTF-8"):
        parse_tlog_proof(GOOD.encode() + b"\xff")


def test_format_rejects_bad_values() -> None:
    p = make_proof(1)
    with pytest.raises(ValueError, match="negative"):
        format_tlog_proof(TlogProof(-1, p.proof, p.checkpoint))
    with pytest.raises(ValueError, match="want 32"):
        format_tlog_proof(TlogProof(1, (b"x",), p.checkpoint))
