"""Wire models shared by several route modules, as ``msgspec`` Structs (a route's own shapes
are Structs beside it).

Each Struct is the one definition of its wire shape: ``api.openapi`` derives the OpenAPI
component (``define_structs``) and the query parameters (``query_params``) from it, and
``api.wire`` decodes request bodies and query strings into it and encodes responses from it.
A Struct's name is its component's name. ``vault`` never sees these types: the route modules
map vault rows and dataclasses onto them.

Strings the JSON Schema types cannot say (a UUID, a label level) are plain ``str`` annotated
with ``extra_json_schema``; values the service only sends are not re-validated on encode.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType, field

from vault.cases.links import MAX_TITLE
from vault.policy.labels import Caveat, Level

__all__ = [
    "Case",
    "CaseDetail",
    "CaseList",
    "CasePut",
    "CaseQuery",
    "CaseSummary",
    "ClipJob",
    "ClipRequest",
    "ContentQuery",
    "EvidenceDetail",
    "EvidencePage",
    "EvidenceQuery",
    "EvidenceSummary",
    "FieldError",
    "Flag",
    "Label",
    "LabelRaised",
    "LinkRequest",
    "LinkResult",
    "ProblemDetails",
    "Rendition",
]

Uuid = Annotated[str, Meta(extra_json_schema={"format": "uuid"})]
Sha256 = Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
Index = Annotated[int, Meta(ge=0)]
Size = Annotated[int, Meta(ge=0)]
LevelSlug = Annotated[str, Meta(extra_json_schema={"enum": [lv.slug for lv in Level]})]
CaveatName = Annotated[str, Meta(extra_json_schema={"enum": [c.value for c in Caveat]})]
Text = Annotated[str, Meta(min_length=1, max_length=256)]
Instant = Annotated[datetime, Meta(tz=True)]
"""An aware date-time (RFC 3339 with an offset); the database's ``timestamptz`` are."""
Flag = Literal["true", "false", "1", "0"]
"""A boolean query parameter as the service has always spelled it."""
MAX_MS = 7 * 24 * 3600 * 1000  # a week: longer than any recording a dock takes


def flag(value: Flag) -> bool:
    return value in ("true", "1")


# -- shared -------------------------------------------------------------------------------------


class ProblemDetails(Struct):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: Annotated[int, Meta(ge=400, le=599)]
    detail: str
    request_id: str | UnsetType = UNSET
    errors: list[FieldError] | UnsetType = UNSET


class FieldError(Struct):
    """One field of a request that is wrong, and why."""

    field: str
    detail: str


class Label(Struct, frozen=True, forbid_unknown_fields=True):
    """A level plus caveats (each at most once, sorted)."""

    level: LevelSlug
    caveats: Annotated[list[CaveatName], Meta(extra_json_schema={"uniqueItems": True})]


# -- evidence -----------------------------------------------------------------------------------


class EvidenceSummary(Struct, kw_only=True):
    id: Uuid
    sha256: Sha256
    size: Size
    file_name: str
    dock_id: str | None
    device_id: str | None
    officer_id: str | None
    recorded_at: Instant | None
    acquired_at: Instant
    label: Label
    category: Literal["ordinary", "important"]
    media_status: str
    disposed_at: Instant | None
    cases: Annotated[list[str], Meta(description="visible linked cases")]


class EvidencePage(Struct):
    items: list[EvidenceSummary]
    next_cursor: str | None


class Rendition(Struct, kw_only=True):
    id: Uuid
    kind: Literal["proxy", "poster", "clip", "fingerprint", "redacted", "released"]
    sha256: Sha256
    size: Size
    media_type: str
    label: Label
    params: dict[str, Any] | None
    created_at: Instant
    ledger_index: Index
    content: Annotated[str, Meta(description="path of its content")]


class EvidenceDetail(EvidenceSummary, kw_only=True):
    ledger_index: Index
    extension: str
    media_reason: str | None
    probe: dict[str, Any] | None
    integrity: Literal["ok", "mismatch", "missing"]
    last_scrub_at: Instant | None
    recorded_after_acquired: Annotated[
        bool,
        Meta(
            description="recorded_at is later than acquired_at: the recorder's clock or zone "
            "is wrong"
        ),
    ]
    renditions: list[Rendition]


class EvidenceQuery(Struct, forbid_unknown_fields=True):
    """The filters and page of ``GET /v1/evidence``."""

    case: Annotated[Text, Meta(description="linked to this case")] | None = None
    officer: Annotated[Text, Meta(description="recorded by this officer id")] | None = None
    device: Annotated[Text, Meta(description="recorded on this device id")] | None = None
    dock: Annotated[Text, Meta(description="acquired through this dock")] | None = None
    acquired_from: (
        Annotated[Instant, Meta(description="acquired at or after (RFC 3339)")] | None
    ) = None
    acquired_to: Annotated[Instant, Meta(description="acquired before (RFC 3339)")] | None = None
    recorded_from: (
        Annotated[Instant, Meta(description="recorded at or after (RFC 3339)")] | None
    ) = None
    recorded_to: Annotated[Instant, Meta(description="recorded before (RFC 3339)")] | None = None
    level: Annotated[LevelSlug, Meta(description="effective label level equals")] | None = None
    caveat: Annotated[
        list[CaveatName], Meta(description="effective caveats include (repeatable)")
    ] = []
    status: (
        Annotated[
            Text,
            Meta(description="media status (pending, processing, ready, partial, unprocessable)"),
        ]
        | None
    ) = None
    unlinked: Annotated[
        Flag, Meta(description="true: only items linked to no case the caller may see")
    ] = "false"
    limit: Annotated[int, Meta(ge=1, le=1000, description="page size")] = 100
    cursor: Annotated[Text, Meta(description="next_cursor of the previous page")] | None = None


class ContentQuery(Struct, forbid_unknown_fields=True):
    """How content is fetched (both content routes)."""

    download: Annotated[
        Flag,
        Meta(
            description="true: a download (attachment; needs the download grant), else "
            "streaming (inline)"
        ),
    ] = "false"
    integrity_override: Annotated[
        Flag,
        Meta(
            description="true: an auditor or admin fetches content that failed its integrity "
            "check (recorded)"
        ),
    ] = "false"


# -- jobs ---------------------------------------------------------------------------------------

Ms = Annotated[int, Meta(ge=0, le=MAX_MS)]


class ClipRequest(Struct, forbid_unknown_fields=True):
    start_ms: Ms
    end_ms: Annotated[int, Meta(ge=1, le=MAX_MS)]


class ClipJob(Struct, kw_only=True):
    id: int
    kind: Literal["clip"]
    status: Literal["queued", "running", "done", "failed"]
    evidence_id: Uuid
    start_ms: int
    end_ms: int
    attempts: int
    created_at: Instant
    updated_at: Instant
    rendition_id: Uuid | None
    rendition: str | None
    error: str | None


# -- cases --------------------------------------------------------------------------------------


class CasePut(Struct, forbid_unknown_fields=True):
    title: Annotated[str, Meta(min_length=1, max_length=MAX_TITLE)]
    # parsed by vault's Label.from_wire (either form, errors naming the field)
    label: Annotated[Any, Meta(extra_json_schema={"$ref": "#/components/schemas/LabelInput"})] = (
        UNSET
    )


class LinkRequest(Struct, forbid_unknown_fields=True):
    evidence_id: Annotated[
        str, Meta(min_length=1, max_length=256, extra_json_schema={"format": "uuid"})
    ]


class Case(Struct, kw_only=True):
    id: str
    title: str
    label: Label
    created_at: Instant
    updated_at: Instant


class CaseSummary(Struct, kw_only=True):
    id: str
    title: str | None
    label: Label
    created_at: Instant
    updated_at: Instant


class CaseList(Struct):
    items: list[CaseSummary]


class CaseDetail(Case, kw_only=True):
    evidence_count: Size
    evidence: list[EvidenceSummary]


class LabelRaised(Struct):
    """Linking raised the evidence's effective label to the case's: principals cleared for
    ``from`` but not ``to`` no longer see it, in any case (a ``labelled`` ledger entry records
    it)."""

    from_: Label = field(name="from")
    to: Label


class LinkResult(Struct, kw_only=True):
    case_id: str
    evidence_id: Uuid
    ledger_index: Index
    linked: bool
    label_raised: LabelRaised | UnsetType | None = UNSET  # null: it did not (link only)


class CaseQuery(Struct, forbid_unknown_fields=True):
    limit: Annotated[int, Meta(ge=1, le=1000, description="evidence shown")] = 100
