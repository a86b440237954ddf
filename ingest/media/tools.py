"""Where ffmpeg and ffprobe are, and which version: recorded in every ``derived`` entry."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ingest.media.errors import MediaToolError

__all__ = ["Tools", "child_env", "ffmpeg_version", "resolve"]


@dataclass(frozen=True)
class Tools:
    """Where ffmpeg and ffprobe are: a bare name is looked up on PATH when first run."""

    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"


def child_env(workdir: str) -> dict[str, str]:
    """The whole environment a child gets: nothing of ours leaks into it."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LC_ALL": "C",
        "HOME": workdir,
        "TMPDIR": workdir,
    }


def resolve(exe: str) -> str:
    """Absolute path of an executable (a bare name is looked up on PATH)."""
    found = exe if os.sep in exe else shutil.which(exe)
    if not found or not os.access(found, os.X_OK):
        raise MediaToolError(f"{exe} not found or not executable")
    return str(Path(found).absolute())


@functools.cache
def _version(exe: str) -> str:
    try:
        done = subprocess.run(
            [exe, "-version"], capture_output=True, timeout=30, env=child_env("/"), check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise MediaToolError(f"{Path(exe).name} -version failed") from exc
    first = done.stdout.decode("utf-8", "replace").partition("\n")[0]
    m = re.match(r"\S+ version (\S+)", first)
    if not m:
        raise MediaToolError(f"{Path(exe).name} -version printed no version")
    return m.group(1)


def ffmpeg_version(tools: Tools | None = None) -> str:
    """The ffmpeg version string (e.g. ``5.1.6-0+deb12u1``), run once per executable."""
    return _version(resolve((tools or Tools()).ffmpeg))
