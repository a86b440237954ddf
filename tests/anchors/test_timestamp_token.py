"""verify.timestamp against tokens made by OpenSSL's own TSA (``openssl ts -reply``).

Each attack is refused with its own exception and a message naming the reason; OpenSSL's
verifier agrees on what is hashed (SHA-256 of the checkpoint note's body).
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.anchors.tsa_fixtures import (
    OPENSSL,
    OpenSslTsa,
    Pki,
    make_pki,
    needs_openssl,
    openssl_query,
)
from verify import asn1
from verify.checkpoint import Checkpoint, format_checkpoint
from verify.errors import MalformedError
from verify.note import Signer, parse_note, sign_note
from verify.timestamp import (
    ImprintMismatch,
    TimeStamp,
    TimestampSignatureError,
    UntrustedTsa,
    checkpoint_imprint,
    load_tsa_certs,
    parse_timestamp,
    timestamp_request,
    tsa_name,
    verify_timestamp,
)

pytestmark = needs_openssl
SIGNER = Signer.generate("evault.test/log")


def note(size: int) -> str:
    return sign_note(
        format_checkpoint(Checkpoint("evault.test/log", size, bytes([size]) * 32)), SIGNER
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tsa(pki: Pki) -> Iterator[OpenSslTsa]:
    t = OpenSslTsa(pki)
    yield t
    t.close()


def stamp(tsa: OpenSslTsa, text: str, nonce: int = 42) -> bytes:
    return tsa.reply(timestamp_request(checkpoint_imprint(text), nonce))


def cas(pki: Pki) -> tuple:  # type: ignore[type-arg]
    return load_tsa_certs(pki.ca_file.read_bytes())


def test_openssl_token_verifies_and_attests_its_time(tsa: OpenSslTsa, pki: Pki) -> None:
    cp = note(5)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ts = verify_timestamp(stamp(tsa, cp, 4711), cp, cas(pki))
    after = dt.datetime.now(dt.UTC)
    assert before <= ts.gen_time <= after
    assert ts.nonce == 4711 and ts.policy == "1.3.6.1.4.1.99999.1"
    assert ts.imprint == checkpoint_imprint(cp) and ts.accuracy == "±1.5 s"
    assert tsa_name(ts) == "CN=Test TSA,O=Test Bureau,C=CN"


def test_imprint_is_sha256_of_the_note_body_as_openssl_checks_it(
    tsa: OpenSslTsa, pki: Pki, tmp_path: Path
) -> None:
    cp = note(9)
    body = tmp_path / "body"
    body.write_bytes(parse_note(cp).text.encode())  # origin, size, root lines; no signatures
    reply = tmp_path / "t.tsr"
    reply.write_bytes(stamp(tsa, cp))
    out = subprocess.run(
        [str(OPENSSL), "ts", "-verify", "-data", str(body), "-in", str(reply),
         "-CAfile", str(pki.ca_file)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0 and "Verification: OK" in out.stdout, out.stdout + out.stderr
    body.write_bytes(cp.encode())  # the whole note (with its signature) is NOT what is stamped
    out = subprocess.run(
        [str(OPENSSL), "ts", "-verify", "-data", str(body), "-in", str(reply),
         "-CAfile", str(pki.ca_file)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode != 0


def test_openssl_requests_parse_too(tsa: OpenSslTsa, tmp_path: Path) -> None:
    ts = parse_timestamp(tsa.reply(openssl_query(b"hello", tmp_path)))
    assert ts.nonce is not None and len(ts.imprint) == 32


def test_attack_token_for_another_checkpoint_is_refused(tsa: OpenSslTsa, pki: Pki) -> None:
    token = stamp(tsa, note(5))
    with pytest.raises(ImprintMismatch, match="not this checkpoint"):
        verify_timestamp(token, note(6), cas(pki))


def test_attack_edited_time_is_refused(tsa: OpenSslTsa, pki: Pki) -> None:
    cp = note(5)
    token = stamp(tsa, cp)
    ts = parse_timestamp(token)
    old = ts.gen_time.strftime("%Y%m%d%H%M%S").encode()
    earlier = (ts.gen_time - dt.timedelta(days=365)).strftime("%Y%m%d%H%M%S").encode()
    assert token.count(old) == 1
    edited = token.replace(old, earlier)
    assert parse_timestamp(edited).gen_time < ts.gen_time  # it parses: only the CMS check sees it
    with pytest.raises(TimestampSignatureError, match=r"TSTInfo .* was altered"):
        verify_timestamp(edited, cp, cas(pki))


def test_attack_edited_signature_is_refused(tsa: OpenSslTsa, pki: Pki) -> None:
    cp = note(5)
    token = bytearray(stamp(tsa, cp))
    sig = parse_timestamp(bytes(token)).signature
    at = bytes(token).index(sig)
    token[at + 10] ^= 1
    with pytest.raises(TimestampSignatureError, match=r"signature .* does not verify"):
        verify_timestamp(bytes(token), cp, cas(pki))


def test_attack_foreign_tsa_is_refused(tsa: OpenSslTsa, tmp_path: Path) -> None:
    cp = note(5)
    other = make_pki(tmp_path / "other", name="Other TSA")
    with pytest.raises(UntrustedTsa, match="not a time-stamping certificate issued under"):
        verify_timestamp(stamp(tsa, cp), cp, cas(other))


def test_attack_expired_tsa_certificate_is_refused(tmp_path: Path) -> None:
    cp = note(5)
    expired = make_pki(tmp_path / "expired", expired=True)
    t = OpenSslTsa(expired)  # OpenSSL still signs with it: the verifier must refuse
    try:
        token = stamp(t, cp)
    finally:
        t.close()
    with pytest.raises(UntrustedTsa, match=r"expired"):
        verify_timestamp(token, cp, cas(expired))


def test_ec_key_and_ess_v1_certificate_id_verify(tmp_path: Path) -> None:
    cp = note(7)
    ec = make_pki(tmp_path / "ec", rsa_key=False)
    t = OpenSslTsa(ec, ess="sha1")  # signingCertificate (v1, SHA-1 cert hash), ECDSA signature
    try:
        ts = verify_timestamp(stamp(t, cp), cp, cas(ec))
    finally:
        t.close()
    assert ts.signature_oid.startswith("1.2.840.10045.4.3")


@pytest.mark.parametrize(
    "data",
    [b"", b"\x30", b"\x30\x81\x01\x00", b"\x30\x00\x00", b"\x30\x80\x00\x00", b"\x1f\x00"],
)
def test_malformed_der_is_refused(data: bytes) -> None:
    with pytest.raises(MalformedError):
        parse_timestamp(data)


def test_der_round_trip_and_strictness() -> None:
    for v in (0, 1, 127, 128, 255, 256, -1, -129, 2**63):
        assert asn1.parse(asn1.der_int(v)).integer("n") == v
    assert (
        asn1.parse(asn1.der_oid("1.2.840.113549.1.9.16.1.4")).oid("o")
        == "1.2.840.113549.1.9.16.1.4"
    )
    with pytest.raises(MalformedError):
        asn1.parse(b"\x02\x02\x00\x01").integer("n")  # not minimal
    long = asn1.tlv(asn1.OCTET_STRING, b"x" * 300)
    assert asn1.parse(long).octets("o") == b"x" * 300


def test_hostile_tokens_raise_only_verification_errors(tsa: OpenSslTsa, pki: Pki) -> None:
    """Truncated, bit-flipped and spliced tokens: a verdict (a VerificationError), never a
    crash of the verifier."""
    import random

    from verify.errors import VerificationError

    cp = note(5)
    token = stamp(tsa, cp)
    trusted = cas(pki)
    rng = random.Random(3163)
    variants = [token[:n] for n in range(0, len(token), 7)]
    for _ in range(400):
        b = bytearray(token)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        variants.append(bytes(b))
    for _ in range(100):
        a, c = sorted(rng.sample(range(len(token)), 2))
        variants.append(token[:a] + token[c:])
    ref = verify_timestamp(token, cp, trusted)
    outcomes: dict[str, int] = {}
    for v in variants:
        try:
            ts = verify_timestamp(v, cp, trusted)
            kind = "ok"  # possible for edits of unsigned framing only: nothing attested changed
            assert (ts.gen_time, ts.serial, ts.content) == (ref.gen_time, ref.serial, ref.content)
        except VerificationError as exc:
            kind = type(exc).__name__
        outcomes[kind] = outcomes.get(kind, 0) + 1
    assert outcomes.get("ok", 0) < len(variants) // 20, outcomes
    assert outcomes["MalformedError"] and outcomes["TimestampSignatureError"], outcomes


def test_attack_no_single_byte_edit_changes_what_is_attested(tsa: OpenSslTsa, pki: Pki) -> None:
    """Every byte of a token set to 0x00, 0xff or flipped: either refused, or (in unsigned
    framing such as the digestAlgorithms set) the attested time, serial, policy, imprint,
    nonce and signer are exactly the original's."""
    from verify.errors import VerificationError

    cp = note(5)
    token = stamp(tsa, cp)
    trusted = cas(pki)
    ref = verify_timestamp(token, cp, trusted)

    def attested(t: TimeStamp) -> tuple[object, ...]:
        return (t.gen_time, t.serial, t.policy, t.imprint, t.nonce, t.content, t.signer(trusted))

    accepted = 0
    for i in range(len(token)):
        for v in {0x00, 0xFF, token[i] ^ 1} - {token[i]}:
            edited = token[:i] + bytes([v]) + token[i + 1 :]
            try:
                ts = verify_timestamp(edited, cp, trusted)
            except VerificationError:
                continue
            accepted += 1
            assert attested(ts) == attested(ref), f"byte {i} set to {v:#x} changed the token"
    assert accepted < len(token) // 10, accepted
