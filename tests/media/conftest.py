"""Fixtures for the media tests: short clips generated with ffmpeg's lavfi sources.

Every clip is small (at most 320x240, at most 6 s) and made once per session, so the whole
media suite stays well under a minute on two cores.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.media.media_tools import ffmpeg, has_encoder

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
    # What recorders and platforms write besides MP4 (see DEFAULT_EXTENSIONS).
    "h264_aac.ts": [*_SRC_V, *_SRC_A, *_X264, "-c:a", "aac", "-shortest", "-f", "mpegts"],
    "h264_aac.m2ts": [
        *(*_SRC_V, *_SRC_A, *_X264, "-c:a", "aac", "-shortest"),
        *("-f", "mpegts", "-mpegts_m2ts_mode", "1"),
    ],
    "h264_aac.mkv": [*_SRC_V, *_SRC_A, *_X264, "-c:a", "aac", "-shortest"],
    "h264_aac.mov": [*_SRC_V, *_SRC_A, *_X264, "-c:a", "aac", "-shortest"],
    "h264_aac.3gp": [*_SRC_V, *_SRC_A, *_X264, "-c:a", "aac", "-shortest"],
    "h263_aac.3gp": [
        *(*_SRC_V, *_SRC_A, "-c:v", "h263", "-s", "176x144"),
        *("-c:a", "aac", "-ar", "8000", "-ac", "1", "-shortest"),
    ],
    "mpeg2_mp2.mpg": [*_SRC_V, *_SRC_A, "-c:v", "mpeg2video", "-c:a", "mp2", "-f", "mpeg"],
    "mpeg2_mp2.vob": [*_SRC_V, *_SRC_A, "-c:v", "mpeg2video", "-c:a", "mp2", "-f", "vob"],
    "h264_mp2.mpg": [*_SRC_V, *_SRC_A, *_X264, "-c:a", "mp2", "-shortest", "-f", "vob"],
    "audio.mp3": [*_SRC_A, "-c:a", "libmp3lame"],
    "audio_8k_mono.wav": [*_SRC_A, "-ar", "8000", "-ac", "1", "-c:a", "pcm_s16le"],
    "counter.mp4": [
        *("-f", "lavfi", "-i", "color=c=black:s=64x48:r=30:d={d},format=gray"),
        *("-vf", "geq=lum='mod(N*8,256)',format=yuv420p"),
        *_X264,
        *("-g", "45", "-crf", "10"),
    ],
}


def amr_file(seconds: int) -> bytes:
    """An AMR-NB file (what voice recorders and feature phones write) made by hand: the
    ``#!AMR`` header and 50 frames a second of mode 7 (12.2 kbit/s: a table-of-contents byte
    and 31 payload bytes). Any payload decodes (a parametric codec), so pseudo-random bytes
    give a valid recording without an AMR encoder."""
    rng = random.Random(7)
    frames = (b"\x3c" + rng.randbytes(31) for _ in range(50 * seconds))
    return b"#!AMR\n" + b"".join(frames)


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
        if name == "audio.amr":  # no AMR encoder in stock ffmpeg builds: see amr_file
            path.write_bytes(amr_file(3))
            return path
        if name == "audio.mp3" and not has_encoder("libmp3lame"):
            pytest.skip("this ffmpeg has no libmp3lame encoder")
        rate = "44100" if name.startswith("audio") else "48000"
        ffmpeg(*(a.format(d=3, r=rate) for a in RECIPES[name]), str(path))
        return path

    return make
