"""The log's Ed25519 signing key on disk.

Guarantees: a key file is created once, mode 0600, in a 0700 folder, written to a temporary file
that is fsynced and linked into place without replacing anything; an existing key is never
overwritten (a second ``init`` reuses it).

Beside it, like ssh's ``.pub``, ``init`` writes the verifier key (public, usable as
``evault-verify --vkey-file``): ``keys/ledger.vkey`` for ``keys/ledger.skey``.
:func:`recorded_vkey` returns that file's vkey only if it is a valid vkey with the signing key's
name and key ID (a stale or foreign file is ignored; a key ID is 32 bits of SHA-256 over the
name and public key); it needs no Ed25519 arithmetic, so ``evault ledger vkey`` starts fast.
"""

from __future__ import annotations

import os
from pathlib import Path

from vault.errors import ConfigError
from vault.keys.files import create_once
from verify.errors import MalformedError
from verify.note import Signer, parse_vkey


def vkey_path(key_path: Path) -> Path:
    """Where the verifier key of the signing key at ``key_path`` is written."""
    return key_path.with_suffix(".vkey")


def recorded_vkey(key_path: Path) -> str | None:
    """The vkey written beside the signing key, if it is that key's (module docstring)."""
    try:
        fields = key_path.read_text(encoding="utf-8").strip().split("+", 4)
        verifier = parse_vkey(vkey_path(key_path).read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError, MalformedError):
        return None
    if len(fields) != 5 or fields[:2] != ["PRIVATE", "KEY"]:
        return None
    if (fields[2], fields[3].lower()) != (verifier.name, verifier.key_id.hex()):
        return None
    return verifier.vkey


def write_vkey(key_path: Path, vkey: str) -> None:
    """Write ``vkey`` beside the signing key (atomically; public, mode 0644), unless there."""
    if recorded_vkey(key_path) == vkey:
        return
    target = vkey_path(key_path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, (vkey + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(target)


def create_signing_key(path: Path, origin: str) -> tuple[Signer, bool]:
    """Return (signer, created): the key at ``path``, generated there if absent; its verifier
    key is written beside it (:func:`write_vkey`) either way."""
    signer, created = _create_signing_key(path, origin)
    write_vkey(path, signer.vkey)
    return signer, created


def _create_signing_key(path: Path, origin: str) -> tuple[Signer, bool]:
    created = create_once(path, Signer.generate(origin).to_skey() + "\n")
    return load_signer(path), created


def load_signer(path: Path) -> Signer:
    """Load the signing key; ConfigError with the path if missing, unreadable or malformed."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the ledger signing key: {exc.strerror}") from exc
    try:
        return Signer.from_skey(text)
    except MalformedError as exc:
        raise ConfigError(f"{path}: not a signing key: {exc}") from exc
