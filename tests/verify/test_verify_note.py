"""verify.note: C2SP signed notes, Ed25519 keys in golang.org/x/mod/sumdb/note formats.
Negative tests are named after the attack or corruption they cover."""

from __future__ import annotations

import base64
import hashlib

import pytest

from verify.errors import MalformedError, SignatureError, WrongKeyError
from verify.note import (
    Note,
    NoteSignature,
    Signer,
    Verifier,
    format_vkey,
    key_id,
    parse_note,
    parse_vkey,
    sign_note,
    verify_note,
)

# The example from the golang.org/x/mod/sumdb/note package documentation.
PN_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PN_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PN_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PN_MSG = (
    PN_TEXT + "\n"
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfq"
    "dngotpRZb6KE6RyyBwJnAM=\n"
)
# The same note re-signed by a second key, also from that documentation.
ENOCH_LINE = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox"
    "33WWd1RvMc+QQ=\n"
)

SEED = bytes(range(32))
TEXT = "example.org/log\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"


@pytest.fixture
def signer() -> Signer:
    return Signer("example.org/log", SEED)


# ---------------------------------------------------------------------------------------------
# Known-good vector
# ---------------------------------------------------------------------------------------------


def test_sumdb_note_peter_neumann_vector() -> None:
    signer = Signer.from_skey(PN_SKEY)
    assert signer.vkey == PN_VKEY
    assert signer.to_skey() == PN_SKEY
    assert signer.key_id.hex() == "c74f20a3"
    assert sign_note(PN_TEXT, signer) == PN_MSG  # Ed25519 is deterministic
    note = verify_note(PN_MSG, parse_vkey(PN_VKEY))
    assert note.text == PN_TEXT
    assert [(s.name, s.key_id.hex()) for s in note.signatures] == [("PeterNeumann", "c74f20a3")]


def test_cosigned_note_verifies_and_unknown_signature_is_ignored() -> None:
    verifier = parse_vkey(PN_VKEY)
    note = verify_note(PN_MSG + ENOCH_LINE, verifier)
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]
    # Order of signature lines does not matter.
    swapped = PN_TEXT + "\n" + ENOCH_LINE + PN_MSG.removeprefix(PN_TEXT + "\n")
    assert verify_note(swapped, verifier).text == PN_TEXT


def test_key_id_is_spec_formula() -> None:
    pub = base64.b64decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")[1:]
    want = hashlib.sha256(b"PeterNeumann\n\x01" + pub).digest()[:4]
    assert key_id("PeterNeumann", pub) == want == bytes.fromhex("c74f20a3")


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------


def test_sign_verify_roundtrip(signer: Signer) -> None:
    msg = sign_note(TEXT, signer)
    assert msg.startswith(TEXT + "\n— example.org/log ")
    assert msg.endswith("\n")
    note = verify_note(msg.encode("utf-8"), signer.verifier)
    assert note == Note(
        TEXT, (NoteSignature(signer.name, signer.key_id, note.signatures[0].signature),)
    )
    assert len(note.signatures[0].signature) == 64


def test_vkey_roundtrip(signer: Signer) -> None:
    v = parse_vkey(signer.vkey)
    assert v == signer.verifier
    assert v.vkey == signer.vkey == format_vkey(signer.name, signer.public_key)
    assert Verifier.from_public_key(signer.name, signer.public_key) == v


def test_skey_roundtrip_and_generate() -> None:
    s = Signer.generate("example.org/other")
    again = Signer.from_skey(s.to_skey())
    assert (again.name, again.public_key, again.key_id) == (s.name, s.public_key, s.key_id)
    assert s.to_skey().startswith("PRIVATE+KEY+example.org/other+")
    assert Signer.generate("x").public_key != Signer.generate("x").public_key


def test_signer_repr_does_not_leak_seed(signer: Signer) -> None:
    assert SEED.hex() not in repr(signer)
    assert base64.b64encode(SEED).decode() not in repr(signer)


def test_vkey_with_wrong_key_id_is_malformed() -> None:
    with pytest.raises(MalformedError, match="does not match"):
        parse_vkey(PN_VKEY.replace("c74f20a3", "c74f20a4"))


def test_vkey_renamed_is_malformed() -> None:
    with pytest.raises(MalformedError, match="does not match"):
        parse_vkey(PN_VKEY.replace("PeterNeumann", "PeterNeuman"))


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+0xc74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW",
        "PeterNeumann+c74f20a3+AhpcMQ==",
    ],
)
def test_malformed_vkey_is_rejected(vkey: str) -> None:
    with pytest.raises(MalformedError):
        parse_vkey(vkey)


def test_vkey_with_unknown_algorithm_is_malformed() -> None:
    raw = b"\x02" + bytes(32)
    kid = hashlib.sha256(b"n\n" + raw).digest()[:4].hex()
    with pytest.raises(MalformedError, match="algorithm 0x02"):
        parse_vkey(f"n+{kid}+{base64.b64encode(raw).decode()}")


def test_skey_with_wrong_key_id_is_malformed() -> None:
    with pytest.raises(MalformedError, match="does not match"):
        Signer.from_skey(PN_SKEY.replace("c74f20a3", "00000000"))


def test_vkey_passed_as_skey_is_malformed() -> None:
    with pytest.raises(MalformedError):
        Signer.from_skey(PN_VKEY)
    with pytest.raises(MalformedError, match="PRIVATE"):
        Signer.from_skey("PUBLIC+KEY+" + PN_SKEY.removeprefix("PRIVATE+KEY+"))


def test_verifier_construction_checks_key_id(signer: Signer) -> None:
    with pytest.raises(ValueError, match="does not match"):
        Verifier(signer.name, b"\x00\x00\x00\x00", signer.public_key)
    with pytest.raises(ValueError, match="invalid key name"):
        Signer("a+b", SEED)


# ---------------------------------------------------------------------------------------------
# Attacks on signatures
# ---------------------------------------------------------------------------------------------


def test_tampered_body_fails_signature(signer: Signer) -> None:
    msg = sign_note(TEXT, signer).replace("\n42\n", "\n43\n")
    with pytest.raises(SignatureError) as err:
        verify_note(msg, signer.verifier)
    assert not isinstance(err.value, WrongKeyError)


def test_signature_by_other_key_is_wrong_key(signer: Signer) -> None:
    other = Signer.generate("example.org/other")
    with pytest.raises(WrongKeyError, match=r"no signature by trusted key example\.org/log"):
        verify_note(sign_note(TEXT, other), signer.verifier)


def test_impostor_key_with_trusted_name_is_wrong_key(signer: Signer) -> None:
    impostor = Signer.generate(signer.name)  # same name, different key id
    with pytest.raises(WrongKeyError):
        verify_note(sign_note(TEXT, impostor), signer.verifier)


def test_trusted_key_id_under_other_name_is_wrong_key(signer: Signer) -> None:
    msg = sign_note(TEXT, signer).replace("— example.org/log ", "— example.org/evil ")
    with pytest.raises(WrongKeyError):
        verify_note(msg, signer.verifier)


def test_forged_signature_with_trusted_name_and_id_is_signature_error(signer: Signer) -> None:
    forged = base64.b64encode(signer.key_id + bytes(64)).decode()
    msg = f"{TEXT}\n— {signer.name} {forged}\n"
    with pytest.raises(SignatureError, match="invalid signature"):
        verify_note(msg, signer.verifier)


def test_truncated_signature_is_signature_error(signer: Signer) -> None:
    sig = signer.key_id + signer.sign(TEXT.encode())[:63]
    msg = f"{TEXT}\n— {signer.name} {base64.b64encode(sig).decode()}\n"
    with pytest.raises(SignatureError):
        verify_note(msg, signer.verifier)


def test_bad_duplicate_signature_by_trusted_key_is_signature_error(signer: Signer) -> None:
    forged = base64.b64encode(signer.key_id + bytes(64)).decode()
    msg = sign_note(TEXT, signer) + f"— {signer.name} {forged}\n"
    with pytest.raises(SignatureError):
        verify_note(msg, signer.verifier)


def test_signature_moved_into_text_is_wrong_key(signer: Signer) -> None:
    # Pushing the real signature line above a new blank line makes it part of the text.
    msg = sign_note(TEXT, signer)
    other = Signer.generate("example.org/other")
    moved = msg + "\n" + sign_note(msg, other).removeprefix(msg + "\n")
    with pytest.raises(WrongKeyError):
        verify_note(moved, signer.verifier)


def test_note_text_may_contain_blank_lines(signer: Signer) -> None:
    text = "first\n\nthird\n"
    assert verify_note(sign_note(text, signer), signer.verifier).text == text


# ---------------------------------------------------------------------------------------------
# Malformed notes
# ---------------------------------------------------------------------------------------------


def test_note_with_extra_blank_line_is_malformed(signer: Signer) -> None:
    with pytest.raises(MalformedError, match="no signature lines"):
        parse_note(sign_note(TEXT, signer) + "\n")


def test_note_without_signatures_is_malformed() -> None:
    with pytest.raises(MalformedError, match="no blank line"):
        parse_note(TEXT)
    with pytest.raises(MalformedError, match="no signature lines"):
        parse_note(TEXT + "\n")


def test_note_without_final_newline_is_malformed(signer: Signer) -> None:
    with pytest.raises(MalformedError, match="does not end with a newline"):
        parse_note(sign_note(TEXT, signer).rstrip("\n"))


def test_note_with_crlf_line_endings_is_malformed(signer: Signer) -> None:
    with pytest.raises(MalformedError, match="U\\+000D"):
        parse_note(sign_note(TEXT, signer).replace("\n", "\r\n"))


def test_note_with_control_character_is_malformed(signer: Signer) -> None:
    msg = sign_note(TEXT, signer)
    with pytest.raises(MalformedError, match="U\\+0000 at line 2 column 2"):
        parse_note(msg.replace("\n42\n", "\n4\x002\n", 1))


def test_note_with_invalid_utf8_is_malformed(signer: Signer) -> None:
    data = sign_note(TEXT, signer).encode("utf-8")
    with pytest.raises(MalformedError, match="UTF-8"):
        parse_note(b"\xff" + data)


def test_note_with_more_than_100_signatures_is_malformed(signer: Signer) -> None:
    msg = sign_note(TEXT, signer)
    line = msg.removeprefix(TEXT + "\n")
    assert len(verify_note(msg + line * 99, signer.verifier).signatures) == 100
    with pytest.raises(MalformedError, match="at most 100"):
        parse_note(msg + line * 100)


def test_signature_line_with_ascii_hyphen_is_malformed(signer: Signer) -> None:
    with pytest.raises(MalformedError, match="does not start with"):
        parse_note(sign_note(TEXT, signer).replace("— ", "- "))


def test_signature_line_without_signature_is_malformed() -> None:
    with pytest.raises(MalformedError, match="no signature after the key name"):
        parse_note(TEXT + "\n— example.org/log\n")


def test_signature_with_noncanonical_base64_is_malformed(signer: Signer) -> None:
    msg = sign_note(TEXT, signer)
    b64 = msg.rstrip("\n").rsplit(" ", 1)[1]
    assert b64.endswith("=")
    # Set the unused low bits of the last significant character.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = b64.rstrip("=")[-1]
    bumped = alphabet[alphabet.index(last) | 1]
    tweaked = b64.rstrip("=")[:-1] + bumped + "=" * (len(b64) - len(b64.rstrip("=")))
    assert base64.b64decode(tweaked) == base64.b64decode(b64)
    with pytest.raises(MalformedError, match="non-canonical base64"):
        parse_note(msg.replace(b64, tweaked))


def test_signature_too_short_for_key_id_is_malformed() -> None:
    with pytest.raises(MalformedError, match="at least 5"):
        parse_note(TEXT + "\n— example.org/log AAAAAA==\n")


def test_signature_with_invalid_key_name_is_malformed() -> None:
    sig = base64.b64encode(bytes(68)).decode()
    with pytest.raises(MalformedError, match="invalid key name"):
        parse_note(f"{TEXT}\n— a+b {sig}\n")
    with pytest.raises(MalformedError, match="invalid key name"):
        parse_note(f"{TEXT}\n— a\u00a0b {sig}\n")


def test_sign_note_rejects_invalid_text(signer: Signer) -> None:
    with pytest.raises(ValueError, match="newline"):
        sign_note("no newline", signer)
    with pytest.raises(ValueError, match="control character"):
        sign_note("tab\there\n", signer)
