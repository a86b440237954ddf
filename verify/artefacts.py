"""Every artefact the service gives out besides packages, checked offline with the vkey alone.

Kinds (recognised from the content, never from the file name):

* ``integrity-report``: a signed integrity report response, ``{"report": {...}, "signature":
  "<note>"}``, as ``GET /v1/cases/{id}/integrity-report`` answers and the console downloads it.
  The signature must be by the trusted key over the report's canonical bytes
  (:func:`verify.report_note.verify_report_response`); then the log checkpoint it carries must
  be signed by that key, and every item's ``acquired`` entry it carries must be proven (RFC 6962
  inclusion) in that checkpoint and name the item's id, SHA-256 and size.
* ``tlog-proof``: a ``c2sp.org/tlog-proof@v1`` (``evault ledger proof N``, ``GET
  /v1/evidence/{id}/proof``, the console's proof download) together with the exact bytes of the
  entry it proves (``--entry FILE``, e.g. from ``evault ledger entry N > FILE``): the checkpoint
  must be signed by the trusted key and the entry be leaf ``index`` of its tree.
* ``receipt``: a dock receipt (``<name>.evault-receipt.json`` beside the source, or a line of
  ``evault ingest``, or the push response): its checkpoint must be signed by the trusted key and
  cover its ledger index. A receipt carries no inclusion proof, so that the entry at that index
  records this file is NOT checked, and the report says so and how to check it; given the entry
  (``--entry``), its kind, evidence id, SHA-256 and size are compared with the receipt's.

Given an SM2 key (``--sm2-key``), the checkpoint of each kind must carry that key's SM2
cosignature (:mod:`verify.package_sm2`).

Guarantees: :attr:`ArtefactReport.verdict` follows :class:`verify.report.PackageReport`'s rule
(``ok`` only without a ``wrong-key``, ``tampered`` or ``malformed`` finding; exit codes from
:data:`verify.report.EXIT_CODES`); :attr:`ArtefactReport.checked` lists what held and
:attr:`ArtefactReport.not_checked` what the artefact cannot show, so ``ok`` is never claimed for
more than was checked. Stdlib and ``cryptography`` only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from verify.canonical import parse_canonical
from verify.checkpoint import Checkpoint, open_checkpoint
from verify.encoding import b64encode
from verify.errors import MalformedError, VerificationError, WrongKeyError
from verify.merkle import leaf_hash, verify_inclusion
from verify.note import Verifier
from verify.package_sm2 import Sm2Key, check_sm2
from verify.report import VERDICT_LINES, Finding, Findings
from verify.report_note import verify_report_response
from verify.tlogproof import HEADER as TLOG_PROOF_HEADER
from verify.tlogproof import parse_tlog_proof, verify_tlog_proof

__all__ = [
    "ARTEFACT_FORMAT",
    "KINDS",
    "ArtefactReport",
    "NeedsEntry",
    "check_artefact",
    "kind_of",
    "render_artefact_text",
]

ARTEFACT_FORMAT = "evidence-vault-verify-artefact/1"
KINDS = ("integrity-report", "tlog-proof", "receipt")
_RECEIPT_FIELDS = {
    "sha256": str,
    "size": int,
    "evidence_id": str,
    "ledger_index": int,
    "kind": str,
    "checkpoint": str,
}


class NeedsEntry(Exception):
    """A tlog-proof was given without the entry it proves (a usage error, no verdict)."""


@dataclass
class ArtefactReport(Findings):
    """What checking one artefact found: see the module docstring."""

    path: str
    kind: str
    findings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def fail(self, exc: VerificationError, where: str) -> None:
        """Record a verification failure with the severity its class means."""
        if isinstance(exc, WrongKeyError):
            self.add("wrong-key", "wrong-key", where, str(exc))
        elif isinstance(exc, MalformedError):
            self.add("malformed", "malformed", where, str(exc))
        else:  # a bad signature by the trusted key, a proof or hash that does not hold
            self.add("tampered", "tampered", where, str(exc))

    def to_json(self) -> str:
        doc = {
            "format": ARTEFACT_FORMAT,
            "artefact": self.path,
            "kind": self.kind,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "checked": self.checked,
            "not_checked": self.not_checked,
            "facts": self.facts,
            "findings": [asdict(f) for f in self.findings],
        }
        return json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=2)


def kind_of(data: bytes) -> str | None:
    """The artefact kind of ``data`` (one of :data:`KINDS`), or None."""
    if data.startswith(TLOG_PROOF_HEADER.encode() + b"\n"):
        return "tlog-proof"
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(doc, dict) and "report" in doc and "signature" in doc:
        return "integrity-report"
    if isinstance(doc, dict) and isinstance(doc.get("receipt"), dict):
        doc = doc["receipt"]  # a line of `evault ingest`
    if isinstance(doc, dict) and {"checkpoint", "ledger_index", "sha256"} <= doc.keys():
        return "receipt"
    return None


def check_artefact(
    path: str,
    data: bytes,
    verifier: Verifier,
    *,
    entry: bytes | None = None,
    sm2: Sm2Key | None = None,
) -> ArtefactReport:
    """Check ``data`` (the artefact read from ``path``); see the module docstring. With ``sm2``
    a receipt's checkpoint must carry that key's SM2 cosignature. Raises :class:`NeedsEntry`
    for a tlog-proof without ``entry``, ValueError if no kind matches."""
    kind = kind_of(data)
    if kind is None:
        raise ValueError("not an artefact of evidence-vault")
    report = ArtefactReport(path, kind)
    if kind == "integrity-report":
        _integrity_report(report, data, verifier, sm2)
    elif kind == "tlog-proof":
        if entry is None:
            raise NeedsEntry(
                "a tlog-proof proves one ledger entry: give the entry's exact bytes with "
                "--entry FILE (e.g. `evault ledger entry N > FILE`)"
            )
        _tlog_proof(report, data, entry, verifier, sm2)
    else:
        _receipt(report, data, verifier, entry, sm2)
    return report


def _check_sm2(report: ArtefactReport, note: str, sm2: Sm2Key | None, where: str) -> None:
    """With ``--sm2-key``: the checkpoint ``note`` must carry that key's SM2 cosignature."""
    got = None if sm2 is None else check_sm2(note, sm2, where, report)
    if got is not None:
        report.facts["sm2"] = got
        report.checked.append(f"its checkpoint is cosigned by the SM2 key {got['fingerprint']}")


def _checkpoint_facts(report: ArtefactReport, cp: Checkpoint) -> None:
    report.facts["checkpoint"] = {
        "origin": cp.origin,
        "size": cp.size,
        "root": b64encode(cp.root_hash),
    }


def _integrity_report(
    report: ArtefactReport, data: bytes, verifier: Verifier, sm2: Sm2Key | None
) -> None:
    try:
        body = verify_report_response(data, verifier)
    except VerificationError as exc:
        report.fail(exc, "signature")
        return
    report.checked.append("the report is signed by the trusted key (its exact canonical bytes)")
    report.facts.update(
        case_id=body.get("case_id"),
        generated_at=body.get("generated_at"),
        mode=body.get("mode"),
        report_verdict=body.get("verdict"),
        report_reasons=body.get("reasons", []),
        items=len(body.get("evidence") or []),
    )
    log = body.get("log")
    note = log.get("checkpoint") if isinstance(log, dict) else None
    if not isinstance(note, str):
        report.add("malformed", "malformed", "log.checkpoint", "the report carries no checkpoint")
        return
    try:
        cp = open_checkpoint(note, verifier)
    except VerificationError as exc:
        report.fail(exc, "log.checkpoint")
        return
    _checkpoint_facts(report, cp)
    report.checked.append(f"its checkpoint (tree size {cp.size}) is signed by the trusted key")
    _check_sm2(report, note, sm2, "log.checkpoint")
    items = body.get("evidence") or []
    proven = 0
    for n, item in enumerate(items if isinstance(items, list) else []):
        where = f"evidence[{n}]"
        if _report_item(report, item, cp, where):
            proven += 1
    if items:
        report.checked.append(
            f"{proven} of {len(items)} items: the acquired entry it carries is proven in that "
            "checkpoint and names the item's id, SHA-256 and size"
        )
    report.not_checked.append(
        "the stored footage itself (the report states what the service found when it re-read "
        "it: see its verdict); to check footage, export a package and verify it"
    )


def _report_item(report: ArtefactReport, item: Any, cp: Checkpoint, where: str) -> bool:
    """Re-check one item's ledger part against the verified checkpoint; True if it holds."""
    ledger = item.get("ledger") if isinstance(item, dict) else None
    if not isinstance(ledger, dict) or not isinstance(ledger.get("entry"), str):
        reason = "no ledger entry in the report (the service found none: see its reasons)"
        report.not_checked.append(f"{where}: {reason}")
        return False
    try:
        index = ledger["index"]
        proof = tuple(bytes.fromhex(h) for h in ledger["proof"])
        if not isinstance(index, int) or ledger.get("tree_size") != cp.size:
            raise MalformedError("index or tree size is not that of the report's checkpoint")
        entry = ledger["entry"].encode("utf-8")
        verify_inclusion(leaf_hash(entry), index, cp.size, proof, cp.root_hash)
        body = parse_canonical(entry)
        want = {"kind": "acquired", "evidence_id": item.get("evidence_id")}
        want.update(sha256=item.get("sha256"), size=item.get("size"))
        wrong = [k for k, v in want.items() if v is not None and body.get(k) != v]
        if wrong:
            raise VerificationError(f"entry {index} records another {', '.join(wrong)}")
    except (KeyError, TypeError, ValueError) as exc:
        report.add("malformed", "malformed", where, f"ledger part unreadable: {exc}")
        return False
    except VerificationError as exc:
        report.fail(exc, where)
        return False
    return True


def _tlog_proof(
    report: ArtefactReport, data: bytes, entry: bytes, verifier: Verifier, sm2: Sm2Key | None
) -> None:
    try:
        proof = parse_tlog_proof(data)
    except MalformedError as exc:
        report.fail(exc, "tlog-proof")
        return
    report.facts["index"] = proof.index
    try:
        cp = verify_tlog_proof(proof, entry, verifier)
    except VerificationError as exc:
        report.fail(exc, f"entry {proof.index}")
        return
    _checkpoint_facts(report, cp)
    report.checked.append(f"the checkpoint (tree size {cp.size}) is signed by the trusted key")
    _check_sm2(report, proof.checkpoint, sm2, "tlog-proof checkpoint")
    report.checked.append(
        f"the entry given is leaf {proof.index} of that tree, byte for byte (RFC 6962 inclusion)"
    )
    try:
        body = parse_canonical(entry)
        report.facts["entry"] = {
            k: body[k] for k in ("kind", "time", "evidence_id", "sha256", "size") if k in body
        }
    except VerificationError as exc:
        report.add("malformed", "malformed", "entry", f"the entry is not canonical JSON: {exc}")


def _receipt(
    report: ArtefactReport,
    data: bytes,
    verifier: Verifier,
    entry: bytes | None,
    sm2: Sm2Key | None = None,
) -> None:
    doc = json.loads(data)
    doc = doc["receipt"] if isinstance(doc.get("receipt"), dict) else doc
    bad = [k for k, t in _RECEIPT_FIELDS.items() if type(doc.get(k)) is not t]
    if bad:
        report.add("malformed", "malformed", "receipt", f"missing or mistyped: {', '.join(bad)}")
        return
    index: int = doc["ledger_index"]
    report.facts.update({k: doc[k] for k in _RECEIPT_FIELDS if k != "checkpoint"})
    report.facts.update({k: doc[k] for k in ("dock_id", "time", "source_name") if k in doc})
    try:
        cp = open_checkpoint(doc["checkpoint"], verifier)
    except VerificationError as exc:
        report.fail(exc, "receipt.checkpoint")
        return
    _checkpoint_facts(report, cp)
    report.checked.append(f"its checkpoint (tree size {cp.size}) is signed by the trusted key")
    _check_sm2(report, doc["checkpoint"], sm2, "receipt.checkpoint")
    if cp.size <= index:
        report.add(
            "proof-index",
            "tampered",
            "receipt.ledger_index",
            f"the checkpoint's tree (size {cp.size}) does not contain entry {index}",
        )
        return
    report.checked.append(f"that checkpoint's tree contains ledger entry {index}")
    if entry is not None:
        _receipt_entry(report, doc, entry)
    how = (
        f"get the entry and its proof (`evault ledger entry {index} > E`, `evault ledger proof "
        f"{index} > P`) and run `evault-verify P --entry E --vkey KEY`"
    )
    report.not_checked.append(
        f"that ledger entry {index} is the one this receipt describes: a receipt carries no "
        f"inclusion proof; {how}"
    )


def _receipt_entry(report: ArtefactReport, doc: dict[str, Any], entry: bytes) -> None:
    try:
        body = parse_canonical(entry)
    except VerificationError as exc:
        report.add("malformed", "malformed", "entry", f"the entry is not canonical JSON: {exc}")
        return
    wrong = [k for k in ("kind", "evidence_id", "sha256", "size") if body.get(k) != doc[k]]
    if wrong:
        report.add(
            "entry-mismatch",
            "tampered",
            "entry",
            f"the entry given records another {', '.join(wrong)} than the receipt",
        )
    else:
        report.checked.append(
            "the entry given records the receipt's kind, evidence id, SHA-256 and size "
            "(its place in the log is not proven by a receipt)"
        )


def render_artefact_text(r: ArtefactReport) -> str:
    """A report a person can read; the last line is the verdict in English and Chinese."""
    out = [f"{r.kind:<9} {r.path}"]
    for key, value in r.facts.items():
        if key == "report_reasons" or value is None:
            continue
        shown = value if isinstance(value, str | int) else json.dumps(value, ensure_ascii=False)
        out.append(f"  {key}: {shown}")
    for reason in r.facts.get("report_reasons") or []:
        out.append(f"  the report's reason: {reason}")
    if r.checked:
        out += ["", "checked  已核验"] + [f"  ✓ {c}" for c in r.checked]
    if r.not_checked:
        out += ["", "not checked  未核验"] + [f"  · {c}" for c in r.not_checked]
    problems = [f for f in r.findings if f.severity != "info"]
    if problems:
        out += ["", f"findings ({len(problems)})  发现的问题"]
        out += [f"  [{p.severity}] {p.where}: {p.message}" for p in problems]
    out += ["", VERDICT_LINES[r.verdict]]
    return "\n".join(out) + "\n"
