"""Helpers for the media tests: run ffmpeg/ffprobe directly (outside the sandbox under test)."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
FFPROBE = shutil.which("ffprobe") or "ffprobe"


@functools.cache
def has_encoder(name: str) -> bool:
    out = subprocess.run(
        [str(FFMPEG), "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    return any(line.split()[1:2] == [name] for line in out.splitlines() if line.strip())


def ffmpeg(*args: str) -> None:
    subprocess.run([str(FFMPEG), "-nostdin", "-v", "error", "-y", *args], check=True)


def ffprobe_json(path: Path, *extra: str) -> dict[str, object]:
    out = subprocess.run(
        [
            str(FFPROBE),
            "-v",
            "error",
            "-show_format",
            "-show_streams",
            *extra,
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        check=True,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def decode_errors(path: Path) -> str:
    """stderr of a full decode at error level: empty when every frame decodes."""
    done = subprocess.run(
        [str(FFMPEG), "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    return done.stderr + ("" if done.returncode == 0 else f"exit {done.returncode}")
