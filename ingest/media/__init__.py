"""Media layer: probe, proxy/poster/clip renditions, fingerprints and comparison.

File-level functions only; the job queue that calls them lives elsewhere. Every ffmpeg and
ffprobe run goes through :mod:`ingest.media.sandbox`. Entry points:

* :func:`~ingest.media.probe.probe` → :class:`~ingest.media.probe.ProbeInfo`
* :func:`~ingest.media.plan.plan_proxy` (pure) → :class:`~ingest.media.plan.ProxyPlan`
* :func:`~ingest.media.render.make_proxy`, :func:`~ingest.media.render.make_poster`,
  :func:`~ingest.media.render.make_clip` → :class:`~ingest.media.render.Rendition`
* :func:`~ingest.media.fingerprint.fingerprint` / :func:`~ingest.media.fingerprint.make_fingerprint`
  → :class:`~ingest.media.fingerprint.Fingerprint`
* :func:`~ingest.media.onepass.make_renditions` → proxy, poster and fingerprint from one
  decode (:class:`~ingest.media.onepass.OnePass`)
* :func:`~ingest.media.compare.compare` (pure) → :class:`~ingest.media.compare.Comparison`
* errors: :class:`~ingest.media.errors.MediaError` (the file), ``MediaToolError`` (ffmpeg)
"""

from __future__ import annotations

from ingest.media.compare import Comparison, compare
from ingest.media.errors import MediaError, MediaToolError
from ingest.media.fingerprint import Fingerprint, fingerprint, make_fingerprint
from ingest.media.onepass import OnePass, make_renditions
from ingest.media.plan import ProxyPlan, plan_clip, plan_poster, plan_proxy
from ingest.media.probe import ProbeInfo, probe
from ingest.media.render import Rendition, make_clip, make_poster, make_proxy
from ingest.media.sandbox import Limits
from ingest.media.tools import Tools, ffmpeg_version

__all__ = [
    "Comparison",
    "Fingerprint",
    "Limits",
    "MediaError",
    "MediaToolError",
    "OnePass",
    "ProbeInfo",
    "ProxyPlan",
    "Rendition",
    "Tools",
    "compare",
    "ffmpeg_version",
    "fingerprint",
    "make_clip",
    "make_fingerprint",
    "make_poster",
    "make_proxy",
    "make_renditions",
    "plan_clip",
    "plan_poster",
    "plan_proxy",
    "probe",
]
