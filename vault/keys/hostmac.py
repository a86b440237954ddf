"""The host's MAC key: authenticators that a database insider cannot make.

The database is not trusted (DESIGN §7): not its superuser, not the service's own role. What
proves history or decides access is therefore bound to the ledger by a secret kept on the
service host beside the signing key, never in PostgreSQL. Two uses, each with its own key
derived from the one secret (HMAC-SHA256 with a fixed label), so a tag of one kind is never
accepted as the other:

- **batch authenticators**: each batch the sequencer commits carries
  ``batch(first, leaves, size, root)`` over its first index, its leaf hashes and the tree it
  leaves; the checkpointer signs a tree only if it is the tree of an authenticated batch, and
  fsck names the first entry whose leaf is not the authenticated one.
- **row tags**: every row that decides access or points at bytes carries
  ``row(table, key, values, idx)`` over its table, key, bound values and the index of the ledger
  entry that set it; a read that cannot verify it fails closed.

Guarantees: the key file is created once, mode 0600, in a 0700 folder, never overwritten; tags
are deterministic (the same inputs give the same tag in every process) and compared in constant
time. ``check_row_memo`` remembers, per process and bounded, a fingerprint of the column values
each tag was verified for: a keyed BLAKE2b-128 (a key drawn per process, never stored) of their
MessagePack encoding and their Python types. A row read again with the same fingerprint under that
tag is not hashed again (the tag is unforgeable, and another value with the same fingerprint
cannot be found without the per-process key); any other value is checked in full.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import itertools
import json
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from vault.errors import ConfigError, IntegrityError
from vault.keys.files import create_once

SECRET_BYTES = 32
_BATCH_LABEL = b"evidence-vault batch authenticator v1"
_ROW_LABEL = b"evidence-vault row tag v1"
_VERIFIED_MAX = 1 << 18
"""Tags remembered by ``check_row_memo``; beyond this the oldest quarter is forgotten."""
_FINGERPRINT_BYTES = 16
_KINDS_MAX = 1 << 12
"""Distinct combinations of column types numbered for fingerprints (a row whose types are not
among them is always checked in full)."""
_pack: Callable[[object], bytes] = msgspec.msgpack.Encoder(decimal_format="number").encode
"""Decimals as floats: no row with either verifies, so neither can pass for a verified string."""


class RowTampered(IntegrityError):
    """A row that decides access or serves bytes does not carry a valid tag: it was changed
    outside the service. Nothing of it is used; investigate with `evault ledger fsck --state`."""

    slug = "state-tampered"
    title = "Stored state does not verify"

    def __init__(self, table: str, key: Sequence[object], detail: str = "") -> None:
        self.table = table
        self.key = tuple(str(k) for k in key)
        what = f"{table} row {'/'.join(self.key)}"
        super().__init__(f"{what} does not verify{': ' + detail if detail else ''}")


def _plain(value: object) -> object:
    """A JSON value for ``value``: one spelling per value, whatever type the driver returned."""
    kind = type(value)
    if kind is str or kind is int or value is None or kind is bool:  # the common case, fast
        return value
    if kind is dict:
        return {str(k): _plain(v) for k, v in value.items()}  # type: ignore[attr-defined]
    if kind is datetime:
        return _instant(value)  # type: ignore[arg-type]
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, datetime):
        return _instant(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "hex:" + bytes(value).hex()
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)  # type: ignore[type-var]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    raise TypeError(f"row tags do not take {type(value).__name__}")


def _instant(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("row tags take aware datetimes only")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def row_message(table: str, key: Sequence[object], values: Mapping[str, object], idx: int) -> bytes:
    """The exact bytes a row tag is computed over: canonical JSON of
    ``[table, [key...], {values, keys sorted}, idx]`` (no spaces, UTF-8, not ASCII-escaped).
    Built directly where every value is a common scalar (the usual row), else through
    ``json.dumps``; both give the same bytes (tested against each other)."""
    fast = _fast_message(table, key, values, int(idx))
    if fast is not None:
        return fast
    doc = [table, [_plain(k) for k in key], _plain(values), int(idx)]
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class _NotSimple(Exception):
    """A value the direct message builder leaves to ``json.dumps`` (``_plain``)."""


def _simple(value: object) -> object:
    """``value`` as the JSON value ``_plain`` gives, if it is a common scalar or a list of them
    (strings, integers, None, instants, UUIDs); else ``_NotSimple``."""
    kind = type(value)
    if kind is str or kind is int or value is None:
        return value
    if kind is datetime:
        when: datetime = value  # type: ignore[assignment]
        if when.tzinfo is UTC:
            return when.isoformat(timespec="microseconds")
        return _instant(when)
    if kind is list or kind is tuple:
        return [_simple(v) for v in value]  # type: ignore[attr-defined]
    if isinstance(value, uuid.UUID):
        return str(value)
    raise _NotSimple


_encode_sorted: Callable[[object], bytes] = msgspec.json.Encoder(order="sorted").encode
"""Compact JSON, object keys sorted, UTF-8 unescaped: the bytes ``json.dumps`` gives with
``sort_keys=True, separators=(",", ":"), ensure_ascii=False`` for these values (tested)."""


def _fast_message(
    table: str, key: Sequence[object], values: Mapping[str, object], idx: int
) -> bytes | None:
    try:
        if type(table) is not str:
            return None
        fields: dict[str, object] = {}
        for name, value in values.items():
            kind = type(value)
            # str, int, None and UUIDs go to the encoder as they are (it writes a UUID as
            # str() does); instants in UTC are the other common value
            if kind is str or kind is int or value is None or kind is uuid.UUID:
                fields[name] = value
            elif kind is datetime and value.tzinfo is UTC:  # type: ignore[attr-defined]
                fields[name] = value.isoformat(timespec="microseconds")  # type: ignore[attr-defined]
            else:
                fields[name] = _simple(value)
        doc = [table, [_simple(k) for k in key], fields, idx]
        return _encode_sorted(doc)
    except (_NotSimple, msgspec.EncodeError, TypeError, ValueError):
        return None  # the general path decides (or raises the same error)


class HostMac:
    """Batch authenticators and row tags under one host secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != SECRET_BYTES:
            raise ValueError(f"the host MAC secret is {SECRET_BYTES} bytes")
        self._batch_key = hmac.digest(secret, _BATCH_LABEL, "sha256")
        self._row_key = hmac.digest(secret, _ROW_LABEL, "sha256")
        # tag -> fingerprint of the raw values it was verified for (``_fingerprint``)
        self._verified: dict[bytes, bytes] = {}
        self._memo_key = secrets.token_bytes(32)
        self._kinds: dict[tuple[type, ...], bytes] = {}  # the types of a raw row, numbered

    @classmethod
    def generate(cls) -> HostMac:
        return cls(secrets.token_bytes(SECRET_BYTES))

    # -- batches -------------------------------------------------------------------------

    def batch(self, first: int, leaves: bytes, size: int, root: bytes) -> bytes:
        """The authenticator of a batch: entries ``first .. first+len(leaves)//32-1`` with these
        concatenated leaf hashes, leaving a tree of ``size`` leaves with ``root``."""
        if len(leaves) % 32:
            raise ValueError("leaf hashes and root are 32-byte hashes")
        return self.batch_of_digest(
            first, len(leaves) // 32, hashlib.sha256(leaves).digest(), size, root
        )

    def batch_ok(self, tag: bytes, first: int, leaves: bytes, size: int, root: bytes) -> bool:
        return hmac.compare_digest(tag, self.batch(first, leaves, size, root))

    def batch_of_digest(
        self, first: int, count: int, leaves_sha256: bytes, size: int, root: bytes
    ) -> bytes:
        """:meth:`batch` from the SHA-256 of the concatenated leaf hashes and their ``count``
        (the same tag): what checks a batch's place in the tree without reading its leaves."""
        if len(leaves_sha256) != 32 or len(root) != 32:
            raise ValueError("leaf hashes and root are 32-byte hashes")
        head = b"%d %d %d\n" % (first, count, size)
        return hmac.digest(self._batch_key, head + leaves_sha256 + root, "sha256")

    # -- rows ----------------------------------------------------------------------------

    def row(
        self, table: str, key: Sequence[object], values: Mapping[str, object], idx: int
    ) -> bytes:
        """The tag of a row of ``table`` with primary ``key``, bound ``values`` and the ledger
        index ``idx`` of the entry that set them."""
        return hmac.digest(self._row_key, row_message(table, key, values, idx), "sha256")

    def check_row(
        self,
        tag: bytes | None,
        table: str,
        key: Sequence[object],
        values: Mapping[str, object],
        idx: int,
    ) -> None:
        """Return if ``tag`` is the row's tag; raise :class:`RowTampered` otherwise (also for
        a value no tag is made of: a column whose type was changed, a naive time)."""
        try:
            expected = self.row(table, key, values, idx)
        except (TypeError, ValueError) as exc:
            raise RowTampered(table, key, f"a value of an unexpected kind: {exc}") from None
        if tag is None or not hmac.compare_digest(bytes(tag), expected):
            raise RowTampered(table, key)

    def check_row_memo(
        self,
        tag: bytes | None,
        raw: tuple[object, ...],
        parts: Callable[[], tuple[str, Sequence[object], Mapping[str, object], int | None]],
        *,
        remember: bool = True,
    ) -> None:
        """:meth:`check_row` for a row read as ``raw`` (its table and every column its tag
        covers, as read): ``parts`` gives (table, key, values, idx) and is called only if this
        tag was not verified before for ``raw`` equal in value and type (so ``1`` is not
        ``True``). An ``idx`` of None fails. ``remember=False``: always check in full, and do
        not remember (for rows a caller remembers in a larger unit)."""
        seen = None if tag is None or not remember else self.fingerprint(raw)
        if seen is not None and self._verified.get(tag) == seen:  # type: ignore[arg-type]
            return
        table, key, values, idx = parts()
        if idx is None:
            raise RowTampered(table, key, "it names no ledger entry")
        self.check_row(tag, table, key, values, int(idx))
        if seen is None:
            return
        memo = self._verified
        if len(memo) >= _VERIFIED_MAX:  # forget the oldest quarter (dicts keep insertion order)
            for old in list(itertools.islice(memo, _VERIFIED_MAX // 4)):
                del memo[old]
        memo[bytes(tag)] = seen  # type: ignore[arg-type]

    def fingerprint(self, raw: tuple[object, ...]) -> bytes | None:
        """A keyed BLAKE2b of ``raw``'s MessagePack encoding and of its values' types (numbered
        once per combination), or None for a value MessagePack does not take. The key is drawn
        per process and never leaves it: two values have the same fingerprint only if they
        encode alike, which no one without the key can arrange for different values."""
        kinds = tuple(map(type, raw))
        number = self._kinds.get(kinds)
        if number is None:
            if len(self._kinds) >= _KINDS_MAX:
                return None
            number = self._kinds[kinds] = len(self._kinds).to_bytes(4, "big")
        try:
            packed = _pack(raw)
        except (TypeError, ValueError, msgspec.EncodeError):
            return None
        digest = hashlib.blake2b(packed, key=self._memo_key, digest_size=_FINGERPRINT_BYTES)
        digest.update(number)
        return digest.digest()


def create_mac_key(path: Path) -> tuple[HostMac, bool]:
    """Return (mac, created): the key at ``path``, generated there if absent (never replaced)."""
    created = create_once(path, secrets.token_bytes(SECRET_BYTES).hex() + "\n")
    return load_mac_key(path), created


def load_mac_key(path: Path) -> HostMac:
    """Load the MAC key; ConfigError naming the path and what to do if missing or malformed."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: the host MAC key is missing; `evault init` creates it (an existing key is "
            "never replaced)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the host MAC key: {exc}") from exc
    try:
        secret = bytes.fromhex(text)
        return HostMac(secret)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a host MAC key ({SECRET_BYTES} bytes in hex)") from exc
