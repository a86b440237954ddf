"""RFC 3161 time-stamps of checkpoints: request, parse and verify, offline.

What is time-stamped: the **message imprint** of a checkpoint is SHA-256 of the checkpoint
note's *body*, the signed text of the note exactly as the log signs it (origin line, decimal
size line, base64 root hash line and any extension lines, each ending in ``\\n``), without the
blank line and the signature lines after it. :func:`checkpoint_imprint` computes it.

A stored or packaged time-stamp is the TSA's whole ``TimeStampResp`` (DER, the body of an
``application/timestamp-reply``; ``timestamp.tsr`` in a package). :func:`parse_timestamp` also
accepts a bare ``TimeStampToken`` (a CMS ``ContentInfo``).

Guarantees of :func:`verify_timestamp`, in this order, each failure its own exception:

* the bytes parse as DER of exactly these structures (TimeStampResp with status granted,
  ContentInfo of SignedData, exactly one SignerInfo, encapsulated TSTInfo), else
  :class:`MalformedError`;
* the TSTInfo's message imprint is SHA-256 of the checkpoint body given, else
  :class:`ImprintMismatch` (a token for another checkpoint);
* the signed attributes carry content type id-ct-TSTInfo, a messageDigest equal to the
  digest of the TSTInfo, and an ESS signing-certificate (v1 or v2) naming the signer's
  certificate; the signature over the DER of the signed attributes verifies with that
  certificate's key, else :class:`TimestampSignatureError` (an edited token);
* the signer's certificate chains to one of the CA certificates given, is valid at the
  token's ``genTime`` and has a critical extendedKeyUsage with id-kp-timeStamping, else
  :class:`UntrustedTsa` (a foreign or expired TSA certificate). Chains are built by
  ``cryptography.x509.verification`` (cryptography >= 45).

Only the standard library and ``cryptography``: this runs in the single-file verifier.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from verify.asn1 import (
    BOOLEAN,
    INTEGER,
    NULL,
    OCTET_STRING,
    SEQUENCE,
    SET,
    Node,
    context,
    der_int,
    der_oid,
    parse,
    tlv,
)
from verify.errors import MalformedError, SignatureError, VerificationError, WrongKeyError
from verify.note import parse_note

__all__ = [
    "ImprintMismatch",
    "TimeStamp",
    "TimestampSignatureError",
    "UntrustedTsa",
    "checkpoint_imprint",
    "load_tsa_certs",
    "parse_timestamp",
    "timestamp_request",
    "tsa_name",
    "verify_timestamp",
]

SIGNED_DATA = "1.2.840.113549.1.7.2"
TST_INFO = "1.2.840.113549.1.9.16.1.4"
ATTR_CONTENT_TYPE = "1.2.840.113549.1.9.3"
ATTR_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
ATTR_SIGNING_CERT = "1.2.840.113549.1.9.16.2.12"
ATTR_SIGNING_CERT_V2 = "1.2.840.113549.1.9.16.2.47"
SHA256_OID = "2.16.840.1.101.3.4.2.1"
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "1.3.14.3.2.26": hashes.SHA1,
    "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
}
_RSA = {"1.2.840.113549.1.1.1", "1.2.840.113549.1.1.5"} | {
    f"1.2.840.113549.1.1.{n}" for n in (11, 12, 13)
}
_ECDSA = {"1.2.840.10045.4.1"} | {f"1.2.840.10045.4.3.{n}" for n in (2, 3, 4)}
_ED25519 = "1.3.101.112"
MAX_TOKEN_BYTES = 1 << 20


class ImprintMismatch(VerificationError):
    """The token time-stamps something else than this checkpoint."""


class TimestampSignatureError(SignatureError):
    """The token's CMS signature or signed digest does not verify: it was altered."""


class UntrustedTsa(WrongKeyError):
    """The token's signer is not a valid time-stamping certificate under the TSA CA given."""


@dataclass(frozen=True)
class TimeStamp:
    """A parsed time-stamp token; nothing in it is trusted until :func:`verify_timestamp`."""

    gen_time: dt.datetime
    serial: int
    policy: str
    hash_oid: str
    imprint: bytes
    nonce: int | None
    accuracy: str | None
    certs: tuple[x509.Certificate, ...]
    signer_id: Node
    digest_oid: str
    signed_attrs: Node
    signature_oid: str
    signature: bytes
    content: bytes  # the DER TSTInfo, as signed

    def signer(self, extra: tuple[x509.Certificate, ...] = ()) -> x509.Certificate:
        """The certificate (in the token, else among ``extra``) that the SignerInfo names."""
        for cert in (*self.certs, *extra):
            if _names(self.signer_id, cert):
                return cert
        raise UntrustedTsa(
            "the token's signer certificate is neither in the token nor in the TSA CA file"
        )


def checkpoint_imprint(note: str | bytes) -> bytes:
    """SHA-256 of the body (signed text) of a checkpoint note; see the module docstring."""
    return hashlib.sha256(parse_note(note).text.encode("utf-8")).digest()


def timestamp_request(imprint: bytes, nonce: int) -> bytes:
    """A DER TimeStampReq (v1) for a SHA-256 ``imprint``, asking for the signer's certificate."""
    if len(imprint) != 32:
        raise ValueError("a SHA-256 imprint is 32 bytes")
    algorithm = tlv(SEQUENCE, der_oid(SHA256_OID) + tlv(NULL, b""))
    message = tlv(SEQUENCE, algorithm + tlv(OCTET_STRING, imprint))
    return tlv(SEQUENCE, der_int(1) + message + der_int(nonce) + tlv(BOOLEAN, b"\xff"))


def load_tsa_certs(pem: bytes) -> tuple[x509.Certificate, ...]:
    """The certificates of a PEM file (the TSA's CA, and optionally intermediates)."""
    try:
        certs = tuple(x509.load_pem_x509_certificates(pem))
    except ValueError as exc:
        raise MalformedError(f"not a PEM file of certificates: {exc}") from exc
    return certs


def parse_timestamp(data: bytes) -> TimeStamp:
    """Parse a TimeStampResp (status granted) or a bare TimeStampToken; MalformedError if not."""
    try:
        return _parse(data)
    except (IndexError, ValueError, TypeError) as exc:  # a field missing or of the wrong shape
        raise MalformedError(f"time-stamp: unexpected structure: {exc}") from exc


def _parse(data: bytes) -> TimeStamp:
    if len(data) > MAX_TOKEN_BYTES:
        raise MalformedError(f"time-stamp is {len(data)} bytes, at most {MAX_TOKEN_BYTES}")
    top = parse(data, "time-stamp").seq("TimeStampResp")
    if top and top[0].tag == SEQUENCE:  # a TimeStampResp: status, then the token
        status = top[0].seq("PKIStatusInfo")
        code = status[0].integer("PKIStatus") if status else -1
        if code not in (0, 1):
            raise MalformedError(f"the TSA did not grant a time-stamp (PKIStatus {code})")
        if len(top) != 2:
            raise MalformedError("TimeStampResp carries no token")
        info = top[1].seq("TimeStampToken")
    else:
        info = top
    if len(info) != 2 or info[0].oid("contentType") != SIGNED_DATA:
        raise MalformedError("the token is not a CMS ContentInfo of SignedData")
    (signed_data,) = info[1].seq("ContentInfo content", context(0))
    return _signed_data(signed_data.seq("SignedData"))


def _signed_data(sd: list[Node]) -> TimeStamp:
    if len(sd) < 4:
        raise MalformedError("SignedData has too few fields")
    encap = sd[2].seq("encapContentInfo")
    if len(encap) != 2 or encap[0].oid("eContentType") != TST_INFO:
        raise MalformedError("the signed content is not a TSTInfo")
    (wrapped,) = encap[1].seq("eContent", context(0))
    content = wrapped.octets("eContent")
    certs: list[x509.Certificate] = []
    rest = sd[3:]
    if rest[0].tag == context(0):
        for c in rest.pop(0).children():
            if c.tag == SEQUENCE:
                try:
                    certs.append(x509.load_der_x509_certificate(c.raw))
                except (ValueError, x509.InvalidVersion) as exc:
                    raise MalformedError(f"a certificate in the token: {exc}") from exc
    if rest and rest[0].tag == context(1):
        rest.pop(0)  # CRLs: not used
    if len(rest) != 1:
        raise MalformedError("SignedData: unexpected fields before signerInfos")
    signers = rest[0].seq("signerInfos", SET)
    if len(signers) != 1:
        raise MalformedError(f"the token has {len(signers)} signers, want exactly 1")
    si = signers[0].seq("SignerInfo")
    if len(si) < 5 or si[3].tag != context(0):
        raise MalformedError("SignerInfo without signed attributes")
    tst = _tst_info(parse(content, "TSTInfo").seq("TSTInfo"))
    return TimeStamp(
        **tst,
        certs=tuple(certs),
        signer_id=si[1],
        digest_oid=si[2].seq("digestAlgorithm")[0].oid("digestAlgorithm"),
        signed_attrs=si[3],
        signature_oid=si[4].seq("signatureAlgorithm")[0].oid("signatureAlgorithm"),
        signature=si[5].octets("signature") if len(si) > 5 else b"",
        content=content,
    )


def _tst_info(t: list[Node]) -> dict[str, Any]:
    if len(t) < 5 or t[0].integer("TSTInfo version") != 1:
        raise MalformedError("TSTInfo: not version 1 or too few fields")
    imprint = t[2].seq("messageImprint")
    if len(imprint) != 2:
        raise MalformedError("messageImprint: want hashAlgorithm and hashedMessage")
    out: dict[str, Any] = {
        "policy": t[1].oid("policy"),
        "hash_oid": imprint[0].seq("hashAlgorithm")[0].oid("hashAlgorithm"),
        "imprint": imprint[1].octets("hashedMessage"),
        "serial": t[3].integer("serialNumber"),
        "gen_time": t[4].generalized_time("genTime"),
        "nonce": None,
        "accuracy": None,
    }
    for node in t[5:]:
        if node.tag == SEQUENCE:
            out["accuracy"] = _accuracy(node)
        elif node.tag == INTEGER:
            out["nonce"] = node.integer("nonce")
    return out


def _accuracy(node: Node) -> str:
    seconds, millis, micros = 0, 0, 0
    for part in node.children():
        if part.tag == INTEGER:
            seconds = part.integer("accuracy seconds")
        elif part.tag in (context(0, False), context(1, False)):
            v = int.from_bytes(part.value, "big")
            millis, micros = (v, micros) if part.tag == context(0, False) else (millis, v)
    return f"±{seconds + millis / 1e3 + micros / 1e6:g} s"


def _names(sid: Node, cert: x509.Certificate) -> bool:
    """Whether SignerIdentifier ``sid`` names ``cert`` (issuer and serial, or key id)."""
    if sid.tag == SEQUENCE:
        issuer, serial = sid.children()
        return (
            issuer.raw == cert.issuer.public_bytes()
            and serial.integer("serialNumber") == cert.serial_number
        )
    if sid.tag == context(0, False):
        try:
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            return False
        return ski.value.digest == sid.value
    return False


def _hash(oid: str, what: str) -> hashes.HashAlgorithm:
    if oid not in _HASHES:
        raise MalformedError(f"{what}: unsupported hash algorithm {oid}")
    return _HASHES[oid]()


def _digest(oid: str, data: bytes, what: str) -> bytes:
    h = hashes.Hash(_hash(oid, what))
    h.update(data)
    return h.finalize()


def _attributes(ts: TimeStamp) -> dict[str, Node]:
    out: dict[str, Node] = {}
    for attr in ts.signed_attrs.children():
        kind, values = attr.seq("Attribute")
        oid = kind.oid("attribute type")
        vals = values.seq(f"attribute {oid} values", SET)
        if oid in out or len(vals) != 1:
            raise MalformedError(f"signed attribute {oid} repeated or not single-valued")
        out[oid] = vals[0]
    return out


def _check_signature(ts: TimeStamp, cert: x509.Certificate) -> None:
    """The CMS checks (see the module docstring) for signer certificate ``cert``."""
    attrs = _attributes(ts)
    if ATTR_CONTENT_TYPE not in attrs or attrs[ATTR_CONTENT_TYPE].oid("content type") != TST_INFO:
        raise TimestampSignatureError("the signed content-type attribute is not id-ct-TSTInfo")
    if ATTR_MESSAGE_DIGEST not in attrs:
        raise TimestampSignatureError("the token has no signed messageDigest attribute")
    digest = _digest(ts.digest_oid, ts.content, "digestAlgorithm")
    if attrs[ATTR_MESSAGE_DIGEST].octets("messageDigest") != digest:
        raise TimestampSignatureError(
            "the TSTInfo (time, imprint, serial) was altered: its digest is not the signed "
            "messageDigest"
        )
    _check_ess(attrs, cert)
    signed = bytes([SET]) + ts.signed_attrs.raw[1:]  # signed as SET OF, stored as [0] IMPLICIT
    key = cert.public_key()
    algo = _hash(ts.digest_oid, "digestAlgorithm")
    try:
        if isinstance(key, rsa.RSAPublicKey) and ts.signature_oid in _RSA:
            key.verify(ts.signature, signed, padding.PKCS1v15(), algo)
        elif isinstance(key, ec.EllipticCurvePublicKey) and ts.signature_oid in _ECDSA:
            key.verify(ts.signature, signed, ec.ECDSA(algo))
        elif isinstance(key, ed25519.Ed25519PublicKey) and ts.signature_oid == _ED25519:
            key.verify(ts.signature, signed)
        else:
            raise MalformedError(
                f"unsupported signature algorithm {ts.signature_oid} for a "
                f"{type(key).__name__.removeprefix('_')} key"
            )
    except InvalidSignature as exc:
        raise TimestampSignatureError(
            "the TSA's signature over the signed attributes does not verify: the token was "
            "altered or signed by another key"
        ) from exc
    except UnsupportedAlgorithm as exc:
        raise MalformedError(f"unsupported signature: {exc}") from exc


def _check_ess(attrs: dict[str, Node], cert: x509.Certificate) -> None:
    der = cert.public_bytes(Encoding.DER)
    if ATTR_SIGNING_CERT_V2 in attrs:
        first = attrs[ATTR_SIGNING_CERT_V2].seq("SigningCertificateV2")[0].seq("certs")[0]
        parts = first.seq("ESSCertIDv2")
        oid = SHA256_OID
        if parts and parts[0].tag == SEQUENCE:
            oid = parts.pop(0).seq("hashAlgorithm")[0].oid("hashAlgorithm")
        want = parts[0].octets("certHash")
        got = _digest(oid, der, "ESSCertIDv2 hashAlgorithm")
    elif ATTR_SIGNING_CERT in attrs:
        first = attrs[ATTR_SIGNING_CERT].seq("SigningCertificate")[0].seq("certs")[0]
        want = first.seq("ESSCertID")[0].octets("certHash")
        got = hashlib.sha1(der, usedforsecurity=False).digest()
    else:
        raise TimestampSignatureError("the token has no signed ESS signing-certificate attribute")
    if want != got:
        raise TimestampSignatureError(
            "the signed ESS signing-certificate attribute names another certificate than the "
            "one the signer identifier points at"
        )


def _check_chain(ts: TimeStamp, cert: x509.Certificate, cas: tuple[x509.Certificate, ...]) -> None:
    try:
        from cryptography.x509.verification import (
            Criticality,
            ExtensionPolicy,
            PolicyBuilder,
            Store,
        )
        from cryptography.x509.verification import VerificationError as ChainError
    except ImportError as exc:  # pragma: no cover - cryptography < 45
        raise MalformedError(f"checking a TSA chain needs cryptography >= 45: {exc}") from exc
    subject = cert.subject.rfc4514_string()
    if not cert.not_valid_before_utc <= ts.gen_time <= cert.not_valid_after_utc:
        raise UntrustedTsa(
            f"the TSA certificate {subject!r} is valid from {cert.not_valid_before_utc} to "
            f"{cert.not_valid_after_utc}, not at the token's time {ts.gen_time} (expired)"
        )

    def time_stamping(policy: Any, c: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
        if eku is None or list(eku) != [ExtendedKeyUsageOID.TIME_STAMPING]:
            raise ValueError("extendedKeyUsage must be exactly id-kp-timeStamping (RFC 3161)")

    ee = ExtensionPolicy.permit_all().require_present(
        x509.ExtendedKeyUsage, Criticality.CRITICAL, time_stamping
    )
    verifier = (
        PolicyBuilder()
        .store(Store(list(cas)))
        .time(ts.gen_time)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee)
        .build_client_verifier()
    )
    intermediates = [c for c in (*ts.certs, *cas) if c != cert]
    try:
        verifier.verify(cert, intermediates)
    except ChainError as exc:
        raise UntrustedTsa(
            f"the TSA certificate {subject!r} is not a time-stamping certificate issued under "
            f"the TSA CA given, valid at {ts.gen_time}: {exc}"
        ) from exc


def verify_timestamp(
    data: bytes, checkpoint_note: str | bytes, cas: tuple[x509.Certificate, ...]
) -> TimeStamp:
    """Verify the time-stamp ``data`` of ``checkpoint_note`` against the TSA CA certificates
    ``cas``; returns the token (its ``gen_time`` is then attested). See the module docstring."""
    ts = parse_timestamp(data)
    want = checkpoint_imprint(checkpoint_note)
    if ts.hash_oid != SHA256_OID or ts.imprint != want:
        raise ImprintMismatch(
            f"the token time-stamps {ts.imprint.hex()} ({ts.hash_oid}), not this checkpoint: "
            f"SHA-256 of its body is {want.hex()}"
        )
    try:
        cert = ts.signer(cas)
        _check_signature(ts, cert)
        _check_chain(ts, cert, cas)
    except (IndexError, ValueError, TypeError, UnsupportedAlgorithm) as exc:  # hostile certs
        raise MalformedError(f"time-stamp: unexpected content: {exc}") from exc
    return ts


def tsa_name(ts: TimeStamp, cas: tuple[x509.Certificate, ...] = ()) -> str:
    """The signer certificate's subject, for people (not trusted unless verified)."""
    try:
        return ts.signer(cas).subject.rfc4514_string()
    except UntrustedTsa:
        return "(signer certificate not included)"
    except (ValueError, TypeError):
        return "(signer certificate unreadable)"
