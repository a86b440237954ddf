"""Key-encryption keys (KEKs): where they live and how they wrap data keys.

A KEK is 32 random bytes with an id such as ``kek-20261126-1a2b3c4d``. KEKs are kept outside the
database and the blob store, so a copy of either (or of their backups) reveals no content.

Wrapping (this is the specification). A data key (DEK, 32 bytes) is wrapped with AES-256-GCM::

    blob = 0x01 || nonce (12 random bytes) || AES-256-GCM(KEK, nonce, DEK, aad) (32 + 16 bytes)
    aad  = b"evidence-vault dek wrap v1\\0" || 0x01 || uint8 len(kek id) || kek id (ASCII)
           || uint16 len(object id) || object id

61 bytes in all. AES-GCM rather than AES-KW (RFC 3394): AES-KW has no associated data, so
binding the KEK id and the object would need a second primitive; GCM authenticates both in one
step. Random 96-bit nonces are safe for 2**32 wraps per KEK (NIST SP 800-38D) -- one wrap per
object between rotations is far below that. A blob moved to another object, relabelled with
another KEK id, or altered, fails with ``IntegrityError``: ``unwrap`` never returns a wrong key.

Sources (both implement ``KekStore``):

* ``FileKekStore(directory)``, e.g. ``<data>/keys/kek/`` (0700)::

      CURRENT                 the id of the current KEK ("<id>\\n", 0600), replaced atomically
      <id>.key                base64 of the key + "\\n", 0600; created once, never overwritten
      retired/<id>.key        a retired KEK, moved here by ``retire``

  ``retire`` moves rather than deletes: database backups taken before a rotation still hold data
  keys wrapped by the old KEK, and a premature retirement stays recoverable. A retired KEK is never
  used (``get`` refuses it). Destroy it (``destroy_retired``) once no backup needs it. Key files
  or folders readable by group or others are refused (``ConfigError``), like ssh does.
* ``CommandKekStore(argv)`` for HSM/KMS setups: runs ``argv`` plus a sub-command, without a
  shell, with a timeout::

      argv current        -> stdout: "<id>\\n"            the current KEK's id
      argv get <id>       -> stdout: "<base64 key>\\n"    the 32-byte KEK
      argv create         -> stdout: "<id>\\n"            a new KEK, which becomes current
      argv retire <id>    -> exit 0

  Exit status 3 means "no such key" (``ConfigError``); another non-zero status or a timeout is
  ``Unavailable`` (retry later); a command that cannot start or prints malformed output is
  ``ConfigError``. stdout is never put into messages.

Guarantees: ``create`` makes the new KEK current at once, so nothing new is wrapped by an older
KEK afterwards. Ids are checked (``[A-Za-z0-9][A-Za-z0-9._:-]{0,127}``) before they touch a path
or a command line. KEKs are cached in memory by id (they never change); ``current`` re-reads the
pointer (the file store every call, the command store after ``current_ttl`` seconds).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import stat
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.errors import ConfigError, Conflict, IntegrityError, Unavailable

__all__ = [
    "WRAPPED_SIZE",
    "CommandKekStore",
    "FileKekStore",
    "Kek",
    "KekStore",
    "check_kek_id",
    "new_kek_id",
]

KEK_SIZE = 32
WRAPPED_SIZE = 1 + 12 + 32 + 16
_WRAP_VERSION = 1
_WRAP_LABEL = b"evidence-vault dek wrap v1\0"
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_NO_SUCH_KEY = 3
_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def check_kek_id(kek_id: str) -> str:
    """Return ``kek_id`` if well formed, else ``IntegrityError`` (ids come from stored rows)."""
    if not isinstance(kek_id, str) or _ID_RE.fullmatch(kek_id) is None:
        raise IntegrityError("malformed key-encryption key id")
    return kek_id


def new_kek_id(now: datetime | None = None) -> str:
    """A fresh id: ``kek-<UTC date YYYYMMDD>-<8 random hex>``."""
    return f"kek-{(now or datetime.now(UTC)):%Y%m%d}-{secrets.token_hex(4)}"


def _aad(kek_id: str, object_id: bytes) -> bytes:
    kid = kek_id.encode("ascii")
    return (
        _WRAP_LABEL
        + struct.pack(">BB", _WRAP_VERSION, len(kid))
        + kid
        + struct.pack(">H", len(object_id))
        + object_id
    )


@dataclass(frozen=True, slots=True)
class Kek:
    """A key-encryption key. The key bytes never appear in ``repr``."""

    kek_id: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_kek_id(self.kek_id)
        if len(self.key) != KEK_SIZE:
            raise ConfigError(f"key-encryption key {self.kek_id} is not {KEK_SIZE} bytes")

    def wrap(self, dek: bytes, object_id: bytes) -> bytes:
        """Wrap a 32-byte DEK for the object ``object_id`` (1..65535 bytes)."""
        if len(dek) != 32 or not 1 <= len(object_id) <= 0xFFFF:
            raise ValueError("a data key is 32 bytes; an object id 1..65535 bytes")
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.key).encrypt(nonce, dek, _aad(self.kek_id, object_id))
        return bytes([_WRAP_VERSION]) + nonce + sealed

    def unwrap(self, blob: bytes, object_id: bytes) -> bytes:
        """Return the DEK; ``IntegrityError`` unless ``blob`` was wrapped by this KEK for
        exactly this object."""
        if len(blob) != WRAPPED_SIZE or blob[0] != _WRAP_VERSION or not object_id:
            raise IntegrityError("wrapped data key is malformed")
        try:
            return AESGCM(self.key).decrypt(blob[1:13], blob[13:], _aad(self.kek_id, object_id))
        except InvalidTag:
            raise IntegrityError(
                f"wrapped data key does not authenticate under {self.kek_id} for this object"
            ) from None


class KekStore(Protocol):
    """Where KEKs come from. Implementations cache keys by id; all methods may block."""

    def current(self) -> Kek:
        """The KEK new data keys are wrapped with; ``ConfigError`` if there is none."""

    def get(self, kek_id: str) -> Kek:
        """The KEK with this id; ``ConfigError`` if absent or retired, ``IntegrityError`` if
        the id is malformed."""

    def create(self) -> Kek:
        """Create a new KEK and make it current."""

    def retire(self, kek_id: str) -> None:
        """Stop using ``kek_id``. The caller must first check that no wrapped key uses it
        (``vault.storage.keyring.retire`` does); retiring the current KEK is a ``Conflict``."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_private(path: Path, what: str) -> str | None:
    """Text of a 0600 regular file (no symlink); None if absent; ConfigError if too open."""
    try:
        fd = os.open(path, _OPEN_READ)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open the {what}: {os.strerror(exc.errno or 0)}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
            raise ConfigError(f"{path}: the {what} must be a regular file of mode 0600")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(4096)
    except OSError as exc:
        raise Unavailable(f"{path}: cannot read the {what}: {os.strerror(exc.errno or 0)}") from exc
    finally:
        os.close(fd)
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the {what} is not ASCII text") from None


def _write_new(path: Path, text: str) -> Path:
    """Write ``text`` to a fresh 0600 temp file beside ``path``, fsynced; return the temp path."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, _OPEN_NEW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def _decode_key(kek_id: str, text: str, where: str) -> Kek:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: key {kek_id} is not base64") from None
    if len(key) != KEK_SIZE:
        raise ConfigError(f"{where}: key {kek_id} is not {KEK_SIZE} bytes")
    return Kek(kek_id, key)


class FileKekStore:
    """KEKs as files in one 0700 directory (layout in the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._cache: dict[str, Kek] = {}

    def _path(self, kek_id: str) -> Path:
        return self.directory / f"{check_kek_id(kek_id)}.key"

    def _check_dir(self, create: bool) -> None:
        d = self.directory
        if create and not d.is_dir():
            missing = [p for p in (d, *d.parents) if not p.exists()]
            for p in reversed(missing):
                p.mkdir(0o700, exist_ok=True)
                p.chmod(0o700)
                _fsync_dir(p.parent)
        try:
            st = d.lstat()
        except FileNotFoundError:
            raise ConfigError(f"{d}: key directory missing (is the key volume mounted?)") from None
        if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o077:
            raise ConfigError(f"{d}: the key directory must be a real directory of mode 0700")

    def current(self) -> Kek:
        self._check_dir(create=False)
        kek_id = _read_private(self.directory / "CURRENT", "current-key pointer")
        if kek_id is None:
            raise ConfigError(f"{self.directory}: no current key-encryption key; create one")
        return self.get(kek_id)

    def get(self, kek_id: str) -> Kek:
        path = self._path(kek_id)
        cached = self._cache.get(kek_id)
        if cached is not None:
            return cached
        self._check_dir(create=False)
        text = _read_private(path, "key-encryption key")
        if text is None:
            state = "retired" if (self.directory / "retired" / path.name).exists() else "missing"
            raise ConfigError(f"{self.directory}: key-encryption key {kek_id} is {state}")
        kek = _decode_key(kek_id, text, str(path))
        self._cache[kek_id] = kek
        return kek

    def create(self) -> Kek:
        self._check_dir(create=True)
        for _ in range(3):
            kek = Kek(new_kek_id(), secrets.token_bytes(KEK_SIZE))
            path = self._path(kek.kek_id)
            tmp = _write_new(path, base64.b64encode(kek.key).decode("ascii") + "\n")
            try:
                os.link(tmp, path)  # fails if the name exists: a key is never overwritten
            except FileExistsError:
                continue
            finally:
                tmp.unlink()
            _fsync_dir(self.directory)
            pointer = self.directory / "CURRENT"
            tmp = _write_new(pointer, kek.kek_id + "\n")
            tmp.replace(pointer)
            _fsync_dir(self.directory)
            self._cache[kek.kek_id] = kek
            return kek
        raise Conflict("could not pick an unused key id")

    def ensure(self) -> Kek:
        """The current KEK, creating the first one in an empty (or new) directory only."""
        if (self.directory / "CURRENT").exists():
            return self.current()
        if self.directory.exists() and any(
            p.suffix == ".key" or p.name == "retired" for p in self.directory.iterdir()
        ):
            raise ConfigError(
                f"{self.directory}: keys exist but CURRENT is missing; write the current id there"
            )
        return self.create()

    def ids(self) -> list[str]:
        """Ids of the KEKs that are not retired, sorted."""
        self._check_dir(create=False)
        return sorted(p.stem for p in self.directory.glob("*.key") if _ID_RE.fullmatch(p.stem))

    def retire(self, kek_id: str) -> None:
        path = self._path(kek_id)
        if self.current().kek_id == kek_id:
            raise Conflict(f"{kek_id} is the current key-encryption key; rotate first")
        retired = self.directory / "retired"
        if not retired.is_dir():
            retired.mkdir(0o700, exist_ok=True)
            retired.chmod(0o700)
            _fsync_dir(self.directory)
        try:
            os.link(path, retired / path.name)  # never replace a file already there
        except FileNotFoundError:
            raise ConfigError(f"{self.directory}: key-encryption key {kek_id} is missing") from None
        except FileExistsError:
            raise Conflict(f"{kek_id} is already in {retired}") from None
        _fsync_dir(retired)
        path.unlink()
        _fsync_dir(self.directory)
        self._cache.pop(kek_id, None)

    def destroy_retired(self, kek_id: str) -> None:
        """Delete a retired KEK for good (crypto-shredding what only it still wraps)."""
        (self.directory / "retired" / self._path(kek_id).name).unlink()
        _fsync_dir(self.directory / "retired")


class CommandKekStore:
    """KEKs from an external command (protocol in the module docstring)."""

    def __init__(
        self, argv: Sequence[str], timeout: float = 10.0, current_ttl: float = 60.0
    ) -> None:
        if not argv:
            raise ConfigError("key command: argv is empty")
        self.argv = list(argv)
        self.timeout = timeout
        self.current_ttl = current_ttl
        self._cache: dict[str, Kek] = {}
        self._current: tuple[float, str] | None = None

    def _run(self, *args: str) -> str:
        what = f"key command {self.argv[0]!r} {args[0]}"
        try:
            proc = subprocess.run(
                [*self.argv, *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise Unavailable(f"{what}: no answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise ConfigError(f"{what}: cannot run: {os.strerror(exc.errno or 0)}") from exc
        err = proc.stderr.decode("utf-8", "replace").strip()[-200:]
        if proc.returncode == _NO_SUCH_KEY:
            raise ConfigError(f"{what}: no such key ({err})")
        if proc.returncode != 0:
            raise Unavailable(f"{what}: exit status {proc.returncode} ({err})")
        try:
            return proc.stdout.decode("ascii").strip()
        except UnicodeDecodeError:
            raise ConfigError(f"{what}: output is not ASCII") from None

    def _answer_id(self, text: str, sub: str) -> str:
        if _ID_RE.fullmatch(text) is None:
            raise ConfigError(f"key command {self.argv[0]!r} {sub}: did not print a key id")
        return text

    def current(self) -> Kek:
        now = time.monotonic()
        if self._current is None or now - self._current[0] > self.current_ttl:
            self._current = (now, self._answer_id(self._run("current"), "current"))
        return self.get(self._current[1])

    def get(self, kek_id: str) -> Kek:
        cached = self._cache.get(check_kek_id(kek_id))
        if cached is None:
            cached = _decode_key(kek_id, self._run("get", kek_id), f"key command {self.argv[0]!r}")
            self._cache[kek_id] = cached
        return cached

    def create(self) -> Kek:
        kek_id = self._answer_id(self._run("create"), "create")
        self._current = (time.monotonic(), kek_id)
        return self.get(kek_id)

    def retire(self, kek_id: str) -> None:
        if self.current().kek_id == check_kek_id(kek_id):
            raise Conflict(f"{kek_id} is the current key-encryption key; rotate first")
        self._run("retire", kek_id)
        self._cache.pop(kek_id, None)
