"""C2SP ``cosignature/v1`` (https://c2sp.org/tlog-cosignature): Ed25519 cosignatures of
checkpoints by witnesses.

Wire format: a signed-note signature line ``— <name> base64(key ID || timestamp || signature)``
where the key ID is ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``, the timestamp a
big-endian u64 (POSIX seconds, at most 2^63 - 1) and the signature an Ed25519 signature of::

    cosignature/v1\\n
    time <timestamp, decimal>\\n
    <the whole checkpoint note body, final newline included>

A witness's verifier key is the vkey ``<name>+<hex8 key ID>+<base64(0x04 || public key)>``;
its signing key ``PRIVATE+KEY+<name>+<hex8 key ID>+<base64(0x04 || seed)>``.

Guarantees:

* :func:`verify_cosignature` returns the cosigned time only for a line carrying the key's
  name and key ID whose 72-byte payload is a valid Ed25519 signature of the message above for
  exactly ``body``; anything else raises (:class:`MalformedError`, :class:`SignatureError`).
* :func:`check_cosignatures` ignores lines by keys it was not given (as the spec requires) and
  counts each given witness at most once, so N valid cosignatures are N distinct witnesses.
* Standard library only until a key signs or verifies (then ``cryptography``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from verify.encoding import b64encode
from verify.errors import MalformedError, SignatureError
from verify.note import (
    SIG_PREFIX,
    NoteSignature,
    check_key,
    decode_key_fields,
    is_valid_key_name,
    key_id,
    parse_note,
    split_key,
)

__all__ = [
    "ALG_COSIGNATURE_V1",
    "CosignatureCheck",
    "Cosigner",
    "CosignerKey",
    "check_cosignatures",
    "cosignature_key_id",
    "cosigned_message",
    "parse_cosigner_vkey",
    "signature_lines",
    "verify_cosignature",
]

ALG_COSIGNATURE_V1 = 0x04
HEADER = "cosignature/v1"
MAX_TIMESTAMP = (1 << 63) - 1
PAYLOAD = 8 + 64


def cosignature_key_id(name: str, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x04 || public_key)[:4]``."""
    return key_id(name, public_key, ALG_COSIGNATURE_V1)


def cosigned_message(body: str, timestamp: int) -> bytes:
    """What a ``cosignature/v1`` signs for the checkpoint note body ``body`` at ``timestamp``."""
    return f"{HEADER}\ntime {timestamp}\n{body}".encode()


def _format_key(name: str, key_id: bytes, data: bytes) -> str:
    return f"{name}+{key_id.hex()}+{b64encode(bytes([ALG_COSIGNATURE_V1]) + data)}"


@dataclass(frozen=True)
class CosignerKey:
    """A witness's trusted Ed25519 cosigning key (construction checks the key ID)."""

    name: str
    key_id: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        check_key(self.name, self.key_id, self.public_key, ALG_COSIGNATURE_V1)

    @property
    def vkey(self) -> str:
        return _format_key(self.name, self.key_id, self.public_key)

    @property
    def label(self) -> str:
        """``name+keyid``: how reports name this witness."""
        return f"{self.name}+{self.key_id.hex()}"


def _key_fields(text: str, parts: int, what: str) -> list[str]:
    return split_key(text.strip(), parts, what)


def _decode(name: str, hex_id: str, b64: str, what: str) -> tuple[bytes, bytes]:
    kind = "a cosignature/v1 key (0x04): a witness key, not a log key, is needed here"
    return decode_key_fields(name, hex_id, b64, what, ALG_COSIGNATURE_V1, kind)


def parse_cosigner_vkey(vkey: str) -> CosignerKey:
    """Parse ``<name>+<hex8 key ID>+<base64(0x04 || pubkey)>``; the key ID must match."""
    name, hex_id, b64 = _key_fields(vkey, 3, "witness vkey")
    kid, public_key = _decode(name, hex_id, b64, "witness vkey")
    if kid != cosignature_key_id(name, public_key):
        raise MalformedError(
            f"witness vkey: key ID {hex_id} does not match key {name!r} "
            f"(computed {cosignature_key_id(name, public_key).hex()})"
        )
    return CosignerKey(name, kid, public_key)


class Cosigner:
    """A witness's Ed25519 cosigning key. Its ``repr`` never shows the seed."""

    __slots__ = ("_key", "_name", "_public", "_seed")

    def __init__(self, name: str, seed: bytes) -> None:
        if not is_valid_key_name(name):
            raise ValueError(f"invalid key name {name!r}")
        if len(seed) != 32:
            raise ValueError(f"Ed25519 seed is {len(seed)} bytes, want 32")
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self._name, self._seed = name, bytes(seed)
        self._key = Ed25519PrivateKey.from_private_bytes(self._seed)
        self._public = self._key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls, name: str) -> Cosigner:
        import secrets

        return cls(name, secrets.token_bytes(32))

    @classmethod
    def from_skey(cls, skey: str) -> Cosigner:
        """Parse ``PRIVATE+KEY+<name>+<hex8 key ID>+<base64(0x04 || seed)>``."""
        fields = _key_fields(skey, 5, "witness skey")
        if fields[:2] != ["PRIVATE", "KEY"]:
            raise MalformedError("witness skey: does not start with PRIVATE+KEY+")
        kid, seed = _decode(fields[2], fields[3], fields[4], "witness skey")
        signer = cls(fields[2], seed)
        if signer.key.key_id != kid:
            raise MalformedError(f"witness skey: key ID {fields[3]} does not match the key")
        return signer

    def to_skey(self) -> str:
        return "PRIVATE+KEY+" + _format_key(self._name, self.key.key_id, self._seed)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key(self) -> CosignerKey:
        return CosignerKey(self._name, cosignature_key_id(self._name, self._public), self._public)

    def cosign(self, body: str, timestamp: int | None = None) -> str:
        """The signature line (ending in newline) cosigning the checkpoint note body ``body``."""
        t = int(time.time()) if timestamp is None else timestamp
        if not 0 <= t <= MAX_TIMESTAMP:
            raise ValueError(f"timestamp {t} out of range")
        sig = self._key.sign(cosigned_message(body, t))
        payload = self.key.key_id + t.to_bytes(8, "big") + sig
        return f"{SIG_PREFIX}{self._name} {b64encode(payload)}\n"

    def __repr__(self) -> str:
        return f"Cosigner(name={self._name!r}, key_id={self.key.key_id.hex()})"


def signature_lines(body: str, lines: str) -> tuple[NoteSignature, ...]:
    """Parse signature ``lines`` (each ``— name base64`` ending in newline) as signatures of the
    note body ``body``; raises MalformedError."""
    if not lines:
        return ()
    return parse_note(body + "\n" + lines).signatures


def verify_cosignature(sig: NoteSignature, body: str, key: CosignerKey) -> int:
    """The time (POSIX seconds) at which ``key`` cosigned ``body`` in ``sig``; raises
    MalformedError (not a cosignature/v1 payload) or SignatureError (does not verify)."""
    if (sig.name, sig.key_id) != (key.name, key.key_id):
        raise SignatureError(f"the line is not by {key.label}")
    if len(sig.signature) != PAYLOAD:
        raise MalformedError(
            f"cosignature by {key.label} is {len(sig.signature) + 4} bytes, want {PAYLOAD + 4}"
        )
    t = int.from_bytes(sig.signature[:8], "big")
    if t > MAX_TIMESTAMP:
        raise MalformedError(f"cosignature by {key.label}: timestamp {t} exceeds 2^63-1")
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(
            sig.signature[8:], cosigned_message(body, t)
        )
    except InvalidSignature:
        raise SignatureError(
            f"cosignature by {key.label} (time {t}) does not verify for this checkpoint"
        ) from None
    return t


@dataclass
class CosignatureCheck:
    """What :func:`check_cosignatures` found: witness label -> cosigned time for each valid
    one, and one message per line by a given witness that did not verify."""

    valid: dict[str, int] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)


def check_cosignatures(
    body: str, sigs: Iterable[NoteSignature], keys: Sequence[CosignerKey]
) -> CosignatureCheck:
    """Check every line by one of ``keys`` against the checkpoint note body ``body``."""
    out = CosignatureCheck()
    by_id = {(k.name, k.key_id): k for k in keys}
    for sig in sigs:
        key = by_id.get((sig.name, sig.key_id))
        if key is None:
            continue
        try:
            t = verify_cosignature(sig, body, key)
        except (MalformedError, SignatureError) as exc:
            out.invalid.append(str(exc))
            continue
        out.valid[key.label] = max(t, out.valid.get(key.label, t))
    return out
