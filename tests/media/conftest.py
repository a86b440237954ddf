"""Fixtures for the media tests: short clips generated with ffmpeg's lavfi sources.

Every clip is small (at most 320x240, at most 6 s) and made once per session, so the whole
media suite stays well under a minute on two cores.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from media_tools import ffmpeg, has_encoder

_SRC_V = ["-f", "lavfi", "-i", "testsrc2=s=320x240:r=30:d={d}"]
_SRC_A = ["-f", "lavfi", "-i", "sine=f=440:r={r}:d={d}"]
_X264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]

# name -> ffmpeg arguments (inputs and outputs, without the output file)
RECIPES: dict[str, list[str]] = {
    "h264_aac.mp4": [*_SRC_V, *_SRC_A, *_X264, "-c:a", "aac", "-shortest"],
    "hevc_aac.mp4": [
        *_SRC_V,
        *_SRC_A,
        *("-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"),
        *("-pix_fmt", "yuv420p", "-tag:v", "hvc1", "-c:a", "aac", "-shortest"),
    ],
    "mjpeg_pcm.avi": [*_SRC_V, *_SRC_A, "-c:v", "mjpeg", "-q:v", "5", "-c:a", "pcm_s16le"],
    "audio.wav": [*_SRC_A, "-ac", "2", "-c:a", "pcm_s16le"],
    "audio.m4a": [*_SRC_A, "-c:a", "aac"],
    "audio.aac": [*_SRC_A, "-c:a", "aac", "-f", "adts"],
    "video_only.mp4": [*_SRC_V, *_X264],
    "portrait_240x320.mp4": [*_SRC_V, "-vf", "transpose=clock", *_X264],
    "counter.mp4": [
        *("-f", "lavfi", "-i", "color=c=black:s=64x48:r=30:d={d},format=gray"),
        *("-vf", "geq=lum='mod(N*8,256)',format=yuv420p"),
        *_X264,
        *("-g", "45", "-crf", "10"),
    ],
}


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media-samples")


@pytest.fixture(scope="session")
def sample(media_dir: Path) -> Callable[[str], Path]:
    """sample(name) -> path of a generated clip (made on first use; 3 s)."""

    def make(name: str) -> Path:
        path = media_dir / name
        if path.exists():
            return path
        if name == "hevc_aac.mp4" and not has_encoder("libx265"):
            pytest.skip("this ffmpeg has no libx265 encoder")
        if name == "portrait_rotated.mp4":  # landscape pixels + a 90-degree display matrix
            src = make("h264_aac.mp4")
            ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(path))
            return path
        rate = "44100" if name.startswith("audio") else "48000"
        ffmpeg(*(a.format(d=3, r=rate) for a in RECIPES[name]), str(path))
        return path

    return make
