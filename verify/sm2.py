"""SM2 signature verification (GM/T 0003.2, SM3 digest GM/T 0004) in pure Python, and SM2 as a
signed-note signature type: the checkpoint's optional SM2 cosignature.

A verifier of evidence need not install any 商用密码 library: SM3, the arithmetic on the SM2
recommended curve (GM/T 0003.5) and the few DER structures (GM/T 0009 signature, SPKI,
certificate) are here, in the standard library. Only *verification* is here, so nothing is
secret and constant time does not matter; the service signs with GmSSL (``vault.anchors.sm2``).

Note signature type (``docs/anchors.md``)::

    — <key name> base64(key ID || DER SEQUENCE { r INTEGER, s INTEGER })
    key ID = SHA-256(key name || 0x0A || 0xFF || "sm2-with-sm3" || 0x04 || x || y)[:4]

``0xFF`` is the signed-note type "without an identifier byte assigned", followed by a longer
identifier as that spec recommends; the signature is over the note text with
``e = SM3(Z_A || text)``, ``Z_A`` built from the signer's user ID (GM/T 0009 default
:data:`DEFAULT_USER_ID` unless the bureau configured another).

Guarantees: :func:`verify` returns True only for a signature that holds under GM/T 0003.2
§7 (r, s in [1, n-1], t = r + s ≠ 0, R = e + x1 = r); a public key is accepted only as a point
on the curve other than infinity (:func:`parse_public_key`); malformed input raises
:class:`~verify.errors.MalformedError`, never another exception.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct

from verify import asn1
from verify.errors import MalformedError

__all__ = [
    "DEFAULT_USER_ID",
    "SM2_NOTE_TYPE",
    "decode_signature",
    "encode_point",
    "encode_signature",
    "fingerprint",
    "key_id",
    "load_public_key",
    "parse_public_key",
    "scalar_mult_base",
    "sm3",
    "spki_der",
    "verify",
    "za",
]

DEFAULT_USER_ID = b"1234567812345678"
SM2_NOTE_TYPE = b"\xffsm2-with-sm3"
OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_SM2 = "1.2.156.10197.1.301"

# GM/T 0003.5 recommended curve y^2 = x^3 + ax + b over F_p.
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = P - 3
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

Point = tuple[int, int] | None  # affine; None is the point at infinity

# ---------------------------------------------------------------------------- SM3 (GM/T 0004)

_IV: tuple[int, ...] = (0x7380166F, 0x4914B2B9, 0x172442D7, 0xDA8A0600)  # fmt: skip
_IV += (0xA96F30BC, 0x163138AA, 0xE38DEE4D, 0xB0FB0E4E)
_M32 = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    n %= 32
    return ((x << n) | (x >> (32 - n))) & _M32


_T = tuple(_rotl(0x79CC4519 if j < 16 else 0x7A879D8A, j) for j in range(64))


def _compress(v: list[int], block: bytes) -> list[int]:
    w = list(struct.unpack(">16I", block))
    for j in range(16, 68):
        x = w[j - 16] ^ w[j - 9] ^ _rotl(w[j - 3], 15)
        w.append(x ^ _rotl(x, 15) ^ _rotl(x, 23) ^ _rotl(w[j - 13], 7) ^ w[j - 6])
    a, b, c, d, e, f, g, h = v
    for j in range(64):
        a12 = _rotl(a, 12)
        ss1 = _rotl((a12 + e + _T[j]) & _M32, 7)
        ss2 = ss1 ^ a12
        if j < 16:
            ff, gg = a ^ b ^ c, e ^ f ^ g
        else:
            ff, gg = (a & b) | (a & c) | (b & c), (e & f) | (~e & g)
        tt1 = (ff + d + ss2 + (w[j] ^ w[j + 4])) & _M32
        tt2 = (gg + h + ss1 + w[j]) & _M32
        a, b, c, d = tt1, a, _rotl(b, 9), c
        e, f, g, h = tt2 ^ _rotl(tt2, 9) ^ _rotl(tt2, 17), e, _rotl(f, 19), g
    return [x ^ y for x, y in zip(v, (a, b, c, d, e, f, g, h), strict=True)]


def sm3(data: bytes) -> bytes:
    """The SM3 digest (GM/T 0004) of ``data``."""
    msg = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack(">Q", len(data) * 8)
    v = list(_IV)
    for i in range(0, len(msg), 64):
        v = _compress(v, msg[i : i + 64])
    return struct.pack(">8I", *v)


# ------------------------------------------------------------------------ the SM2 curve


def _add(p1: Point, p2: Point) -> Point:
    """Affine addition (used once per verification, to precompute G + P)."""
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2:
        if (y1 + y2) % P == 0:
            return None
        lam = (3 * x1 * x1 + A) * pow(2 * y1, -1, P) % P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (lam * lam - x1 - x2) % P
    return x3, (lam * (x1 - x3) - y1) % P


_Jac = tuple[int, int, int]  # Jacobian (X, Y, Z): x = X/Z^2, y = Y/Z^3; Z = 0 is infinity


def _jdouble(pt: _Jac) -> _Jac:
    """Doubling with a = -3 (dbl-2001-b)."""
    x, y, z = pt
    if z == 0 or y == 0:
        return (1, 1, 0)
    delta, gamma = z * z % P, y * y % P
    beta = x * gamma % P
    alpha = 3 * (x - delta) * (x + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y + z) ** 2 - gamma - delta) % P
    return x3, (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P, z3


def _jadd(pt: _Jac, q: tuple[int, int]) -> _Jac:
    """Jacobian + affine (madd-2007-bl)."""
    x1, y1, z1 = pt
    if z1 == 0:
        return q[0], q[1], 1
    z1z1 = z1 * z1 % P
    h = (q[0] * z1z1 - x1) % P
    r = 2 * (q[1] * z1 * z1z1 - y1) % P
    if h == 0:
        return _jdouble(pt) if r == 0 else (1, 1, 0)
    hh = h * h % P
    i = 4 * hh % P
    j, v = h * i % P, x1 * i % P
    x3 = (r * r - j - 2 * v) % P
    return x3, (r * (v - x3) - 2 * y1 * j) % P, ((z1 + h) ** 2 - z1z1 - hh) % P


def _mul_add(k1: int, p1: tuple[int, int], k2: int, p2: tuple[int, int]) -> Point:
    """``k1·p1 + k2·p2`` (Shamir's trick, Jacobian coordinates), affine."""
    both = _add(p1, p2)
    acc: _Jac = (1, 1, 0)
    for bit in range(max(k1.bit_length(), k2.bit_length()) - 1, -1, -1):
        acc = _jdouble(acc)
        b1, b2 = (k1 >> bit) & 1, (k2 >> bit) & 1
        if b1 and b2:
            acc = _jadd(acc, both) if both is not None else acc
        elif b1:
            acc = _jadd(acc, p1)
        elif b2:
            acc = _jadd(acc, p2)
    x, y, z = acc
    if z == 0:
        return None
    zi = pow(z, -1, P)
    zi2 = zi * zi % P
    return x * zi2 % P, y * zi2 * zi % P


def scalar_mult_base(d: int) -> tuple[int, int]:
    """``d·G``, the public point of private key ``d`` (not constant time: for keys at rest)."""
    if not 1 <= d < N - 1:
        raise MalformedError("SM2 private key out of range [1, n-2]")
    pt = _mul_add(d, (GX, GY), 0, (GX, GY))
    assert pt is not None
    return pt


def _on_curve(x: int, y: int) -> bool:
    return 0 <= x < P and 0 <= y < P and (y * y - x * x * x - A * x - B) % P == 0


def encode_point(pt: tuple[int, int]) -> bytes:
    """The 65-byte uncompressed encoding ``0x04 || x || y``."""
    return b"\x04" + pt[0].to_bytes(32, "big") + pt[1].to_bytes(32, "big")


def parse_public_key(raw: bytes) -> tuple[int, int]:
    """A 65-byte uncompressed point (``0x04 || x || y``) on the curve."""
    if len(raw) != 65 or raw[0] != 4:
        raise MalformedError("SM2 public key is not an uncompressed point (0x04 || x || y)")
    x, y = int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:], "big")
    if not _on_curve(x, y):
        raise MalformedError("SM2 public key is not a point on the SM2 curve")
    return x, y


def za(pub: tuple[int, int], user_id: bytes = DEFAULT_USER_ID) -> bytes:
    """``Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A)`` (GM/T 0003.2 §5.5)."""
    if len(user_id) * 8 > 0xFFFF:
        raise MalformedError("SM2 user ID longer than 8191 bytes")
    parts = (A, B, GX, GY, pub[0], pub[1])
    data = struct.pack(">H", len(user_id) * 8) + user_id
    return sm3(data + b"".join(v.to_bytes(32, "big") for v in parts))


def verify(
    pub: tuple[int, int], msg: bytes, r: int, s: int, user_id: bytes = DEFAULT_USER_ID
) -> bool:
    """True iff (r, s) is a valid SM2 signature of ``msg`` by ``pub`` (GM/T 0003.2 §7.1)."""
    if not (1 <= r < N and 1 <= s < N):
        return False
    e = int.from_bytes(sm3(za(pub, user_id) + msg), "big")
    t = (r + s) % N
    if t == 0:
        return False
    pt = _mul_add(s, (GX, GY), t, pub)
    return pt is not None and (e + pt[0]) % N == r


# ------------------------------------------------------------------------------ encodings


def encode_signature(r: int, s: int) -> bytes:
    """GM/T 0009 DER ``SEQUENCE { r INTEGER, s INTEGER }``."""
    return asn1.tlv(asn1.SEQUENCE, asn1.der_int(r) + asn1.der_int(s))


def decode_signature(der: bytes) -> tuple[int, int]:
    """(r, s) from the DER ``SEQUENCE { r INTEGER, s INTEGER }``."""
    seq = asn1.parse(der, "SM2 signature").seq("SM2 signature")
    if len(seq) != 2:
        raise MalformedError("SM2 signature: want SEQUENCE of two INTEGERs")
    return seq[0].integer("SM2 signature r"), seq[1].integer("SM2 signature s")


def spki_der(pub: tuple[int, int]) -> bytes:
    """The DER SubjectPublicKeyInfo of ``pub`` (what ``openssl pkey -pubout`` writes)."""
    alg = asn1.tlv(asn1.SEQUENCE, asn1.der_oid(OID_EC_PUBLIC_KEY) + asn1.der_oid(OID_SM2))
    return asn1.tlv(asn1.SEQUENCE, alg + asn1.tlv(asn1.BIT_STRING, b"\x00" + encode_point(pub)))


def fingerprint(pub: tuple[int, int]) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, hex: ``openssl pkey -pubin -outform DER |
    sha256sum`` prints the same."""
    return hashlib.sha256(spki_der(pub)).hexdigest()


def key_id(name: str, pub: tuple[int, int]) -> bytes:
    """The note key ID of SM2 key ``pub`` under ``name`` (module docstring)."""
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + SM2_NOTE_TYPE + encode_point(pub)
    ).digest()[:4]


def _from_spki(node: asn1.Node) -> tuple[int, int]:
    fields = node.seq("SubjectPublicKeyInfo")
    if len(fields) != 2:
        raise MalformedError("SubjectPublicKeyInfo: want algorithm and key")
    alg = fields[0].seq("SubjectPublicKeyInfo algorithm")
    oids = tuple(f.oid("algorithm") for f in alg if f.tag == asn1.OID)
    if oids != (OID_EC_PUBLIC_KEY, OID_SM2):
        raise MalformedError(f"not an SM2 public key (algorithm {', '.join(oids)})")
    bits = fields[1].expect(asn1.BIT_STRING, "SubjectPublicKeyInfo key").value
    if not bits or bits[0] != 0:
        raise MalformedError("SubjectPublicKeyInfo key: unused bits in BIT STRING")
    return parse_public_key(bits[1:])


_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)-----END \1-----", re.S)


def load_public_key(data: bytes) -> tuple[int, int]:
    """The SM2 public key in a PEM file: the first ``PUBLIC KEY`` (SPKI) or ``CERTIFICATE``
    block (its subject key; the certificate's own signature and chain are not checked here).
    DER of either is accepted too."""
    blocks = [(m.group(1), m.group(2)) for m in _PEM.finditer(data)]
    if not blocks:
        blocks = [(b"DER", base64.b64encode(data))]
    for label, b64 in blocks:
        if label not in (b"PUBLIC KEY", b"CERTIFICATE", b"DER"):
            continue
        try:
            der = base64.b64decode(b64, validate=False)
        except ValueError as exc:
            raise MalformedError(f"PEM {label.decode()}: bad base64") from exc
        node = asn1.parse(der, label.decode())
        top = node.seq(label.decode())
        if label == b"PUBLIC KEY" or (label == b"DER" and len(top) == 2):
            return _from_spki(node)
        # Certificate: tbsCertificate [version] serial sigAlg issuer validity subject spki
        tbs = top[0].seq("tbsCertificate")
        skip = 1 if tbs and tbs[0].tag == asn1.context(0) else 0
        if len(tbs) < skip + 6:
            raise MalformedError("certificate: tbsCertificate too short")
        return _from_spki(tbs[skip + 5])
    raise MalformedError("no PUBLIC KEY or CERTIFICATE in the file")
