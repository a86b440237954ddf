"""verify/sm2.py (pure-Python SM3 and SM2 verification) against the published GM/T vectors,
against OpenSSL's SM2 and against GmSSL (the service's signer), and the service's SM2 key
loading (vault/anchors/sm2.py).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from tests.anchors.sm2_fixtures import (
    DEFAULT_ID,
    HAVE_OPENSSL_SM2,
    Sm2Pki,
    make_sm2_key,
    make_sm2_pki,
    needs_openssl_sm2,
    needs_sm2,
    openssl,
)
from vault.anchors.config import AnchorsConfig
from vault.anchors.sm2 import load_cosigner, parse_private_key
from vault.errors import ConfigError
from verify import sm2
from verify.errors import MalformedError
from verify.note import parse_note

# GM/T 0003.5-2012 Annex A (= GB/T 32918.5-2017 Annex A): signature on the recommended curve.
D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
PX = 0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020
PY = 0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13
K = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
ZA = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3"
E = "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640"
R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
MSG = b"message digest"


def sign_with_k(
    d: int, msg: bytes, k: int, user_id: bytes = sm2.DEFAULT_USER_ID
) -> tuple[int, int]:
    """GM/T 0003.2 §6.1 with a given k: only to reproduce the published example."""
    pub = sm2.scalar_mult_base(d)
    e = int.from_bytes(sm2.sm3(sm2.za(pub, user_id) + msg), "big")
    x1 = sm2.scalar_mult_base(k)[0]
    r = (e + x1) % sm2.N
    s = pow(1 + d, -1, sm2.N) * (k - r * d) % sm2.N
    return r, s


def test_sm3_published_vectors() -> None:
    # GM/T 0004-2012 Annex A.1 and A.2
    assert sm2.sm3(b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )
    assert sm2.sm3(b"abcd" * 16).hex() == (
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )


def test_sm3_agrees_with_openssl_at_every_padding_length() -> None:
    if "sm3" not in hashlib.algorithms_available:
        pytest.skip("this OpenSSL has no SM3")
    for n in (*range(130), 1000, 4096):
        data = os.urandom(n)
        assert sm2.sm3(data) == hashlib.new("sm3", data).digest(), n


def test_gmt_0003_5_signature_example() -> None:
    pub = sm2.scalar_mult_base(D)
    assert pub == (PX, PY)
    assert sm2.za(pub).hex().upper() == ZA
    assert sm2.sm3(sm2.za(pub) + MSG).hex().upper() == E
    assert sign_with_k(D, MSG, K) == (R, S)
    assert sm2.verify(pub, MSG, R, S)


def test_attack_forged_signatures_are_refused() -> None:
    pub = (PX, PY)
    assert not sm2.verify(pub, b"message digesT", R, S)  # another message
    assert not sm2.verify(pub, MSG, R, S, user_id=b"ALICE123@YAHOO.COM")  # another user ID
    assert not sm2.verify(pub, MSG, R ^ 1, S)
    assert not sm2.verify(pub, MSG, R, S ^ 1)
    assert not sm2.verify(pub, MSG, 0, S) and not sm2.verify(pub, MSG, R, sm2.N)
    assert not sm2.verify(pub, MSG, R, (sm2.N - R) % sm2.N)  # t = 0
    other = sm2.scalar_mult_base(D + 1)
    assert not sm2.verify(other, MSG, R, S)


def test_attack_public_key_off_the_curve_is_refused() -> None:
    good = sm2.encode_point((PX, PY))
    with pytest.raises(MalformedError, match="not a point on the SM2 curve"):
        sm2.parse_public_key(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(MalformedError, match="uncompressed"):
        sm2.parse_public_key(b"\x02" + good[1:33])
    assert sm2.parse_public_key(good) == (PX, PY)


def test_signature_der_round_trip_and_strictness() -> None:
    der = sm2.encode_signature(R, S)
    assert sm2.decode_signature(der) == (R, S)
    with pytest.raises(MalformedError):
        sm2.decode_signature(der + b"\x00")
    with pytest.raises(MalformedError):
        sm2.decode_signature(der[:-1])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Sm2Pki:
    if not HAVE_OPENSSL_SM2:
        pytest.skip("openssl without SM2")
    return make_sm2_pki(tmp_path_factory.mktemp("sm2"))


@needs_openssl_sm2
def test_openssl_keys_certificates_and_signatures(pki: Sm2Pki, tmp_path: Path) -> None:
    """Keys and certificates as OpenSSL writes them load; OpenSSL's signatures verify here."""
    pub = sm2.load_public_key(pki.pub.read_bytes())
    assert sm2.load_public_key(pki.cert.read_bytes()) == pub
    d, derived = parse_private_key(pki.key.read_text())
    assert derived == pub and sm2.scalar_mult_base(d) == pub
    der = openssl("pkey", "-pubin", "-in", pki.pub, "-outform", "DER")
    assert sm2.spki_der(pub) == der and sm2.fingerprint(pub) == hashlib.sha256(der).hexdigest()
    msg = tmp_path / "m"
    msg.write_bytes(b"tree size 12\n")
    for uid in (DEFAULT_ID, "bureau-0001"):
        sig = openssl("dgst", "-sm3", "-sign", pki.key, "-sigopt", f"distid:{uid}", msg)
        assert sm2.verify(pub, b"tree size 12\n", *sm2.decode_signature(sig), uid.encode())
        assert not sm2.verify(pub, b"tree size 13\n", *sm2.decode_signature(sig), uid.encode())
    with pytest.raises(MalformedError, match="not an SM2 public key"):
        rsa = tmp_path / "rsa.pem"
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", rsa)
        sm2.load_public_key(openssl("pkey", "-in", rsa, "-pubout"))


@needs_sm2
def test_gmssl_signatures_verify_here_and_with_openssl(pki: Sm2Pki, tmp_path: Path) -> None:
    """The service's cosignature verifies with verify/sm2.py and with OpenSSL."""
    cosigner = load_cosigner(
        AnchorsConfig(sm2_key=str(pki.key)), pki.key, pki.cert, "t.example/log"
    )
    assert cosigner.name == "t.example/log/sm2"
    assert (
        cosigner.key_id
        == hashlib.sha256(
            b"t.example/log/sm2\n\xffsm2-with-sm3" + sm2.encode_point(cosigner.public)
        ).digest()[:4]
    )
    note = "t.example/log\n3\nAAAA\n\n— t.example/log ABCDEFGH\n"
    signed = cosigner.cosign(note)
    assert signed.startswith(note)
    line = parse_note(signed).signatures[-1]
    assert (line.name, line.key_id) == (cosigner.name, cosigner.key_id)
    text = parse_note(signed).text.encode()
    assert sm2.verify(cosigner.public, text, *sm2.decode_signature(line.signature))
    (tmp_path / "text").write_bytes(text)
    (tmp_path / "sig").write_bytes(line.signature)
    out = openssl(
        "dgst", "-sm3", "-verify", pki.pub, "-sigopt", f"distid:{DEFAULT_ID}",
        "-signature", tmp_path / "sig", tmp_path / "text",
    )  # fmt: skip
    assert b"Verified OK" in out
    assert "PRIVATE" not in repr(cosigner) and str(cosigner._private) not in repr(cosigner)


@needs_sm2
def test_attack_certificate_of_another_key_is_refused_at_start(pki: Sm2Pki, tmp_path: Path) -> None:
    other = make_sm2_key(tmp_path, "impostor")
    cfg = AnchorsConfig(sm2_key=str(pki.key))
    with pytest.raises(ConfigError, match=r"is not the certificate of anchors\.sm2_key"):
        load_cosigner(cfg, pki.key, other.cert, "t.example/log")
    enc = tmp_path / "enc.key"
    openssl("pkey", "-in", pki.key, "-aes256", "-passout", "pass:x", "-out", enc)
    with pytest.raises(ConfigError, match="encrypted"):
        load_cosigner(cfg, enc, None, "t.example/log")
    with pytest.raises(ConfigError, match="cannot read"):
        load_cosigner(cfg, tmp_path / "absent.key", None, "t.example/log")


def test_without_gmssl_the_service_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gmssl_pyx", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"evidence-vault\[sm2\]"):
        load_cosigner(AnchorsConfig(sm2_key="k"), tmp_path / "k", None, "t.example/log")


def _affine_mul(k: int, pt: tuple[int, int]) -> sm2.Point:
    """The textbook double-and-add in affine coordinates: a reference for the fast path."""
    acc: sm2.Point = None
    cur: sm2.Point = pt
    while k:
        if k & 1:
            acc = sm2._add(acc, cur)
        cur = sm2._add(cur, cur)
        k >>= 1
    return acc


def test_jacobian_shamir_agrees_with_affine_reference() -> None:
    import secrets

    g = (sm2.GX, sm2.GY)
    neg_g = (sm2.GX, sm2.P - sm2.GY)
    for _ in range(20):
        a, b = secrets.randbelow(sm2.N), secrets.randbelow(sm2.N)
        q = _affine_mul(secrets.randbelow(sm2.N - 2) + 1, g)
        assert q is not None
        assert sm2._mul_add(a, g, b, q) == sm2._add(_affine_mul(a, g), _affine_mul(b, q))
    assert sm2._mul_add(7, g, 7, neg_g) is None  # 7G - 7G
    assert sm2._mul_add(3, g, sm2.N - 3, g) is None
    assert sm2._mul_add(1, g, 1, g) == _affine_mul(2, g)
