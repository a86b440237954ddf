"""verify.checkpoint: C2SP tlog-checkpoint bodies, strict parsing, and opening signed ones."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verify.checkpoint import Checkpoint, format_checkpoint, open_checkpoint, parse_checkpoint
from verify.errors import MalformedError, SignatureError, WrongKeyError
from verify.merkle import EMPTY_ROOT
from verify.note import Signer, sign_note

ORIGIN = "example.org/log"
ROOT = bytes(range(32))


@pytest.fixture
def signer() -> Signer:
    return Signer(ORIGIN, b"\x07" * 32)


def test_spec_example_body_parses() -> None:
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    cp = parse_checkpoint(text)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root_hash.hex().startswith("0ac5186a")
    assert cp.extensions == ()
    assert format_checkpoint(cp) == text


def test_format_is_exact() -> None:
    cp = Checkpoint(ORIGIN, 0, EMPTY_ROOT, ("ext one", "ext2"))
    assert format_checkpoint(cp) == (
        "example.org/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\next2\n"
    )


@given(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FFF), min_size=1),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1)),
)
def test_checkpoint_round_trip(origin: str, size: int, root: bytes, ext: list[str]) -> None:
    cp = Checkpoint(origin, size, root, tuple(ext))
    assert parse_checkpoint(format_checkpoint(cp)) == cp


GOOD = f"{ORIGIN}\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (GOOD.replace("\n7\n", "\n07\n"), "leading zeros"),
        (GOOD.replace("\n7\n", "\n+7\n"), "leading zeros"),
        (GOOD.replace("\n7\n", "\n 7\n"), "leading zeros"),
        (GOOD.replace("\n7\n", "\n7 \n"), "leading zeros"),
        (GOOD.replace("\n7\n", "\n-7\n"), "leading zeros"),
        (GOOD.replace("\n7\n", "\n1_000\n"), "leading zeros"),
        (GOOD.replace("\n7\n", "\n\u0667\n"), "leading zeros"),  # Arabic-Indic seven
        (GOOD.replace("\n7\n", "\n18446744073709551616\n"), "exceeds"),
        (GOOD.replace("\n7\n", "\n\n"), "line 2 is empty"),
        (GOOD.replace("Hh8=", "Hh8"), "base64"),
        (GOOD.replace("Hh8=", "Hh9="), "non-canonical"),
        (GOOD.replace("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "AAEC"), "3 bytes"),
        (
            GOOD.replace(
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",
            ),
            "33 bytes",
        ),
        (GOOD[:-1], "newline"),
        (GOOD + "\n", "line 4 is empty"),
        (GOOD + "ext\n\n", "line 5 is empty"),
        ("\n" + GOOD.split("\n", 1)[1], "line 1 is empty"),
        (f"{ORIGIN}\n7\n", "want at least 3"),
        (GOOD.replace("\n", "\r\n"), "control character"),
        (GOOD.replace(ORIGIN, ORIGIN + "\t"), "control character"),
    ],
)
def test_non_canonical_checkpoint_is_malformed(text: str, why: str) -> None:
    with pytest.raises(MalformedError, match=why):
        parse_checkpoint(text)


def test_format_rejects_unrepresentable_values() -> None:
    with pytest.raises(ValueError, match="root hash"):
        format_checkpoint(Checkpoint(ORIGIN, 1, b"short"))
    with pytest.raises(ValueError, match="origin"):
        format_checkpoint(Checkpoint("a\nb", 1, ROOT))
    with pytest.raises(ValueError, match="size"):
        format_checkpoint(Checkpoint(ORIGIN, -1, ROOT))
    with pytest.raises(ValueError, match="extension"):
        format_checkpoint(Checkpoint(ORIGIN, 1, ROOT, ("",)))


def test_open_checkpoint_returns_verified_checkpoint(signer: Signer) -> None:
    cp = Checkpoint(ORIGIN, 12, ROOT)
    note = sign_note(format_checkpoint(cp), signer)
    assert open_checkpoint(note, signer.verifier) == cp
    assert open_checkpoint(note.encode(), signer.verifier) == cp


def test_checkpoint_for_other_origin_is_wrong_key(signer: Signer) -> None:
    note = sign_note(format_checkpoint(Checkpoint("example.org/other-log", 12, ROOT)), signer)
    with pytest.raises(WrongKeyError, match="origin"):
        open_checkpoint(note, signer.verifier)


def test_checkpoint_signed_by_other_key_is_wrong_key(signer: Signer) -> None:
    impostor = Signer.generate(ORIGIN)
    note = sign_note(format_checkpoint(Checkpoint(ORIGIN, 12, ROOT)), impostor)
    with pytest.raises(WrongKeyError):
        open_checkpoint(note, signer.verifier)


def test_rolled_back_checkpoint_size_fails_signature(signer: Signer) -> None:
    note = sign_note(format_checkpoint(Checkpoint(ORIGIN, 12, ROOT)), signer)
    with pytest.raises(SignatureError):
        open_checkpoint(note.replace("\n12\n", "\n11\n"), signer.verifier)


def test_signed_but_malformed_body_is_malformed(signer: Signer) -> None:
    note = sign_note(f"{ORIGIN}\n012\nAAAA\n", signer)
    with pytest.raises(MalformedError):
        open_checkpoint(note, signer.verifier)
