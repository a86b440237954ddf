"""The result of verifying a package: findings, per-item rows, the verdict, JSON and text.

A :class:`Finding` is one thing that does not hold, with a ``code`` (stable, for machines), a
``severity``, a ``where`` (a package path, or ``--since``) and a ``message`` that names what
failed and where, for people.

Guarantees:

* :attr:`PackageReport.verdict` is ``"ok"`` if and only if there is no finding of severity
  ``wrong-key``, ``tampered`` or ``malformed``. Otherwise the most serious one decides, in the
  order ``wrong-key`` (nothing in the package can be trusted against the key given) >
  ``tampered`` (something provably differs from what the log recorded) > ``malformed`` (the
  package is not in the exact format, or lacks what the check asked for).
* :data:`EXIT_CODES` maps verdicts to the exit codes of ``evault-verify``; :data:`EXIT_USAGE`
  is for usage and I/O errors, where no verdict was reached.
* :meth:`PackageReport.to_json` is deterministic for a given report (sorted keys).

Finding codes (severity): ``not-a-package``, ``unsafe-path``, ``unreadable``,
``manifest-invalid``, ``entry-noncanonical``, ``proof-invalid``, ``opening-invalid``,
``consistency-invalid``, ``since-no-proof`` (malformed); ``vkey-mismatch``, ``origin-mismatch``
(wrong-key); ``checkpoint-signature``, ``manifest-signature``, ``since-invalid`` (by the
exception: wrong-key, tampered or malformed); ``missing`` (tampered for listed items, malformed
for manifest.json, manifest.sig, vkey, checkpoint), ``unlisted``, ``manifest-edited``,
``checkpoint-mismatch``, ``proof-index``, ``proof-checkpoint``, ``inclusion``,
``opening-mismatch``, ``opening-unknown-field``, ``file-size``, ``file-hash``,
``file-unrecorded``, ``since-older``, ``since-fork`` (tampered); the ``timestamp-*`` codes
of :mod:`verify.package_timestamp`; the ``sm2-*`` codes of :mod:`verify.package_sm2`; the
``cosignature*`` codes of :mod:`verify.package_witness`; the ``unserved*`` codes of
:mod:`verify.package_unserved`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "EXIT_CODES",
    "EXIT_USAGE",
    "REPORT_FORMAT",
    "SEVERITIES",
    "VERDICT_LINES",
    "EntryResult",
    "FileResult",
    "Finding",
    "Findings",
    "OpeningResult",
    "PackageReport",
    "render_text",
]

REPORT_FORMAT = "evidence-vault-verify-report/1"
SEVERITIES = ("wrong-key", "tampered", "malformed", "info")
EXIT_CODES = {"ok": 0, "tampered": 1, "wrong-key": 2, "malformed": 3}
EXIT_USAGE = 4
VERDICT_LINES = {
    "ok": "VERIFIED 验证通过",
    "tampered": "TAMPERED 已被篡改",
    "wrong-key": "WRONG KEY 密钥不符",
    "malformed": "MALFORMED 格式无效",
}


@dataclass(frozen=True)
class Finding:
    """One thing that does not hold (or, with severity ``info``, is worth telling)."""

    code: str
    severity: str
    where: str
    message: str


class Findings:
    """What a report found, and the verdict and exit code that follow (the worst severity:
    wrong-key, then tampered, then malformed; else ok). Mixed into the report dataclasses,
    which hold ``findings``."""

    findings: list[Finding]

    def add(self, code: str, severity: str, where: str, message: str) -> None:
        """Record a finding; ``severity`` must be one of :data:`SEVERITIES`."""
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r}")
        self.findings.append(Finding(code, severity, where, message))

    @property
    def verdict(self) -> str:
        found = {f.severity for f in self.findings}
        for severity in ("wrong-key", "tampered", "malformed"):
            if severity in found:
                return severity
        return "ok"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


@dataclass
class FileResult:
    """One file listed in the manifest, and what was found about it."""

    path: str
    kind: str
    evidence_id: str
    sha256: str
    size: int
    entry: int
    present: bool = False
    got_sha256: str | None = None
    got_size: int | None = None
    hash_ok: bool = False
    recorded_ok: bool = False
    proof_ok: bool = False

    @property
    def ok(self) -> bool:
        return self.hash_ok and self.recorded_ok and self.proof_ok


@dataclass
class EntryResult:
    """One ledger entry in the package: its index, kind, and whether its proof holds."""

    index: int
    kind: str | None = None
    canonical: bool = False
    proof_ok: bool = False
    unserved_by: int | None = None  # the ``unserved`` entry naming it, if the package has one


@dataclass
class OpeningResult:
    """One commitment of an entry: ``ok``, ``mismatch``, ``unknown-field`` or
    ``not-disclosed`` (the exporter may not reveal it; not a failure)."""

    index: int
    field: str
    status: str
    value: Any = None


@dataclass
class PackageReport(Findings):
    """Everything verification found. See the module docstring for the verdict rule."""

    path: str
    findings: list[Finding] = field(default_factory=list)
    files: list[FileResult] = field(default_factory=list)
    entries: list[EntryResult] = field(default_factory=list)
    openings: list[OpeningResult] = field(default_factory=list)
    origin: str | None = None
    checkpoint_size: int | None = None
    checkpoint_root: str | None = None  # base64, as in the checkpoint text
    checkpoint_trusted: bool = False
    case_id: str | None = None
    case_label: str | None = None
    exported_by: str | None = None
    exported_at: str | None = None
    since_size: int | None = None
    since_ok: bool | None = None
    bytes_hashed: int = 0
    timestamp: dict[str, Any] | None = None  # the checkpoint's RFC 3161 time-stamp, if any
    sm2: dict[str, Any] | None = None  # the checkpoint's SM2 cosignature, once checked
    witnesses: list[dict[str, Any]] = field(default_factory=list)  # who cosigned the checkpoint

    @property
    def counts(self) -> dict[str, int]:
        by_status = [o.status for o in self.openings]
        out = {
            "files": len(self.files),
            "files_ok": sum(f.ok for f in self.files),
            "entries": len(self.entries),
            "entries_ok": sum(e.proof_ok and e.canonical for e in self.entries),
            "openings_disclosed": sum(s != "not-disclosed" for s in by_status),
            "openings_ok": by_status.count("ok"),
            "openings_not_disclosed": by_status.count("not-disclosed"),
            "bytes_hashed": self.bytes_hashed,
        }
        for severity in SEVERITIES:
            out[f"findings_{severity.replace('-', '_')}"] = sum(
                f.severity == severity for f in self.findings
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dictionary of the whole report."""
        return {
            "format": REPORT_FORMAT,
            "package": self.path,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "checkpoint": {
                "origin": self.origin,
                "size": self.checkpoint_size,
                "root": self.checkpoint_root,
                "trusted": self.checkpoint_trusted,
            },
            "case": {"id": self.case_id, "label": self.case_label},
            "exported_by": self.exported_by,
            "exported_at": self.exported_at,
            "since": {"size": self.since_size, "ok": self.since_ok},
            "timestamp": self.timestamp,
            "sm2": self.sm2,
            "witnesses": self.witnesses,
            "counts": self.counts,
            "findings": [asdict(f) for f in self.findings],
            "files": [asdict(f) | {"ok": f.ok} for f in self.files],
            "entries": [asdict(e) for e in self.entries],
            "openings": [asdict(o) for o in self.openings],
        }

    def to_json(self) -> str:
        """The report as JSON text (UTF-8 characters kept, sorted keys, 2-space indent)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, indent=2)


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def render_text(r: PackageReport) -> str:
    """A report a person can read; the last line is the verdict in English and Chinese."""
    out: list[str] = [f"package  {r.path}"]
    if r.origin is not None:
        trust = "signature ✓" if r.checkpoint_trusted else "signature ✗"
        out.append(
            f"log      {r.origin}  checkpoint size {r.checkpoint_size}  root {r.checkpoint_root}"
            f"  {trust}"
        )
    if r.timestamp is not None:
        t = r.timestamp
        how = "checked ✓ against --tsa-ca" if t["checked"] else "NOT checked (no --tsa-ca)"
        out.append(f"time     {t['time']} by {t['tsa']}  RFC 3161 time-stamp {how}")
    if r.sm2 is not None:
        out.append(
            f"sm2      cosigned by {r.sm2['key_name']}  key {r.sm2['fingerprint'][:16]}…"
            "  SM2 signature checked ✓ against --sm2-key"
        )
    for w in r.witnesses:
        if w["checked"]:
            out.append(f"witness  {w['name']} cosigned at {w['time']}  checked ✓ against --witness")
        else:
            out.append(f"witness  {w['name']}  cosignature NOT checked (no --witness)")
    if r.case_id is not None:
        out.append(f"case     {r.case_id}  label {r.case_label}")
        out.append(f"exported by {r.exported_by} at {r.exported_at}")
    if r.since_size is not None:
        out.append(f"since    checkpoint size {r.since_size}  consistent {_mark(bool(r.since_ok))}")
    if r.files:
        out.append("")
        out.append(f"files ({len(r.files)})  文件")
        for f in r.files:
            out.append(
                f"  {_mark(f.ok)} {f.kind:<11} evidence {f.evidence_id}  sha256 {_mark(f.hash_ok)}"
                f" {f.sha256[:16]}…  entry {f.entry} {_mark(f.recorded_ok)}"
                f"  proof {_mark(f.proof_ok)}  {f.path}"
            )
    if r.entries:
        bad = [e for e in r.entries if not (e.proof_ok and e.canonical)]
        out.append("")
        out.append(
            f"ledger entries ({len(r.entries)})  账本条目: {len(r.entries) - len(bad)} proven"
            f" in the checkpoint"
        )
        for e in bad:
            out.append(f"  ✗ entry {e.index} ({e.kind}) proof {_mark(e.proof_ok)}")
    if r.openings:
        out.append("")
        out.append("disclosed openings  披露的承诺值")
        for o in r.openings:
            if o.status == "not-disclosed":
                out.append(f"  · entry {o.index} {o.field}: not disclosed 未披露")
            else:
                value = json.dumps(o.value, ensure_ascii=False)
                out.append(f"  {_mark(o.status == 'ok')} entry {o.index} {o.field} = {value}")
    notes = [f for f in r.findings if f.code in ("original-not-included", "unserved")]
    if notes:
        out.append("")
        out.append(f"notes ({len(notes)})  说明")
        for n in notes:
            out.append(f"  · {n.message}")
    problems = [f for f in r.findings if f.severity != "info"]
    if problems:
        out.append("")
        out.append(f"findings ({len(problems)})  发现的问题")
        for p in problems:
            out.append(f"  [{p.severity}] {p.where}: {p.message}")
    out.append("")
    out.append(VERDICT_LINES[r.verdict])
    return "\n".join(out) + "\n"
