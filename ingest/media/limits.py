"""What one ffmpeg/ffprobe run may use (pure data; the sandbox enforces it)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one ffmpeg/ffprobe run may use. ``cpu_s=None`` means ``wall_s * (threads + 1) + 5``.

    ``memory_origin`` says where ``memory_bytes`` comes from (a configuration key such as
    ``media.memory_limit_mb``, or a built-in default); a failure reason quotes it, so an
    operator reading "memory limit exceeded" knows which setting applied.
    """

    wall_s: float = 60.0
    memory_bytes: int = 2 << 30
    cpu_s: float | None = None
    threads: int = 2
    file_size_bytes: int = 64 << 30
    open_files: int = 256
    grace_s: float = 2.0
    memory_origin: str = "the media layer's built-in default"

    def with_wall(self, wall_s: float) -> Limits:
        """The same limits with another wall time (callers scale it with the duration)."""
        return dataclasses.replace(self, wall_s=wall_s)

    def cpu_seconds(self) -> int:
        if self.cpu_s is not None:
            return max(1, math.ceil(self.cpu_s))
        return math.ceil(self.wall_s * (self.threads + 1)) + 5
