"""The log's Ed25519 signing key on disk.

Guarantees: a key file is created once, mode 0600, in a 0700 folder, written to a temporary file
that is fsynced and linked into place without replacing anything; an existing key is never
overwritten (a second ``init`` reuses it).
"""

from __future__ import annotations

import os
from pathlib import Path

from vault.errors import ConfigError
from verify.errors import MalformedError
from verify.note import Signer


def create_signing_key(path: Path, origin: str) -> tuple[Signer, bool]:
    """Return (signer, created): the key at ``path``, generated there if absent."""
    if path.exists():
        return load_signer(path), False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    signer = Signer.generate(origin)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (signer.to_skey() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if a key appeared meanwhile: never replace one
    except FileExistsError:
        return load_signer(path), False
    finally:
        tmp.unlink()
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return signer, True


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
