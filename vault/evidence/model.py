"""What an evidence or rendition row is: its bound values (covered by the row tag) and the rest.

Guarantees: ``EVIDENCE_BOUND`` / ``RENDITION_BOUND`` name, in one place, the columns a row tag
covers besides the id; ``evidence_values`` / ``rendition_values`` give them in one spelling
whether they come from Python (a write) or from PostgreSQL (a read), so a tag made on write is
the tag checked on read. An :class:`Evidence` or :class:`Rendition` is only ever built from a
row that verified.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from vault.policy.labels import Label

Row: TypeAlias = "asyncpg.Record | Mapping[str, Any]"
"""A stored row as the driver returns it, or a dict of the same names."""

EVIDENCE_TABLE = "evidence"
RENDITION_TABLE = "renditions"

EVIDENCE_BOUND: tuple[str, ...] = (
    "sha256",
    "size",
    "ledger_idx",
    "dock_id",
    "device_id",
    "officer_id",
    "recorded_at",
    "acquired_at",
    "file_name",
    "extension",
    "label_level",
    "label_caveats",
    "category",
    "disposed_at",
)
"""Columns of ``evidence`` the tag covers, besides ``id``."""

RENDITION_BOUND: tuple[str, ...] = (
    "evidence_id",
    "kind",
    "sha256",
    "size",
    "media_type",
    "ledger_idx",
    "label_level",
    "label_caveats",
)
"""Columns of ``renditions`` the tag covers, besides ``id``."""

EVIDENCE_WORKING: tuple[str, ...] = (
    "media_status",
    "media_reason",
    "probe",
    "integrity",
    "last_scrub_at",
)
RENDITION_WORKING: tuple[str, ...] = ("params", "created_at")


def _values(row: Row, names: tuple[str, ...]) -> dict[str, object]:
    out: dict[str, object] = {n: row[n] for n in names}
    out["label_caveats"] = list(out["label_caveats"])  # type: ignore[call-overload]
    return out


def evidence_values(row: Row) -> dict[str, object]:
    """The bound values of an evidence row (a record or a dict of the same names)."""
    return _values(row, EVIDENCE_BOUND)


def rendition_values(row: Row) -> dict[str, object]:
    """The bound values of a rendition row."""
    return _values(row, RENDITION_BOUND)


@dataclass(frozen=True, slots=True)
class Evidence:
    """A verified evidence row: bound values, ``state_idx``, and the working state read with it."""

    id: uuid.UUID
    sha256: str
    size: int
    ledger_idx: int
    dock_id: str | None
    device_id: str | None
    officer_id: str | None
    recorded_at: datetime | None
    acquired_at: datetime
    file_name: str
    extension: str
    label_level: int
    label_caveats: tuple[str, ...]
    category: str
    disposed_at: datetime | None
    state_idx: int
    media_status: str
    media_reason: str | None
    probe: Any
    integrity: str
    last_scrub_at: datetime | None


@dataclass(frozen=True, slots=True)
class Rendition:
    """A verified rendition row."""

    id: uuid.UUID
    evidence_id: uuid.UUID
    kind: str
    sha256: str
    size: int
    media_type: str
    ledger_idx: int
    label_level: int
    label_caveats: tuple[str, ...]
    state_idx: int
    params: Any
    created_at: datetime


@dataclass(frozen=True)
class NewEvidence:
    """An acquisition to record: everything the ``acquired`` entry commits to, plus metadata.
    ``acquired_at`` is the service's clock, set here so the tag can cover it."""

    id: uuid.UUID
    sha256: str
    size: int
    dock_id: str | None
    device_id: str | None
    officer_id: str | None
    recorded_at: datetime | None
    acquired_at: datetime
    file_name: str
    extension: str
    label: Label
    metadata: str = "{}"  # JSON text
    category: str = "ordinary"


@dataclass(frozen=True)
class NewRendition:
    """A rendition to record with its ``derived`` entry. ``label`` is the source's label when
    the work started; the stored label is raised to the source's label at commit time."""

    id: uuid.UUID
    evidence_id: uuid.UUID
    kind: str
    sha256: str
    size: int
    media_type: str
    label: Label
    params: str = "{}"  # JSON text
