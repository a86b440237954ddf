"""The backup format: layout, manifest, verified file copies, the encrypted key, pg tools.

A backup is a folder (``evault backup --out DIR``)::

    manifest.json     written last: its presence means the backup is complete
    database.dump     pg_dump --format=custom, taken from one snapshot
    checkpoints.log   the ledger's external checkpoint file, copied under the checkpoint lock
    evault.toml       the configuration in force (for reference and for restore)
    files.jsonl       one JSON line per copied tree file: {"path", "sha256", "size"}
    objects/...       the blob store's plain objects by content address (hard links if possible)
    sealed/...        its sealed (encrypted) objects, as stored: ciphertext, never decrypted
    quarantine/...    refused dock files and their reason files
    signing-key.enc   only with --with-key: the ledger signing key, encrypted (see below)
    mac-key.enc       only with --with-key: the host MAC key (``ledger.mac_key_file``),
                      encrypted the same way; without it a restored service cannot verify its
                      state, so it must then be copied from the old host by hand

``manifest.json`` holds the SHA-256 and size of every top-level file (``files.jsonl`` included,
so every tree file is covered too), the log's origin and verifier key, the ledger size and
root in the snapshot, and the last checkpoint note in it.

Guarantees:

* ``copy_verified`` reads a source once, hashing as it copies, fsyncs the copy and renames it
  into place; a copy whose hash differs from the expected one is removed and raises
  ``IntegrityError``. A hard link (same file system) is hashed after linking, so what the
  backup holds is verified either way. Links in the source tree are never followed.
* The signing key and the host MAC key are each encrypted with AES-256-GCM under a key derived
  from the passphrase by scrypt (N=2^17, r=8, p=1, 16-byte random salt of its own); the
  associated data binds the log's verifier key and which key it is, so a key file can be passed
  off neither as another log's nor as the other key (a MAC key file renamed to
  ``signing-key.enc`` does not open). A wrong passphrase or any altered byte raises
  ``IntegrityError``; nothing is written from an unauthenticated key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from vault.db import Conn
from vault.errors import ConfigError, IntegrityError
from vault.storage.blobcopy import fsync_dir

FORMAT = "evidence-vault/backup@1"
KEY_FORMAT = "evidence-vault/key-backup@1"
MANIFEST = "manifest.json"
DUMP = "database.dump"
CHECKPOINTS = "checkpoints.log"
CONFIG = "evault.toml"
FILES = "files.jsonl"
BUCKET_OBJECTS = "bucket-objects.jsonl"  # S3 store: the objects kept in the bucket, not copied
KEY = "signing-key.enc"
MAC_KEY = "mac-key.enc"
OBJECTS = "objects"
SEALED = "sealed"
STORE_TREES = (OBJECTS, SEALED)
QUARANTINE = "quarantine"
_CHUNK = 1 << 20
_SCRYPT = {"n": 1 << 17, "r": 8, "p": 1}
_KEY_AAD = b"evidence-vault key backup v1\0"
_MAC_KEY_AAD = b"evidence-vault host MAC key backup v1\0"
_AAD = {KEY: _KEY_AAD, MAC_KEY: _MAC_KEY_AAD}
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Copied:
    """One file placed in a tree: its path relative to the tree's parent, hash, size, and
    whether it is a hard link to its source rather than a copy."""

    path: str
    sha256: str
    size: int
    linked: bool

    def line(self) -> str:
        return json.dumps({"path": self.path, "sha256": self.sha256, "size": self.size})


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex SHA-256, size) of the regular file at ``path``; links are not followed."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        digest = hashlib.file_digest(f, "sha256")
        return digest.hexdigest(), f.tell()


def address_of(rel: str) -> str | None:
    """The hash a plain object's bytes must have (its name), or None for a file that is not
    addressed by its own bytes (a sealed object is named by its PLAINTEXT hash, so it can only
    be checked against the hash recorded when it was copied)."""
    parts = rel.split("/")
    if len(parts) == 5 and parts[:2] == [OBJECTS, "sha256"] and _HEX64.fullmatch(parts[4]):
        return parts[4]
    return None


def copy_verified(
    src: Path, dst: Path, rel: str, *, link: bool, expect: str | None, mode: int
) -> Copied:
    """Place ``src`` at ``dst`` (linked when ``link`` and possible, else copied), verifying
    it hashes to ``expect`` (when given, else to the bytes read). See the module docstring."""
    st = src.lstat()
    if not stat.S_ISREG(st.st_mode):
        raise IntegrityError(f"{rel}: not a regular file")
    if link and st.st_dev == dst.parent.stat().st_dev:
        try:
            os.link(src, dst, follow_symlinks=False)
        except OSError:
            pass  # e.g. protected_hardlinks, or a file system without links: copy instead
        else:
            digest, size = sha256_file(dst)
            if expect is not None and digest != expect:
                dst.unlink()
                raise IntegrityError(f"{rel}: content does not hash to {expect}")
            return Copied(rel, digest, size, True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    h = hashlib.sha256()
    size = 0
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            while chunk := os.read(sfd, _CHUNK):
                h.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dfd, view) :]
                size += len(chunk)
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
    digest = h.hexdigest()
    if expect is not None and digest != expect:
        tmp.unlink()
        raise IntegrityError(f"{rel}: content does not hash to {expect}")
    tmp.chmod(mode)
    tmp.rename(dst)
    return Copied(rel, digest, size, False)


def walk_files(root: Path) -> Iterator[tuple[Path, str]]:
    """Every regular file under ``root`` as (path, path relative to ``root``'s parent), in
    sorted order; links and special files are skipped (never followed)."""
    base = root.parent
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                path = Path(entry.path)
                yield path, path.relative_to(base).as_posix()


def write_durable(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` (never over an existing file) with ``data``, fsynced with its folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink()
    fsync_dir(path.parent)


def private_dirs(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0700."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)


def fsync_tree(root: Path) -> None:
    """fsync every folder under ``root`` (after files were created in them)."""
    for folder, _dirs, _files in os.walk(root):
        fsync_dir(Path(folder))


def describe_file(path: Path) -> dict[str, Any]:
    digest, size = sha256_file(path)
    return {"sha256": digest, "size": size}


# -- the encrypted signing key ------------------------------------------------------------------


def _kdf(passphrase: bytes, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, **_SCRYPT).derive(passphrase)


def seal_key(secret: bytes, passphrase: bytes, vkey: str, name: str = KEY) -> bytes:
    """The key file ``name`` (:data:`KEY`: the signing key, :data:`MAC_KEY`: the host MAC
    key) holding ``secret`` encrypted under ``passphrase``, bound to ``vkey`` (JSON)."""
    if len(passphrase) < 8:
        raise ConfigError("the passphrase must have at least 8 characters")
    salt, nonce = os.urandom(16), os.urandom(12)
    sealed = AESGCM(_kdf(passphrase, salt)).encrypt(nonce, secret, _AAD[name] + vkey.encode())
    doc = {
        "format": KEY_FORMAT,
        "kdf": {"name": "scrypt", **_SCRYPT, "salt": base64.b64encode(salt).decode()},
        "cipher": "AES-256-GCM",
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(sealed).decode(),
        "vkey": vkey,
    }
    return (json.dumps(doc, indent=1) + "\n").encode()


def open_key(blob: bytes, passphrase: bytes, vkey: str, name: str = KEY) -> bytes:
    """The key from ``seal_key``'s output for the key file ``name``; IntegrityError if the
    passphrase is wrong, the file was altered, it belongs to another log than ``vkey``, or it
    holds the other key."""
    try:
        doc = json.loads(blob)
        if doc["format"] != KEY_FORMAT or doc["kdf"]["name"] != "scrypt":
            raise ValueError("unknown key backup format")
        params = {k: int(doc["kdf"][k]) for k in ("n", "r", "p")}
        salt = base64.b64decode(doc["kdf"]["salt"], validate=True)
        nonce = base64.b64decode(doc["nonce"], validate=True)
        sealed = base64.b64decode(doc["ciphertext"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{name}: not a key backup: {exc}") from exc
    if doc.get("vkey") != vkey:
        raise IntegrityError(f"{name}: the key belongs to another log than this backup's")
    key = Scrypt(salt=salt, length=32, **params).derive(passphrase)
    try:
        return AESGCM(key).decrypt(nonce, sealed, _AAD[name] + vkey.encode())
    except InvalidTag:
        raise IntegrityError(
            f"{name}: wrong passphrase, or the file was altered (or holds another key)"
        ) from None


# -- PostgreSQL client tools ----------------------------------------------------------------------


def _tool_major(path: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"\)\s+(\d+)", out)
    return int(m[1]) if m else None


def _pgserver_bin() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def find_pg_tool(name: str, server_major: int, at_least: int = 0) -> tuple[Path, int]:
    """A PostgreSQL client tool (pg_dump, pg_restore) for a server of ``server_major``: one of
    the same major version if any is installed (system or the pgserver wheel), else the newest
    newer one; never one older than the server or than ``at_least``. ConfigError if none."""
    candidates = [Path(f"/usr/lib/postgresql/{server_major}/bin/{name}")]
    pgbin = _pgserver_bin()
    if pgbin is not None:
        candidates.append(pgbin / name)
    which = shutil.which(name)
    if which:
        candidates.append(Path(which))
    found: list[tuple[int, Path]] = []
    for path in candidates:
        if path.is_file():
            major = _tool_major(path)
            if major is not None and major >= max(server_major, at_least):
                found.append((major, path))
    exact = [(m, p) for m, p in found if m == server_major]
    if exact:
        return exact[0][1], exact[0][0]
    if found:
        major, path = max(found)
        return path, major
    raise ConfigError(
        f"no {name} for PostgreSQL {server_major} found (looked at "
        + ", ".join(str(c) for c in candidates)
        + f"): install the PostgreSQL {server_major} client tools"
    )


def libpq_target(dsn: str) -> tuple[str, dict[str, str]]:
    """(DSN without its password, environment for a libpq tool): the password travels in
    ``PGPASSWORD``, never on a command line that ``ps`` shows."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    env = dict(os.environ)
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn, env
    env["PGPASSWORD"] = unquote(parts.password)
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{user}@{host}" if user else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), env


_REFERENCED = (
    "SELECT sha256 FROM evidence WHERE disposed_at IS NULL"
    " UNION SELECT r.sha256 FROM renditions r JOIN evidence e ON e.id = r.evidence_id"
    " WHERE e.disposed_at IS NULL"
)


_REFERENCED_KEYS = (
    "SELECT x.sha256, encode(k.object_id, 'hex') AS oid FROM ("
    " SELECT sha256 FROM evidence WHERE disposed_at IS NULL"
    " UNION SELECT r.sha256 FROM renditions r JOIN evidence e ON e.id = r.evidence_id"
    " WHERE e.disposed_at IS NULL) x LEFT JOIN object_keys k ON k.sha256 = x.sha256"
)


def object_rel(sha256: str, object_id: str | None = None) -> str:
    """Where content lives relative to the store root: plain, or sealed with this object id."""
    if object_id is None:
        return f"{OBJECTS}/sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"
    return f"{SEALED}/sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}.{object_id}"


async def referenced(conn: Conn) -> list[str]:
    """The store paths of every object the database needs: originals not disposed of and their
    renditions, each plain or sealed (sealed when it has an ``object_keys`` row)."""
    if await conn.fetchval("SELECT to_regclass('object_keys') IS NOT NULL"):
        rows = await conn.fetch(_REFERENCED_KEYS)
        return [object_rel(r["sha256"], r["oid"]) for r in rows]
    return [object_rel(r["sha256"]) for r in await conn.fetch(_REFERENCED)]
