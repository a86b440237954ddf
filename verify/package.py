"""Evidence packages: the exact format (single source of truth) and offline verification.

A package is a folder, or a zip of its members (at the root, or all in one folder)::

    manifest.json            canonical JSON (verify.canonical), see :func:`parse_manifest`
    manifest.sig             signed note by the LOG key; text = :func:`manifest_sig_text`
    vkey                     the log's vkey + "\\n" (informational, never trusted)
    checkpoint               the signed checkpoint note; its size == manifest checkpoint_size
    entries/<i>.json         ledger entry i, byte for byte as logged
    openings/<i>.json        optional; :func:`format_openings` of the disclosed commitments
    proofs/<i>.tlog-proof    c2sp.org/tlog-proof@v1 for entry i; checkpoint == `checkpoint`
    consistency/<m>.proof    :func:`format_consistency_proof`: from size m to checkpoint_size
    files/<sha256>.<ext>     originals and renditions; ext is [a-z0-9]{1,16}
    report.html              optional, for people (hash and size in the manifest)
    timestamp.tsr            optional; RFC 3161 TimeStampResp (DER) of the checkpoint: its
                             message imprint is SHA-256 of the checkpoint note's body
    cosignatures             optional; witnesses' cosignature/v1 note signature lines on the
                             checkpoint (verify.cosignature)

``<i>``/``<m>`` are decimals without leading zeros. Nothing else may be in a package. The
manifest object has exactly the keys ``format`` (:data:`FORMAT`), ``origin``, ``case``
(``{"id", "label"}``, strings), ``exported_by``, ``exported_at`` (RFC 3339), ``checkpoint_size``,
``entries`` (strictly ascending indexes < checkpoint_size), ``files`` (objects with exactly
``path, sha256, size, kind, evidence_id, entry``; unique paths; ``path ==
files/<sha256>.<ext>``; ``kind`` in :data:`FILE_KINDS`; ``evidence_id`` a lowercase UUID;
``entry`` in ``entries``) and optionally ``report`` (``{"path": "report.html", "sha256",
"size"}``) and ``consistency`` (``[{"from_size": m, "proof_path": "consistency/<m>.proof"}]``,
strictly ascending, 0 < m < checkpoint_size). An original is recorded by an ``acquired`` entry
with ``sha256`` and ``size`` equal to the file's; a rendition by a ``derived`` entry with
``output_sha256`` equal to its hash. Where such an entry also has ``evidence_id``,
``rendition`` (the rendition kind), ``output_size`` or ``input_sha256`` (checked against the
original of the same evidence in the package), they must agree too.

A redacted copy (kind ``redacted``) is recorded by a ``redacted`` entry (the fields of a
``derived`` one, plus ``original_entry`` and ``spec_sha256``); a package may carry it without
its original. Its ``original_entry`` must be listed too, be an ``acquired`` entry of the same
evidence whose ``sha256`` is the copy's ``input_sha256``, and be proven like every entry. A
``redaction-spec`` file (the spec's canonical JSON) is listed with the ``redacted`` entry of
its copy, whose ``spec_sha256`` must be its hash. The report says plainly when an original is
not included.

Guarantees of :func:`verify.package_checks.verify_package`: the verdict is ``ok`` only if every
signature is by the *given* key, every listed entry is proven in the checkpoint at its own
index, every disclosed opening matches, every listed file exists with the listed size and
SHA-256 and is recorded by its entry, nothing unlisted is present, and (with ``since``) the
checkpoint extends the one seen before. Zip members with absolute paths, ``..``, backslashes,
duplicates or symlink modes, and symlinks or special files in a folder, are ``malformed``;
nothing is extracted to disk.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import threading
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from verify.canonical import canonical_json, parse_canonical
from verify.encoding import b64decode_strict, b64encode
from verify.errors import MalformedError
from verify.merkle import HASH_SIZE
from verify.note import Signer, Verifier, sign_note

__all__ = [
    "CHECKPOINT_PATH", "COSIGNATURES_PATH", "FILE_KINDS", "FORMAT", "MANIFEST_PATH",
    "MANIFEST_SIG_HEADER",
    "MANIFEST_SIG_PATH", "REPORT_PATH", "TIMESTAMP_PATH", "VKEY_PATH", "Manifest",
    "PackageFile", "Source", "consistency_path", "entry_path", "format_consistency_proof",
    "format_openings", "manifest_bytes", "manifest_sig_text", "opening_path",
    "parse_consistency_proof", "parse_manifest", "parse_openings", "proof_path",
    "sign_manifest", "vkey_file_text",
]  # fmt: skip

FORMAT = "evidence-vault-package/1"
MANIFEST_PATH, MANIFEST_SIG_PATH, VKEY_PATH = "manifest.json", "manifest.sig", "vkey"
CHECKPOINT_PATH, REPORT_PATH, TIMESTAMP_PATH = "checkpoint", "report.html", "timestamp.tsr"
COSIGNATURES_PATH = "cosignatures"
MANIFEST_SIG_HEADER = "evidence-vault package manifest v1"
FILE_KINDS = frozenset(
    {"original", "proxy", "poster", "clip", "fingerprint", "redacted", "redaction-spec"}
)
MAX_MANIFEST_BYTES = 64 << 20
MAX_SMALL_BYTES = 16 << 20  # any other non-`files/` member
READ_CHUNK = 1 << 20  # fits in L2 next to the hash state: faster than bigger blocks
HASH_THREADS = 2

_HEX64 = re.compile(r"[0-9a-f]{64}")
_FILE = re.compile(r"files/([0-9a-f]{64})\.[a-z0-9]{1,16}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")


def entry_path(i: int) -> str:
    return f"entries/{i}.json"


def opening_path(i: int) -> str:
    return f"openings/{i}.json"


def proof_path(i: int) -> str:
    return f"proofs/{i}.tlog-proof"


def consistency_path(m: int) -> str:
    return f"consistency/{m}.proof"


@dataclass(frozen=True)
class PackageFile:
    """One ``files`` item of the manifest."""

    path: str
    sha256: str
    size: int
    kind: str
    evidence_id: str
    entry: int


@dataclass(frozen=True)
class Manifest:
    """manifest.json, parsed. ``report`` is (path, sha256, size); ``consistency`` the sizes
    m that have a proof at ``consistency_path(m)``."""

    origin: str
    case_id: str
    case_label: str
    exported_by: str
    exported_at: str
    checkpoint_size: int
    entries: tuple[int, ...]
    files: tuple[PackageFile, ...]
    report: tuple[str, str, int] | None = None
    consistency: tuple[int, ...] = ()
    timestamp: tuple[str, str, int] | None = None  # (path, sha256, size) of timestamp.tsr
    cosignatures: tuple[str, str, int] | None = None  # (path, sha256, size) of cosignatures


def manifest_bytes(m: Manifest) -> bytes:
    """The canonical manifest.json for ``m``; :class:`MalformedError` if ``m`` is invalid."""
    obj: dict[str, Any] = {
        "format": FORMAT,
        "origin": m.origin,
        "case": {"id": m.case_id, "label": m.case_label},
        "exported_by": m.exported_by,
        "exported_at": m.exported_at,
        "checkpoint_size": m.checkpoint_size,
        "entries": list(m.entries),
        "files": [f.__dict__ for f in m.files],
    }
    if m.report is not None:
        obj["report"] = dict(zip(("path", "sha256", "size"), m.report, strict=True))
    if m.timestamp is not None:
        obj["timestamp"] = dict(zip(("path", "sha256", "size"), m.timestamp, strict=True))
    if m.cosignatures is not None:
        obj["cosignatures"] = dict(zip(("path", "sha256", "size"), m.cosignatures, strict=True))
    if m.consistency:
        obj["consistency"] = [
            {"from_size": s, "proof_path": consistency_path(s)} for s in m.consistency
        ]
    data = canonical_json(obj)
    if parse_manifest(data) != m:  # pragma: no cover - parse raises first
        raise MalformedError("manifest does not round-trip")
    return data


def _keys(obj: object, need: set[str], may: set[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise MalformedError(f"{where} is not an object")
    missing, extra = need - obj.keys(), obj.keys() - need - may
    if missing or extra:
        raise MalformedError(f"{where}: missing keys {sorted(missing)}, unknown {sorted(extra)}")
    return obj


def _int(v: object, where: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise MalformedError(f"{where} is not a non-negative integer")
    return v


def _str(v: object, where: str, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(v, str) or not v or (pattern is not None and not pattern.fullmatch(v)):
        raise MalformedError(f"{where} is not a valid string: {str(v)[:80]!r}")
    return v


def parse_manifest(data: bytes) -> Manifest:
    """Parse manifest.json strictly (see module docstring); raises :class:`MalformedError`."""
    o = _keys(
        parse_canonical(data, max_bytes=MAX_MANIFEST_BYTES),
        {"format", "origin", "case", "exported_by", "exported_at", "checkpoint_size"}
        | {"entries", "files"},
        {"report", "consistency", "timestamp", "cosignatures"},
        "manifest",
    )
    if o["format"] != FORMAT:
        raise MalformedError(f"manifest format is {o['format']!r}, want {FORMAT!r}")
    case = _keys(o["case"], {"id", "label"}, set(), "manifest case")
    size = _int(o["checkpoint_size"], "manifest checkpoint_size")
    entries = o["entries"]
    if not isinstance(entries, list):
        raise MalformedError("manifest entries is not a list")
    for n, i in enumerate(entries):
        if _int(i, f"manifest entries[{n}]") >= size or (n and i <= entries[n - 1]):
            raise MalformedError(f"manifest entries[{n}] = {i}: not ascending below {size}")
    files: list[PackageFile] = []
    for n, f in enumerate(o["files"] if isinstance(o["files"], list) else [None]):
        w = f"manifest files[{n}]"
        f = _keys(f, {"path", "sha256", "size", "kind", "evidence_id", "entry"}, set(), w)
        pf = PackageFile(
            _str(f["path"], f"{w}.path", _FILE),
            _str(f["sha256"], f"{w}.sha256", _HEX64),
            _int(f["size"], f"{w}.size"),
            _str(f["kind"], f"{w}.kind"),
            _str(f["evidence_id"], f"{w}.evidence_id", _UUID),
            _int(f["entry"], f"{w}.entry"),
        )
        if not pf.path.startswith(f"files/{pf.sha256}.") or pf.kind not in FILE_KINDS:
            raise MalformedError(f"{w}: path is not files/<sha256>.<ext> or kind is unknown")
        if pf.entry not in entries or any(g.path == pf.path for g in files):
            raise MalformedError(f"{w}: entry {pf.entry} not in entries, or path listed twice")
        files.append(pf)
    report = None
    if "report" in o:
        r = _keys(o["report"], {"path", "sha256", "size"}, set(), "manifest report")
        if r["path"] != REPORT_PATH:
            raise MalformedError(f"manifest report path is not {REPORT_PATH!r}")
        report = (REPORT_PATH, _str(r["sha256"], "report.sha256", _HEX64), _int(r["size"], "size"))
    stamp = None
    if "timestamp" in o:
        t = _keys(o["timestamp"], {"path", "sha256", "size"}, set(), "manifest timestamp")
        if t["path"] != TIMESTAMP_PATH:
            raise MalformedError(f"manifest timestamp path is not {TIMESTAMP_PATH!r}")
        stamp = (
            TIMESTAMP_PATH,
            _str(t["sha256"], "timestamp.sha256", _HEX64),
            _int(t["size"], "size"),
        )
    cosigs = None
    if "cosignatures" in o:
        c = _keys(o["cosignatures"], {"path", "sha256", "size"}, set(), "manifest cosignatures")
        if c["path"] != COSIGNATURES_PATH:
            raise MalformedError(f"manifest cosignatures path is not {COSIGNATURES_PATH!r}")
        cosigs = (
            COSIGNATURES_PATH,
            _str(c["sha256"], "cosignatures.sha256", _HEX64),
            _int(c["size"], "size"),
        )
    cons: list[int] = []
    if not isinstance(o.get("consistency", []), list):
        raise MalformedError("manifest consistency is not a list")
    for n, c in enumerate(o.get("consistency", [])):
        w = f"manifest consistency[{n}]"
        c = _keys(c, {"from_size", "proof_path"}, set(), w)
        m = _int(c["from_size"], f"{w}.from_size")
        if not 0 < m < size or (cons and m <= cons[-1]) or c["proof_path"] != consistency_path(m):
            raise MalformedError(f"{w}: from_size {m} out of order/range or wrong proof_path")
        cons.append(m)
    if "consistency" in o and not cons:
        raise MalformedError("manifest consistency is empty (leave the key out instead)")
    return Manifest(
        _str(o["origin"], "manifest origin"),
        _str(case["id"], "manifest case.id"),
        _str(case["label"], "manifest case.label"),
        _str(o["exported_by"], "manifest exported_by"),
        _str(o["exported_at"], "manifest exported_at", _RFC3339),
        size,
        tuple(entries),
        tuple(files),
        report,
        tuple(cons),
        stamp,
        cosigs,
    )


def manifest_sig_text(manifest: bytes) -> str:
    """The note text the log key signs for a manifest: header line, then its SHA-256 hex."""
    return f"{MANIFEST_SIG_HEADER}\n{hashlib.sha256(manifest).hexdigest()}\n"


def sign_manifest(manifest: bytes, signer: Signer) -> str:
    """manifest.sig for ``manifest`` (the exact bytes of manifest.json)."""
    return sign_note(manifest_sig_text(manifest), signer)


def format_openings(openings: dict[str, tuple[bytes, Any]]) -> bytes:
    """openings/<i>.json: ``{field: {"salt": base64 of 32 bytes, "value": value}}``."""
    return canonical_json({k: {"salt": b64encode(s), "value": v} for k, (s, v) in openings.items()})


def parse_openings(data: bytes, where: str) -> dict[str, tuple[bytes, Any]]:
    """Inverse of :func:`format_openings`; raises :class:`MalformedError` naming ``where``."""
    try:
        obj = parse_canonical(data, max_bytes=MAX_SMALL_BYTES)
        out = {}
        for k, o in obj.items():
            o = _keys(o, {"salt", "value"}, set(), f"opening {k!r}")
            out[k] = (b64decode_strict(_str(o["salt"], "salt"), f"salt of {k!r}"), o["value"])
    except MalformedError as exc:
        raise MalformedError(f"{where}: {exc}") from exc
    return out


def format_consistency_proof(hashes: Iterable[bytes]) -> bytes:
    """consistency/<m>.proof: one base64 hash per line, each line ending in ``\\n``."""
    return "".join(b64encode(h) + "\n" for h in hashes).encode("ascii")


def parse_consistency_proof(data: bytes, where: str) -> list[bytes]:
    """Inverse of :func:`format_consistency_proof`; :class:`MalformedError` naming the line."""
    text = data.decode("ascii", "replace")
    if text and not text.endswith("\n"):
        raise MalformedError(f"{where}: last line does not end with a newline")
    lines = text[:-1].split("\n") if text else []
    out = [b64decode_strict(line, f"{where} line {n + 1}") for n, line in enumerate(lines)]
    if any(len(h) != HASH_SIZE for h in out):
        raise MalformedError(f"{where}: want one 32-byte base64 hash per line")
    return out


class Source:
    """Read access to a folder or a zip; ``sizes`` maps each member path to its size."""

    def __init__(self, path: Path) -> None:
        self.sizes: dict[str, int] = {}
        self.unsafe: list[tuple[str, str]] = []
        self.zip: zipfile.ZipFile | None = None
        self.root, self.prefix = path, ""
        if path.is_dir():
            self._walk(path, "")
            return
        self.zip = zipfile.ZipFile(path)
        for info in self.zip.infolist():
            name, mode = info.filename, info.external_attr >> 16
            parts = name.rstrip("/").split("/")
            why = (
                "absolute path" if name.startswith("/") or re.match(r"[A-Za-z]:", name)
                else "'..', '.', empty or backslash in path"
                if any(p in ("", ".", "..") or "\\" in p for p in parts)
                else "symbolic link" if stat.S_ISLNK(mode)
                else "encrypted" if info.flag_bits & 1
                else "listed twice" if name in self.sizes else None
            )  # fmt: skip
            if why:
                self.unsafe.append((name, why))
            elif not info.is_dir():
                self.sizes[name] = info.file_size
        top = {n.split("/")[0] + "/" for n in self.sizes}  # a zipped folder: strip its name
        if MANIFEST_PATH not in self.sizes and len(top) == 1 and not self.unsafe:
            self.prefix = top.pop()
            self.sizes = {n.removeprefix(self.prefix): v for n, v in self.sizes.items()}

    def _walk(self, folder: Path, prefix: str) -> None:
        with os.scandir(folder) as it:
            for e in sorted(it, key=lambda e: e.name):
                name = prefix + e.name
                if e.is_symlink():
                    self.unsafe.append((name, "symbolic link"))
                elif e.is_dir(follow_symlinks=False):
                    self._walk(Path(e.path), name + "/")
                elif e.is_file(follow_symlinks=False):
                    self.sizes[name] = e.stat(follow_symlinks=False).st_size
                else:
                    self.unsafe.append((name, "not a regular file"))

    def open(self, name: str) -> io.RawIOBase | io.BufferedIOBase:
        if self.zip is not None:
            return cast(io.BufferedIOBase, self.zip.open(self.prefix + name))
        fd = os.open(self.root / name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        return os.fdopen(fd, "rb", buffering=0)

    def read(self, name: str, limit: int) -> bytes:
        if self.sizes[name] > limit:
            raise MalformedError(f"{name} is {self.sizes[name]} bytes, at most {limit} allowed")
        with self.open(name) as f:
            return f.read(limit + 1)[:limit]


_local = threading.local()


def hash_member(src: Source, name: str, limit: int, tick: Callable[[int], None]) -> tuple[int, str]:
    """(bytes read, SHA-256 hex) of member ``name``, reading at most ``limit + 1`` bytes."""
    buf = getattr(_local, "buf", None) or bytearray(READ_CHUNK)
    _local.buf = buf
    view, h, n = memoryview(buf), hashlib.sha256(), 0
    with src.open(name) as f:
        while n <= limit and (k := f.readinto(view)):
            h.update(view[:k])
            n += k
            tick(k)
    return n, h.hexdigest()


def vkey_file_text(verifier: Verifier) -> str:
    """The package's ``vkey`` member: the log's vkey and a newline."""
    return verifier.vkey + "\n"
