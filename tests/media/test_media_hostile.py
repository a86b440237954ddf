"""Hostile inputs: each is refused with a reason, and nothing but the input is read.

"Nothing else is read" is checked with a canary file next to the input: its access time is
set far in the past, and on a file system that records reads (relatime updates an access
time older than the modification time) a read would move it. A control run with plain
ffprobe, without our confinement, shows that the canary does detect the read.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.media.errors import MediaError
from ingest.media.fingerprint import fingerprint
from ingest.media.probe import ProbeInfo, StreamInfo, probe, probe_limits
from ingest.media.render import make_proxy
from ingest.media.sandbox import Limits
from tests.media.media_tools import FFPROBE, ffmpeg


def canary(directory: Path, name: str = "canary.ts") -> Path:
    path = directory / name
    path.write_bytes(b"root:x:0:0:canary-secret\n" * 100)
    os.utime(path, (1_000_000, 2_000_000_000))  # atime far before mtime
    return path


def was_read(path: Path) -> bool:
    return path.stat().st_atime > 1_000_000


def atime_works(tmp_path: Path) -> bool:
    probe_file = canary(tmp_path, "atime-check")
    probe_file.read_bytes()
    works = was_read(probe_file)
    probe_file.unlink()
    return works


async def refused(path: Path) -> str:
    with pytest.raises(MediaError) as err:
        await probe(path)
    reason = err.value.reason
    assert reason and "canary-secret" not in reason and "root:" not in reason
    assert str(path.parent) not in reason  # no path in the reason
    return reason


async def test_zero_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    assert await refused(path) == "empty file (0 bytes)"


async def test_random_bytes_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "random.mp4"
    path.write_bytes(random.Random(7).randbytes(64 * 1024))
    assert await refused(path)


async def test_mp4_truncated_before_moov(sample: Callable[[str], Path], tmp_path: Path) -> None:
    whole = tmp_path / "whole.mp4"
    ffmpeg("-i", str(sample("h264_aac.mp4")), "-c", "copy", str(whole))  # moov at the end
    data = whole.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat") > 0
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert await refused(cut) == "truncated (no moov atom)"


def _plain_ffprobe_reads(path: Path, secret: Path, *extra: str) -> bool:
    subprocess.run(
        [FFPROBE, "-v", "quiet", *extra, "-show_format", "-i", str(path)],
        capture_output=True,
        timeout=60,
    )
    return was_read(secret)


def _playlist(path: Path, target: str) -> Path:
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n")
    return path


async def test_hls_playlist_named_mp4(tmp_path: Path) -> None:
    assert await refused(_playlist(tmp_path / "a.mp4", "file:/etc/passwd")) == (
        "format hls not allowed"
    )
    secret = canary(tmp_path)
    path = _playlist(tmp_path / "b.mp4", str(secret))
    assert await refused(path) == "format hls not allowed"
    if atime_works(tmp_path):
        assert not was_read(secret)
        assert _plain_ffprobe_reads(path, secret)  # the control: unconfined, it is read


async def test_ffconcat_named_avi(tmp_path: Path) -> None:
    secret = canary(tmp_path)
    path = tmp_path / "list.avi"
    path.write_text(f"ffconcat version 1.0\nfile '{secret.name}'\nfile '/etc/passwd'\n")
    assert await refused(path) == "format concat not allowed"
    with pytest.raises(MediaError):
        await make_proxy(path, tmp_path, _claimed_avi(path))  # forced -f avi: just bad data
    if atime_works(tmp_path):
        assert not was_read(secret)
        assert _plain_ffprobe_reads(path, secret, "-safe", "0")


def _claimed_avi(path: Path) -> ProbeInfo:
    """A ProbeInfo claiming the playlist is an AVI (as if probe had been fooled)."""
    return ProbeInfo(
        format_name="avi",
        demuxer="avi",
        size_bytes=path.stat().st_size,
        duration_ms=1000,
        bit_rate=None,
        streams=(StreamInfo(0, "video", "mjpeg"),),
        video_index=0,
        video_codec="mjpeg",
        pix_fmt="yuvj420p",
        width=320,
        height=240,
    )


async def test_absurd_declared_dimensions(tmp_path: Path) -> None:
    raw = tmp_path / "raw.avi"
    ffmpeg(
        *("-f", "lavfi", "-i", "color=red:s=16x16:r=25", "-frames:v", "1"),
        *("-c:v", "rawvideo", "-pix_fmt", "bgr24", str(raw)),
    )
    data = bytearray(raw.read_bytes())
    avih, strf = data.find(b"avih") + 8, data.find(b"strf") + 8
    struct.pack_into("<II", data, avih + 32, 20000, 16)  # dwWidth, dwHeight
    struct.pack_into("<ii", data, strf + 4, 20000, 16)  # biWidth, biHeight
    wide = tmp_path / "wide.avi"
    wide.write_bytes(bytes(data))
    assert await refused(wide) == "declared dimensions 20000x16 exceed 16384"


def _declare_hours(src: Path, dst: Path, hours: int) -> None:
    """Rewrite the movie and track headers of a small MP4 to claim ``hours``."""
    data = bytearray(src.read_bytes())
    mvhd = data.find(b"mvhd")
    movie_scale = struct.unpack_from(">I", data, mvhd + 16)[0]
    struct.pack_into(">I", data, mvhd + 20, hours * 3600 * movie_scale)
    tkhd = data.find(b"tkhd")
    struct.pack_into(">I", data, tkhd + 24, hours * 3600 * movie_scale)
    dst.write_bytes(bytes(data))


async def test_tiny_file_claiming_ten_hours(tmp_path: Path) -> None:
    small = tmp_path / "small.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=1"),
        *("-c:v", "libx264", "-pix_fmt", "yuv420p", str(small)),
    )
    claim = tmp_path / "tenhours.mp4"
    _declare_hours(small, claim, 10)
    size = claim.stat().st_size
    assert size < 20_000
    reason = await refused(claim)
    assert reason == f"declared duration 10.0 h is impossible for a {size}-byte file"
    huge = tmp_path / "thirty.mp4"
    _declare_hours(small, huge, 30)
    assert await refused(huge) == "declared duration 30.0 h exceeds 24 h"


async def test_slow_decode_times_out(sample: Callable[[str], Path]) -> None:
    src = sample("h264_aac.mp4")
    info = await probe(src)
    with pytest.raises(MediaError, match=r"^timed out after 0.05 s$"):
        await fingerprint(src, info, limits=Limits(wall_s=0.05))


async def test_directory_and_missing_file(tmp_path: Path) -> None:
    assert await refused(tmp_path) == "not a regular file"
    with pytest.raises(MediaError, match="cannot read file"):
        await probe(tmp_path / "missing.mp4")


async def test_hundred_stream_mkv_names_the_stream_limit_not_memory(
    sample: Callable[[str], Path], tmp_path: Path
) -> None:
    """FFmpeg refuses stream 65 with ENOMEM; the reason must name the limit that applied (the
    sandbox's stream limit), not a memory limit, whatever memory the configuration grants."""
    src = sample("video_only.mp4")
    path = tmp_path / "streams.mkv"
    ffmpeg("-i", str(src), *("-map", "0:v") * 100, "-t", "0.5", "-c", "copy", str(path))
    configured = Limits(memory_bytes=2048 << 20, memory_origin="media.memory_limit_mb = 2048")
    for limits in (None, probe_limits(configured)):
        with pytest.raises(MediaError) as err:
            await probe(path, limits=limits)
        reason = err.value.reason
        assert reason == "too many streams (more than 64: the media sandbox's stream limit)"
        assert "memory" not in reason


async def test_memory_limit_reason_names_its_value_and_origin(
    sample: Callable[[str], Path],
) -> None:
    """A run that does hit RLIMIT_AS says which limit applied and where it comes from: the
    configured one in a job (the probe included), the probe's own default otherwise."""
    src = sample("h264_aac.mp4")
    tiny = Limits(memory_bytes=64 << 20, memory_origin="media.memory_limit_mb = 64")
    with pytest.raises(MediaError) as err:
        await probe(src, limits=probe_limits(tiny))
    assert err.value.reason == "memory limit exceeded (64 MiB: media.memory_limit_mb = 64)"
    assert probe_limits(None).memory_origin == "the probe's built-in default"
    assert probe_limits(None).memory_bytes == 1 << 30
