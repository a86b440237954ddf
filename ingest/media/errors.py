"""The media layer's one error: this file cannot be processed as evidence media.

Guarantees: every failure of probing, rendering or fingerprinting a file that comes from the
file itself (not a media file, truncated, hostile, over a limit, too slow to decode) is raised
as :class:`MediaError` with a short human ``reason`` that names no path and no content of the
file. Retrying unchanged fails again. A missing or broken ffmpeg installation is not the file's
fault and is raised as :class:`MediaToolError` (retry after fixing the installation).
"""

from __future__ import annotations

from vault.errors import BadRequest, Unavailable

__all__ = ["MediaError", "MediaToolError"]


class MediaError(BadRequest):
    """The file cannot be processed as media: quarantine it or keep it without renditions."""

    status = 422
    slug = "unprocessable"
    title = "Unprocessable media"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MediaToolError(Unavailable):
    """ffmpeg or ffprobe is missing or does not run: fix the installation, then retry."""

    slug = "media-tool"
    title = "Media tool unavailable"
