"""C2SP signed notes (https://c2sp.org/signed-note), Ed25519 signature type 0x01 only.

Wire format (identical to golang.org/x/mod/sumdb/note)::

    <text ending in "\\n">
    <blank line>
    — <key name> <base64(4-byte key ID || 64-byte Ed25519 signature)>\\n   (one or more)

Keys: ``key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4]``; a verifier key (vkey) is
``<name>+<8 hex key ID>+<base64(0x01 || 32-byte public key)>`` and a signer key (skey) is
``PRIVATE+KEY+<name>+<8 hex key ID>+<base64(0x01 || 32-byte seed)>``.

Guarantees:

* :func:`parse_note` accepts only valid UTF-8 without control characters other than
  newline, split at the *last* blank line into a text ending in newline and 1..100
  well-formed signature lines with canonical base64; anything else is :class:`MalformedError`.
* :func:`verify_note` returns only if at least one signature line carries the verifier's
  name *and* key ID and every such line is a valid Ed25519 signature of the text. Lines by
  other keys are ignored, as the spec requires.
* Parsing and formatting keys (:func:`parse_vkey`, :func:`format_vkey`, :func:`key_id`) need
  only the standard library: ``cryptography`` is imported when a key signs or verifies (or a
  signer is made), so reading a vkey costs no start-up of the Ed25519 library.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from verify.encoding import b64decode_strict, b64encode
from verify.errors import MalformedError, SignatureError, WrongKeyError

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "Signer",
    "Verifier",
    "format_vkey",
    "is_valid_key_name",
    "key_id",
    "parse_note",
    "parse_vkey",
    "sign_note",
    "verify_note",
]

ALG_ED25519 = 0x01
MAX_SIGNATURES = 100
SIG_PREFIX = "\u2014 "  # em dash, space

# Unicode White_Space, as Go's unicode.IsSpace sees it.
_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")


def is_valid_key_name(name: str) -> bool:
    """Non-empty, encodable UTF-8, no Unicode space, no ``+`` (signed-note §Format) and no
    control character (a note may not contain one)."""
    if not name or "+" in name or any(c in _SPACES or c < " " for c in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def key_id(name: str, public_key: bytes, alg: int = ALG_ED25519) -> bytes:
    """A note key's ID: ``SHA-256(name || 0x0A || alg || public_key)[:4]`` (``alg`` 0x01 for a
    log's Ed25519 key, 0x04 for a witness's cosignature/v1 key)."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()[:4]


def check_key(name: str, kid: bytes, public_key: bytes, alg: int = ALG_ED25519) -> None:
    """ValueError unless ``name`` is a valid key name, ``public_key`` an Ed25519 key and ``kid``
    its key ID under ``alg``: what constructing a trusted key checks."""
    if not is_valid_key_name(name):
        raise ValueError(f"invalid key name {name!r}")
    if len(public_key) != 32:
        raise ValueError(f"Ed25519 public key is {len(public_key)} bytes, want 32")
    if kid != key_id(name, public_key, alg):
        raise ValueError(f"key ID {kid.hex()} does not match key {name!r}")


@dataclass(frozen=True)
class Verifier:
    """A trusted Ed25519 note key. Construction checks that ``key_id`` matches the key."""

    name: str
    key_id: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        check_key(self.name, self.key_id, self.public_key)

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Verifier:
        """The verifier for ``name`` and a raw 32-byte Ed25519 public key."""
        return cls(name, key_id(name, public_key), bytes(public_key))

    @property
    def vkey(self) -> str:
        """This key as a C2SP vkey string."""
        return format_vkey(self.name, self.public_key)

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """True iff ``sig`` is a valid Ed25519 signature of ``msg`` by this key."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(sig, msg)
        except (InvalidSignature, ValueError):
            return False
        return True


def split_key(text: str, parts: int, what: str) -> list[str]:
    """``text`` (a vkey or skey) cut at its first ``parts - 1`` ``+`` signs."""
    fields = text.split("+", parts - 1)
    if len(fields) != parts:
        raise MalformedError(f"{what}: want {parts} '+'-separated fields, got {len(fields)}")
    return fields


def decode_key_fields(
    name: str, hex_id: str, b64: str, what: str, alg: int = ALG_ED25519, kind: str = ""
) -> tuple[bytes, bytes]:
    """Check name and key-ID syntax and decode ``alg || 32 bytes``; returns (id, key). ``kind``
    says in the error what a key of another algorithm is not (default: unsupported)."""
    if not is_valid_key_name(name):
        raise MalformedError(f"{what}: invalid key name {name!r}")
    if not _HEX8.fullmatch(hex_id):
        raise MalformedError(f"{what}: key ID {hex_id!r} is not 8 hex digits")
    raw = b64decode_strict(b64, f"{what} key data")
    if len(raw) != 33:
        raise MalformedError(f"{what}: key data is {len(raw)} bytes, want 33")
    if raw[0] != alg:
        raise MalformedError(
            f"{what}: key type 0x{raw[0]:02x} is not {kind}"
            if kind
            else f"{what}: unsupported key algorithm 0x{raw[0]:02x}, want 0x{alg:02x}"
        )
    return bytes.fromhex(hex_id), raw[1:]


def parse_vkey(vkey: str) -> Verifier:
    """Parse ``<name>+<hex8 key ID>+<base64(0x01 || pubkey)>``; the key ID must match."""
    name, hex_id, b64 = split_key(vkey, 3, "vkey")
    kid, public_key = decode_key_fields(name, hex_id, b64, "vkey")
    if kid != key_id(name, public_key):
        raise MalformedError(
            f"vkey: key ID {hex_id} does not match key {name!r} "
            f"(computed {key_id(name, public_key).hex()})"
        )
    return Verifier(name, kid, public_key)


def format_vkey(name: str, public_key: bytes) -> str:
    """The vkey string for ``name`` and a raw 32-byte Ed25519 public key."""
    if not is_valid_key_name(name):
        raise ValueError(f"invalid key name {name!r}")
    if len(public_key) != 32:
        raise ValueError(f"Ed25519 public key is {len(public_key)} bytes, want 32")
    data = b64encode(bytes([ALG_ED25519]) + public_key)
    return f"{name}+{key_id(name, public_key).hex()}+{data}"


class Signer:
    """An Ed25519 note signing key. Its ``repr`` never shows the private seed."""

    __slots__ = ("_key", "_key_id", "_name", "_public_key", "_seed")

    def __init__(self, name: str, seed: bytes) -> None:
        if not is_valid_key_name(name):
            raise ValueError(f"invalid key name {name!r}")
        if len(seed) != 32:
            raise ValueError(f"Ed25519 seed is {len(seed)} bytes, want 32")
        self._name = name
        self._seed = bytes(seed)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self._key = Ed25519PrivateKey.from_private_bytes(self._seed)
        self._public_key = self._key.public_key().public_bytes_raw()
        self._key_id = key_id(name, self._public_key)

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random key for ``name``."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        return cls(name, seed)

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        """Parse ``PRIVATE+KEY+<name>+<hex8 key ID>+<base64(0x01 || seed)>``.

        The key ID must match the public key derived from the seed.
        """
        fields = split_key(skey, 5, "skey")
        if fields[0] != "PRIVATE" or fields[1] != "KEY":
            raise MalformedError("skey: does not start with PRIVATE+KEY+")
        kid, seed = decode_key_fields(fields[2], fields[3], fields[4], "skey")
        signer = cls(fields[2], seed)
        if signer.key_id != kid:
            raise MalformedError(
                f"skey: key ID {fields[3]} does not match the key (computed {signer.key_id.hex()})"
            )
        return signer

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def vkey(self) -> str:
        return format_vkey(self._name, self._public_key)

    @property
    def verifier(self) -> Verifier:
        return Verifier(self._name, self._key_id, self._public_key)

    def sign(self, msg: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``msg``."""
        return self._key.sign(msg)

    def to_skey(self) -> str:
        """This key in golang.org/x/mod/sumdb/note private key format. Keep it secret."""
        data = b64encode(bytes([ALG_ED25519]) + self._seed)
        return f"PRIVATE+KEY+{self._name}+{self._key_id.hex()}+{data}"

    def __repr__(self) -> str:
        return f"Signer(name={self._name!r}, key_id={self._key_id.hex()})"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID and the raw signature bytes."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class Note:
    """A parsed note: ``text`` (ending in ``"\\n"``) and its signature lines, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]


def _check_note_chars(text: str, what: str) -> None:
    for lineno, line in enumerate(text.split("\n"), start=1):
        for col, c in enumerate(line, start=1):
            if c < " ":
                raise MalformedError(
                    f"{what}: control character U+{ord(c):04X} at line {lineno} column {col}"
                )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedError(f"{what}: not valid UTF-8 ({exc.reason})") from exc


def sign_note(text: str, signer: Signer) -> str:
    """The signed note ``text + "\\n" + "— <name> <base64(key ID || sig)>\\n"``.

    Raises :class:`ValueError` if ``text`` does not end in a newline or contains characters
    a note may not contain.
    """
    if not text.endswith("\n"):
        raise ValueError("note text must end with a newline")
    try:
        _check_note_chars(text, "note text")
    except MalformedError as exc:
        raise ValueError(str(exc)) from exc
    sig = signer.sign(text.encode("utf-8"))
    return f"{text}\n{SIG_PREFIX}{signer.name} {b64encode(signer.key_id + sig)}\n"


def parse_note(data: str | bytes) -> Note:
    """Parse a signed note strictly; signatures are *not* verified. See module docstring."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedError(f"note: not valid UTF-8 at byte {exc.start}") from exc
    _check_note_chars(data, "note")
    split = data.rfind("\n\n")
    if split < 0:
        raise MalformedError("note: no blank line separating text from signatures")
    text, sigs = data[: split + 1], data[split + 2 :]
    if not sigs:
        raise MalformedError("note: no signature lines after the last blank line")
    if not sigs.endswith("\n"):
        raise MalformedError("note: last signature line does not end with a newline")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedError(f"note: {len(lines)} signature lines, at most {MAX_SIGNATURES}")
    first_sig_line = text.count("\n") + 2
    signatures = tuple(
        _parse_signature_line(line, first_sig_line + i) for i, line in enumerate(lines)
    )
    return Note(text, signatures)


def _parse_signature_line(line: str, lineno: int) -> NoteSignature:
    where = f"note line {lineno}"
    if not line.startswith(SIG_PREFIX):
        raise MalformedError(f"{where}: signature line does not start with '— '")
    name, sep, b64 = line[len(SIG_PREFIX) :].partition(" ")
    if not sep or not b64:
        raise MalformedError(f"{where}: signature line has no signature after the key name")
    if not is_valid_key_name(name):
        raise MalformedError(f"{where}: invalid key name {name!r}")
    raw = b64decode_strict(b64, f"{where} signature")
    if len(raw) < 5:
        raise MalformedError(f"{where}: signature is {len(raw)} bytes, want at least 5")
    return NoteSignature(name, raw[:4], raw[4:])


def verify_note(data: str | bytes, verifier: Verifier) -> Note:
    """Parse ``data`` and verify it was signed by ``verifier``; returns the parsed note.

    Raises :class:`MalformedError` for a bad format, :class:`WrongKeyError` if no signature
    line carries the verifier's name and key ID, and :class:`SignatureError` if any such line
    does not verify.
    """
    note = parse_note(data)
    mine = [s for s in note.signatures if s.name == verifier.name and s.key_id == verifier.key_id]
    if not mine:
        present = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in note.signatures)
        raise WrongKeyError(
            f"note has no signature by trusted key {verifier.name}+{verifier.key_id.hex()} "
            f"(signed by: {present})"
        )
    msg = note.text.encode("utf-8")
    for s in mine:
        if not verifier.verify(msg, s.signature):
            raise SignatureError(
                f"invalid signature by {verifier.name}+{verifier.key_id.hex()} on note text"
            )
    return note
