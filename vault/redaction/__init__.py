"""Redacted copies: the spec of what a copy hides (``spec``), pure and versioned.

Rendering lives in ``ingest.media.redact`` (the ffmpeg sandbox); the job that records a copy in
``ingest.redactjobs``; the routes in ``api.routes_redactions``. See ``docs/redaction.md``.
"""

from __future__ import annotations

from vault.redaction.spec import (
    InvalidSpec,
    Spec,
    parse_spec,
    spec_bytes,
    spec_sha256,
)

__all__ = ["InvalidSpec", "Spec", "parse_spec", "spec_bytes", "spec_sha256"]
