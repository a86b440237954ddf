"""JSON schemas (OpenAPI 3.1 components) shared by the route modules, and small wire helpers.

Every schema here describes exactly what the handlers send, so a response that breaks its
schema is a bug (the Schemathesis test checks this against the running service).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from api.openapi import define, header
from vault.policy.labels import Caveat, Level

Schema = dict[str, Any]


def nullable(schema: Schema) -> Schema:
    """``schema`` or null (OpenAPI 3.1 / JSON Schema style)."""
    return {"anyOf": [schema, {"type": "null"}]}


def load_json(value: object) -> Any:
    """A jsonb column as asyncpg returns it (text) decoded; None stays None."""
    if value is None or not isinstance(value, str | bytes):
        return value
    return json.loads(value)


STRING: Schema = {"type": "string"}
DATE_TIME: Schema = {"type": "string", "format": "date-time"}
UUID: Schema = {"type": "string", "format": "uuid"}
SHA256: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
INDEX: Schema = {"type": "integer", "minimum": 0}
BINARY: Schema = {"type": "string", "format": "binary"}
LEVEL: Schema = {"type": "string", "enum": [lv.slug for lv in Level]}
CAVEAT: Schema = {"type": "string", "enum": [c.value for c in Caveat]}

LABEL = define(
    "Label",
    {
        "type": "object",
        "required": ["level", "caveats"],
        "additionalProperties": False,
        "properties": {
            "level": LEVEL,
            "caveats": {"type": "array", "items": CAVEAT, "uniqueItems": True},
        },
    },
)

# Each caveat at most once, in any order: every ordering of every subset, spelled out (JSON
# Schema patterns have no back-references; there are few caveats).
_CAVEAT_RUNS = sorted(
    "".join(f"\\+{c.value}" for c in run)
    for k in range(1, len(Caveat) + 1)
    for run in itertools.permutations(Caveat, k)
)
_LABEL_SHORT = f"^({'|'.join(lv.slug for lv in Level)})({'|'.join(_CAVEAT_RUNS)})?$"

LABEL_INPUT = define(
    "LabelInput",
    {
        "description": "a label as a caller gives it: the short form level[+caveat...] (each "
        "caveat at most once, e.g. secret+personal_privacy) or the Label object",
        "oneOf": [{"type": "string", "pattern": _LABEL_SHORT, "examples": ["internal"]}, LABEL],
    },
)

_SUMMARY_PROPS: Schema = {
    "id": UUID,
    "sha256": SHA256,
    "size": {"type": "integer", "minimum": 0},
    "file_name": STRING,
    "dock_id": nullable(STRING),
    "device_id": nullable(STRING),
    "officer_id": nullable(STRING),
    "recorded_at": nullable(DATE_TIME),
    "acquired_at": DATE_TIME,
    "label": LABEL,
    "category": {"type": "string", "enum": ["ordinary", "important"]},
    "media_status": STRING,
    "disposed_at": nullable(DATE_TIME),
    "cases": {"type": "array", "items": STRING, "description": "visible linked cases"},
}
EVIDENCE_SUMMARY = define(
    "EvidenceSummary",
    {"type": "object", "required": list(_SUMMARY_PROPS), "properties": _SUMMARY_PROPS},
)
EVIDENCE_PAGE = define(
    "EvidencePage",
    {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": EVIDENCE_SUMMARY},
            "next_cursor": nullable(STRING),
        },
    },
)
RENDITION = define(
    "Rendition",
    {
        "type": "object",
        "required": ["id", "kind", "sha256", "size", "media_type", "label", "content"],
        "properties": {
            "id": UUID,
            "kind": {
                "type": "string",
                "enum": ["proxy", "poster", "clip", "fingerprint", "redacted", "released"],
            },
            "sha256": SHA256,
            "size": {"type": "integer", "minimum": 0},
            "media_type": STRING,
            "label": LABEL,
            "params": {"type": "object"},
            "created_at": DATE_TIME,
            "ledger_index": INDEX,
            "content": {"type": "string", "description": "path of its content"},
        },
    },
)
_DETAIL_PROPS: Schema = {
    **_SUMMARY_PROPS,
    "ledger_index": INDEX,
    "extension": STRING,
    "media_reason": nullable(STRING),
    "probe": nullable({"type": "object"}),
    "integrity": {"type": "string", "enum": ["ok", "mismatch", "missing"]},
    "last_scrub_at": nullable(DATE_TIME),
    "recorded_after_acquired": {
        "type": "boolean",
        "description": "recorded_at is later than acquired_at: the recorder's clock or zone is "
        "wrong",
    },
    "renditions": {"type": "array", "items": RENDITION},
}
EVIDENCE_DETAIL = define(
    "EvidenceDetail",
    {"type": "object", "required": list(_DETAIL_PROPS), "properties": _DETAIL_PROPS},
)

JOB = define(
    "ClipJob",
    {
        "type": "object",
        "required": ["id", "kind", "status", "evidence_id", "start_ms", "end_ms"],
        "properties": {
            "id": {"type": "integer"},
            "kind": {"type": "string", "enum": ["clip"]},
            "status": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
            "evidence_id": UUID,
            "start_ms": {"type": "integer"},
            "end_ms": {"type": "integer"},
            "attempts": {"type": "integer"},
            "created_at": DATE_TIME,
            "updated_at": DATE_TIME,
            "rendition_id": nullable(UUID),
            "rendition": nullable(STRING),
            "error": nullable(STRING),
        },
    },
)

CASE_SUMMARY = define(
    "CaseSummary",
    {
        "type": "object",
        "required": ["id", "label", "created_at", "updated_at"],
        "properties": {
            "id": STRING,
            "title": nullable(STRING),
            "label": LABEL,
            "created_at": DATE_TIME,
            "updated_at": DATE_TIME,
        },
    },
)
CASE_DETAIL = define(
    "CaseDetail",
    {
        "type": "object",
        "required": ["id", "title", "label", "evidence_count", "evidence"],
        "properties": {
            "id": STRING,
            "title": STRING,
            "label": LABEL,
            "created_at": DATE_TIME,
            "updated_at": DATE_TIME,
            "evidence_count": {"type": "integer", "minimum": 0},
            "evidence": {"type": "array", "items": EVIDENCE_SUMMARY},
        },
    },
)
LINK_RESULT = define(
    "LinkResult",
    {
        "type": "object",
        "required": ["case_id", "evidence_id", "ledger_index", "linked"],
        "properties": {
            "case_id": STRING,
            "evidence_id": UUID,
            "ledger_index": INDEX,
            "linked": {"type": "boolean"},
            "label_raised": nullable(
                {
                    "type": "object",
                    "description": "linking raised the evidence's effective label to the "
                    "case's: principals cleared for `from` but not `to` no longer see it, in "
                    "any case (a `labelled` ledger entry records it); null when it did not",
                    "required": ["from", "to"],
                    "properties": {"from": LABEL, "to": LABEL},
                }
            ),
        },
    },
)

RANGE_HEADER = header("Range", "one byte range, e.g. bytes=0-1023 or bytes=-500")
IF_NONE_MATCH = header("If-None-Match", 'ETags, e.g. "<sha256>", or *')
IF_RANGE = header("If-Range", "the ETag the Range applies to")
CONTENT_HEADERS: dict[str, Schema] = {
    "ETag": {"type": "string", "description": 'strong ETag "<sha256>"'},
    "Accept-Ranges": {"type": "string"},
    "Content-Range": {"type": "string"},
    "Content-Disposition": {"type": "string"},
}
