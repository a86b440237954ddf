"""JSON schemas (OpenAPI 3.1 components) shared by the route modules not yet on the wire
models of ``api.models``, and small wire helpers.

Every schema here describes exactly what the handlers send, so a response that breaks its
schema is a bug (the Schemathesis test checks this against the running service).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from api import models
from api.openapi import define, define_structs, header
from vault.policy.labels import Caveat, Level

Schema = dict[str, Any]


def load_json(value: object) -> Any:
    """A jsonb column as asyncpg returns it (text) decoded; None stays None."""
    if value is None or not isinstance(value, str | bytes):
        return value
    return json.loads(value)


STRING: Schema = {"type": "string"}
DATE_TIME: Schema = {"type": "string", "format": "date-time"}
BINARY: Schema = {"type": "string", "format": "binary"}

(LABEL,) = define_structs(models.Label)

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

RANGE_HEADER = header("Range", "one byte range, e.g. bytes=0-1023 or bytes=-500")
IF_NONE_MATCH = header("If-None-Match", 'ETags, e.g. "<sha256>", or *')
IF_RANGE = header("If-Range", "the ETag the Range applies to")
CONTENT_HEADERS: dict[str, Schema] = {
    "ETag": {"type": "string", "description": 'strong ETag "<sha256>"'},
    "Accept-Ranges": {"type": "string"},
    "Content-Range": {"type": "string"},
    "Content-Disposition": {"type": "string"},
}
