"""Signed integrity reports: what the legal-review module archives and checks later.

A report is a JSON object in canonical form (:mod:`verify.canonical`, without the entry size
limit). It is signed with the log key as a C2SP signed note whose text is exactly::

    evidence-vault integrity report v1\\n
    <lowercase hex SHA-256 of the canonical report bytes>\\n

The first line is not the log's origin, so the note can never be taken for a checkpoint (and a
checkpoint never for a report: its first line is the origin).

Guarantees of :func:`verify_report`: it returns the parsed report only when the note carries a
valid signature by the trusted verifier, its text is exactly the two lines above, the hash
equals the SHA-256 of ``report_bytes``, and ``report_bytes`` is the canonical encoding of a JSON
object; otherwise it raises a :class:`~verify.errors.VerificationError` saying which held not.
Stdlib and ``cryptography`` only, like the rest of ``verify``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from verify.canonical import canonical_json, parse_canonical
from verify.errors import MalformedError, VerificationError
from verify.note import Signer, Verifier, parse_vkey, sign_note, verify_note

__all__ = [
    "REPORT_HEADER",
    "report_bytes_of",
    "report_note_text",
    "sign_report",
    "verify_report",
    "verify_report_response",
]

REPORT_HEADER = "evidence-vault integrity report v1"


def report_note_text(report_bytes: bytes) -> str:
    """The note text that signs ``report_bytes``."""
    return f"{REPORT_HEADER}\n{hashlib.sha256(report_bytes).hexdigest()}\n"


def sign_report(report_bytes: bytes, signer: Signer) -> str:
    """The signed note for ``report_bytes`` (which must be canonical JSON of an object)."""
    parse_canonical(report_bytes, max_bytes=None)
    return sign_note(report_note_text(report_bytes), signer)


def verify_report(report_bytes: bytes, note: str | bytes, verifier: Verifier) -> dict[str, Any]:
    """Check the signed ``note`` over ``report_bytes``; return the report (module docstring)."""
    opened = verify_note(note, verifier)
    lines = opened.text.split("\n")
    if len(lines) != 3 or lines[0] != REPORT_HEADER or lines[2] != "":
        raise MalformedError(f"note is not an integrity report: first line {lines[0]!r}")
    want = hashlib.sha256(report_bytes).hexdigest()
    if lines[1] != want:
        raise VerificationError(
            f"the report's SHA-256 is {want}, the signed note names {lines[1]!r}: "
            "the report was changed or is not the one signed"
        )
    return parse_canonical(report_bytes, max_bytes=None)


def report_bytes_of(report: object) -> bytes:
    """The canonical bytes of a report object as received in a JSON response."""
    try:
        return canonical_json(report)
    except (TypeError, ValueError) as exc:
        raise MalformedError(f"report cannot be canonical JSON: {exc}") from exc


def verify_report_response(body: bytes | str, verifier: Verifier | str) -> dict[str, Any]:
    """Check a whole ``GET /v1/cases/{case}/integrity-report`` response body, as archived:
    ``{"report": {...}, "signature": "<note>"}``; returns the report. ``verifier`` is a
    :class:`~verify.note.Verifier` or the trusted vkey text itself (MalformedError if it is
    not a valid vkey)."""
    if isinstance(verifier, str):
        verifier = parse_vkey(verifier.strip())
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedError(f"response is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("signature"), str):
        raise MalformedError("response has no report and signature")
    if not isinstance(doc.get("report"), dict):
        raise MalformedError("response has no report object")
    return verify_report(report_bytes_of(doc["report"]), doc["signature"], verifier)
