"""cosignature/v1 (C2SP tlog-cosignature) as verify.cosignature implements it: the key ID with
type 0x04, the signed message, the timestamped signature, vkeys, and what a verifier refuses."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verify.checkpoint import Checkpoint, format_checkpoint
from verify.cosignature import (
    Cosigner,
    check_cosignatures,
    cosignature_key_id,
    parse_cosigner_vkey,
    signature_lines,
    verify_cosignature,
)
from verify.errors import MalformedError, SignatureError
from verify.note import Signer

BODY = format_checkpoint(Checkpoint("example.com/behind-the-sofa", 20852163, bytes(range(32))))
SEED = bytes(range(100, 132))


def test_line_layout_and_signed_message_follow_the_spec() -> None:
    w = Cosigner("witness.example.com/w1", SEED)
    line = w.cosign(BODY, 1679315147)
    assert line.startswith("\u2014 witness.example.com/w1 ") and line.endswith("\n")
    raw = base64.b64decode(line.split(" ")[2])
    pub = w.key.public_key
    want_id = hashlib.sha256(b"witness.example.com/w1\n\x04" + pub).digest()[:4]
    assert raw[:4] == want_id == cosignature_key_id(w.name, pub)
    assert int.from_bytes(raw[4:12], "big") == 1679315147
    msg = b"cosignature/v1\ntime 1679315147\n" + BODY.encode()
    Ed25519PublicKey.from_public_bytes(pub).verify(raw[12:], msg)  # raises if not
    # the note key ID (type 0x01) of the same key differs: a log signature is no cosignature
    assert Signer(w.name, SEED).key_id != raw[:4]


def test_vkey_and_skey_round_trip_with_type_0x04() -> None:
    w = Cosigner.generate("w.example/a")
    key = parse_cosigner_vkey(w.key.vkey)
    assert key == w.key
    assert base64.b64decode(w.key.vkey.split("+", 2)[2])[0] == 0x04
    assert Cosigner.from_skey(w.to_skey()).key == w.key
    assert "PRIVATE" not in repr(w)


def test_a_log_vkey_is_refused_as_a_witness_key() -> None:
    with pytest.raises(MalformedError, match="not a cosignature/v1 key"):
        parse_cosigner_vkey(Signer.generate("w.example/a").vkey)


def test_vkey_with_a_wrong_key_id_is_refused() -> None:
    name, _kid, data = Cosigner.generate("w.example/a").key.vkey.split("+", 2)
    with pytest.raises(MalformedError, match="does not match"):
        parse_cosigner_vkey(f"{name}+00000000+{data}")


def test_valid_cosignature_returns_its_time() -> None:
    w = Cosigner("w.example/a", SEED)
    (sig,) = signature_lines(BODY, w.cosign(BODY, 1700000000))
    assert verify_cosignature(sig, BODY, w.key) == 1700000000


def _edit(line: str, at: int) -> str:
    prefix, b64 = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[at] ^= 1
    return f"{prefix} {base64.b64encode(bytes(raw)).decode()}\n"


@pytest.mark.parametrize("at", [4, 11, 12, 75], ids=["time-high", "time-low", "sig", "sig-end"])
def test_edited_cosignature_is_refused(at: int) -> None:
    w = Cosigner("w.example/a", SEED)
    (sig,) = signature_lines(BODY, _edit(w.cosign(BODY, 1700000000), at))
    with pytest.raises(SignatureError):
        verify_cosignature(sig, BODY, w.key)


def test_cosignature_of_another_checkpoint_is_refused() -> None:
    w = Cosigner("w.example/a", SEED)
    other = format_checkpoint(Checkpoint("example.com/behind-the-sofa", 20852163, bytes(32)))
    (sig,) = signature_lines(BODY, w.cosign(other))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_cosignature(sig, BODY, w.key)


def test_truncated_cosignature_is_malformed() -> None:
    w = Cosigner("w.example/a", SEED)
    line = w.cosign(BODY)
    prefix, b64 = line.rstrip("\n").rsplit(" ", 1)
    short = base64.b64encode(base64.b64decode(b64)[:40]).decode()
    (sig,) = signature_lines(BODY, f"{prefix} {short}\n")
    with pytest.raises(MalformedError):
        verify_cosignature(sig, BODY, w.key)


def test_threshold_counts_distinct_given_witnesses_and_ignores_others() -> None:
    a, b, stranger = (Cosigner.generate(f"w.example/{n}") for n in "abc")
    lines = a.cosign(BODY) + a.cosign(BODY) + stranger.cosign(BODY) + b.cosign(BODY, 5)
    found = check_cosignatures(BODY, signature_lines(BODY, lines), [a.key, b.key])
    assert sorted(found.valid) == sorted([a.key.label, b.key.label])
    assert found.invalid == []
    only_a = check_cosignatures(BODY, signature_lines(BODY, a.cosign(BODY)), [a.key, b.key])
    assert list(only_a.valid) == [a.key.label]
    forged = check_cosignatures(BODY, signature_lines(BODY, _edit(b.cosign(BODY), 20)), [b.key])
    assert forged.valid == {} and len(forged.invalid) == 1
