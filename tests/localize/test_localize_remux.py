"""Remuxes from and into every container a recording arrives in: never called re-encoded.

The originals here are what platforms and recorders write (an MPEG-TS of a GB/T 28181
platform, an MP4 of a body camera); the copies are ``ffmpeg -c copy`` remuxes. The original's
fingerprint is made as the media job makes it; no vault is needed for the comparison itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.forensics.localize import Localization, Original, localize
from ingest.media import Limits, Tools, fingerprint, probe
from tests.localize.localize_fixtures import ffmpeg

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
TOOLS, LIMITS = Tools(), Limits()
_SRC = [
    *("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=3"),
    *("-f", "lavfi", "-i", "sine=frequency=440:duration=3:sample_rate=48000"),
    *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25"),
    *("-c:a", "aac", "-shortest"),
]


async def against(original: Path, copy: Path) -> Localization:
    info = await probe(original)
    fp = await fingerprint(original, info)
    return await localize(Original(fp, "e1", "0" * 64, "test"), copy, tools=TOOLS, limits=LIMITS)


@pytest.fixture(scope="module")
def platform_ts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ts") / "platform.ts"
    ffmpeg(*_SRC, "-f", "mpegts", str(path))
    return path


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv", "ts"])
async def test_attack_remux_of_a_platform_ts_is_not_called_reencoded(
    platform_ts: Path, tmp_path: Path, ext: str
) -> None:
    copy = tmp_path / f"copy.{ext}"
    ffmpeg("-i", str(platform_ts), "-c", "copy", str(copy))
    got = await against(platform_ts, copy)
    assert got.comparison.verdict == "identical" and got.exit_code == 0, got.text()
    assert "re-encoded" not in got.text().lower()


async def test_copy_lacking_the_priming_is_not_called_reencoded(
    tmp_path: Path,
) -> None:
    """An original that kept its AAC priming (MPEG-TS) against an MP4 whose edit list trims
    it: the copy's audio is aligned 1024 samples late, only its first segment differs, and
    the report says so instead of calling the audio re-encoded."""
    mp4, ts = tmp_path / "camera.mp4", tmp_path / "kept.ts"
    ffmpeg(*_SRC, str(mp4))
    ffmpeg("-i", str(mp4), "-c", "copy", str(ts))
    got = await against(ts, mp4)
    c = got.comparison
    assert got.audio_shift == -1024
    assert c.verdict == "similar" and c.exact_video is True and c.audio_ranges == ()
    assert c.exact_audio_ranges == ((0, 1000),)
    text = got.text()
    assert "RE-ENCODED" not in text and "none identical" not in text, text
    assert "audio: identical except 00:00.000–00:01.000" in text
    assert "lacks the original's first 1024 samples" in text


@pytest.mark.parametrize("ext", ["mov", "mkv", "ts"])
async def test_attack_remux_of_a_camera_mp4_is_not_called_reencoded(
    tmp_path: Path, ext: str
) -> None:
    """A body camera's H.264/AAC MP4 (AAC priming trimmed by its edit list) remuxed losslessly
    into each container a copy arrives in: never "re-encoded", and its video identical."""
    mp4, copy = tmp_path / "camera.mp4", tmp_path / f"copy.{ext}"
    ffmpeg(*_SRC, str(mp4))
    ffmpeg("-i", str(mp4), "-c", "copy", str(copy))
    got = await against(mp4, copy)
    text = got.text()
    assert got.comparison.exact_video is True, text
    assert "re-encoded" not in text.lower() and "none identical" not in text, text
    assert got.comparison.verdict in ("identical", "similar"), text
