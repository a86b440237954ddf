"""The SM2 cosigner: an extra note signature on every checkpoint, SM2 with SM3 (GM/T 0003), by a
key from the bureau's CA (``anchors.sm2_key``), for deployments that need 商用密码.

Signing uses GmSSL (the ``gmssl-pyx`` wheel, the optional extra ``evidence-vault[sm2]``): the
reference implementation of the GM/T standards, in C, with its own random nonces. Verification,
here and for ``evault-verify``, is :mod:`verify.sm2` (pure Python). The line's format and key
ID are in :mod:`verify.sm2` and ``docs/anchors.md``.

Guarantees:

* :func:`load_cosigner` refuses (ConfigError naming the file) a key file that is missing,
  unreadable, encrypted or not an SM2 key, a certificate that is not the key's, and a missing
  ``gmssl-pyx`` (saying what to install).
* :meth:`Sm2Cosigner.cosign` returns a note whose text is unchanged and which carries one more
  signature line, only after that signature verified with :mod:`verify.sm2` for the key's
  public point and user ID.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

from vault.anchors.config import AnchorsConfig
from vault.errors import ConfigError
from verify import asn1, sm2
from verify.encoding import b64encode
from verify.errors import MalformedError
from verify.note import SIG_PREFIX, parse_note

__all__ = ["Sm2Cosigner", "load_cosigner", "parse_private_key"]

_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----\s*(.*?)-----END \1-----", re.S)


def _ec_private_key(node: asn1.Node) -> tuple[int, bytes | None]:
    """(d, encoded public point or None) from a SEC1 ECPrivateKey (RFC 5915)."""
    fields = node.seq("ECPrivateKey")
    if len(fields) < 2 or fields[0].integer("ECPrivateKey version") != 1:
        raise MalformedError("ECPrivateKey: want version 1 and a private key")
    d = int.from_bytes(fields[1].octets("ECPrivateKey privateKey"), "big")
    public = None
    for f in fields[2:]:
        if f.tag == asn1.context(0):
            (oid,) = f.children()
            if oid.oid("ECPrivateKey parameters") != sm2.OID_SM2:
                raise MalformedError("ECPrivateKey: the curve is not SM2")
        elif f.tag == asn1.context(1):
            (bits,) = f.children()
            raw = bits.expect(asn1.BIT_STRING, "ECPrivateKey publicKey").value
            public = raw[1:] if raw[:1] == b"\x00" else None
    return d, public


def parse_private_key(pem: str) -> tuple[int, tuple[int, int]]:
    """(d, public point) of the first SM2 ``PRIVATE KEY`` or ``EC PRIVATE KEY`` in ``pem``."""
    for m in _PEM.finditer(pem):
        label = m.group(1)
        if label == "ENCRYPTED PRIVATE KEY":
            raise MalformedError("the key is encrypted: give it unencrypted, mode 0600")
        if label not in ("PRIVATE KEY", "EC PRIVATE KEY"):
            continue
        node = asn1.parse(base64.b64decode(m.group(2)), label)
        if label == "PRIVATE KEY":  # PKCS#8: version, algorithm, privateKey
            fields = node.seq("PrivateKeyInfo")
            if len(fields) < 3:
                raise MalformedError("PrivateKeyInfo: too short")
            oids = tuple(f.oid("algorithm") for f in fields[1].seq("algorithm"))
            if oids != (sm2.OID_EC_PUBLIC_KEY, sm2.OID_SM2):
                raise MalformedError(f"not an SM2 key (algorithm {', '.join(oids)})")
            node = asn1.parse(fields[2].octets("privateKey"), "ECPrivateKey")
        d, public = _ec_private_key(node)
        point = sm2.scalar_mult_base(d)
        if public is not None and sm2.parse_public_key(public) != point:
            raise MalformedError("the public key stored with the private key is not its own")
        return d, point
    raise MalformedError("no PRIVATE KEY or EC PRIVATE KEY block")


@dataclass(frozen=True)
class Sm2Cosigner:
    """Adds the SM2 signature line to signed notes. Its ``repr`` never shows the key."""

    name: str
    public: tuple[int, int]
    user_id: bytes
    _private: bytes

    def __repr__(self) -> str:
        return f"Sm2Cosigner(name={self.name!r}, key_id={self.key_id.hex()})"

    @property
    def key_id(self) -> bytes:
        return sm2.key_id(self.name, self.public)

    @property
    def fingerprint(self) -> str:
        return sm2.fingerprint(self.public)

    def cosign(self, note: str) -> str:
        """``note`` with this key's SM2 signature of its text appended (module docstring);
        RuntimeError if GmSSL fails or its signature does not verify."""
        from gmssl_pyx import GmsslInnerError, sm2_sign

        text = parse_note(note).text.encode("utf-8")
        try:
            der = sm2_sign(self._private, sm2.encode_point(self.public)[1:], text, self.user_id)
            r, s = sm2.decode_signature(der)
        except (GmsslInnerError, MalformedError) as exc:
            raise RuntimeError(f"SM2 signing failed: {exc}") from exc
        if not sm2.verify(self.public, text, r, s, self.user_id):
            raise RuntimeError("GmSSL made an SM2 signature that does not verify")
        return f"{note}{SIG_PREFIX}{self.name} {b64encode(self.key_id + der)}\n"


def load_cosigner(
    cfg: AnchorsConfig, key_path: Path, cert_path: Path | None, origin: str
) -> Sm2Cosigner:
    """The cosigner of ``anchors.sm2_*`` (``key_path``/``cert_path`` already resolved)."""
    try:
        import gmssl_pyx  # noqa: F401 (checked here, at start, not at the first checkpoint)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "anchors.sm2_key needs the SM2 library: pip install 'evidence-vault[sm2]' (gmssl-pyx)"
        ) from exc
    try:
        d, public = parse_private_key(key_path.read_text("ascii"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"anchors.sm2_key {key_path}: cannot read it: {exc}") from exc
    except (MalformedError, ValueError) as exc:
        raise ConfigError(f"anchors.sm2_key {key_path}: not an SM2 private key: {exc}") from exc
    if cert_path is not None:
        try:
            certified = sm2.load_public_key(cert_path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"anchors.sm2_cert {cert_path}: cannot read it: {exc}") from exc
        except MalformedError as exc:
            raise ConfigError(f"anchors.sm2_cert {cert_path}: {exc}") from exc
        if certified != public:
            raise ConfigError(
                f"anchors.sm2_cert {cert_path} is not the certificate of anchors.sm2_key "
                f"(its key {sm2.fingerprint(certified)}, the key's {sm2.fingerprint(public)})"
            )
    name = cfg.sm2_key_name or f"{origin}/sm2"
    return Sm2Cosigner(name, public, cfg.sm2_user_id.encode(), d.to_bytes(32, "big"))
