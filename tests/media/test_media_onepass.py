"""Proxy, poster and fingerprint from one decode (ingest.media.onepass), against references."""

from __future__ import annotations

import hashlib
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.media.errors import MediaToolError
from ingest.media.fingerprint import fingerprint
from ingest.media.fpmodel import EMPTY, merkle_root
from ingest.media.onepass import make_renditions
from ingest.media.probe import ProbeInfo, probe
from ingest.media.render import make_poster, make_proxy
from ingest.media.tools import Tools
from tests.media.media_tools import FFMPEG, ffmpeg


def _naive(cmd: list[str]) -> bytes:
    return subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", *cmd], capture_output=True, check=True
    ).stdout


def _naive_segments(src: Path, info: ProbeInfo) -> list[tuple[bytes, bytes]]:
    """(video, audio) SHA-256 per 1 s segment by a second, plain decode to stdout, hashed
    here: each frame hashed, the frame digests of a segment hashed; the audio's s16le bytes
    cut at exact one-second sample boundaries. Only for constant 30 fps clips."""
    video: list[bytes] = []
    if info.video_index is not None:
        raw = _naive(
            [
                *("-noautorotate", "-i", str(src), "-map", f"0:{info.video_index}"),
                *("-fps_mode", "passthrough", "-pix_fmt", str(info.pix_fmt)),
                *("-f", "rawvideo", "-"),
            ]
        )
        size = (info.width or 0) * (info.height or 0) * 3 // 2  # yuv420p
        digests = [hashlib.sha256(raw[i : i + size]).digest() for i in range(0, len(raw), size)]
        video = [
            hashlib.sha256(b"".join(digests[i : i + 30])).digest()
            for i in range(0, len(digests), 30)
        ]
    audio: list[bytes] = []
    if info.audio_index is not None:
        pcm = _naive(["-i", str(src), "-map", f"0:{info.audio_index}", "-f", "s16le", "-"])
        step = (info.sample_rate or 0) * 2 * (info.channels or 0)
        audio = [hashlib.sha256(pcm[i : i + step]).digest() for i in range(0, len(pcm), step)]
    n = max(len(video), len(audio))
    return [
        (video[i] if i < len(video) else EMPTY, audio[i] if i < len(audio) else EMPTY)
        for i in range(n)
    ]


@pytest.mark.parametrize(
    "name", ["hevc_aac.mp4", "h264_aac.mp4", "portrait_rotated.mp4", "audio.m4a"]
)
async def test_one_decode_gives_what_separate_runs_give(
    name: str, sample: Callable[[str], Path], tmp_path: Path
) -> None:
    src = sample(name)
    info = await probe(src)
    one = tmp_path / "one"
    one.mkdir()
    out = await make_renditions(src, one, info)
    assert out.shared and not out.failed
    want = {"proxy", "fingerprint"} | ({"poster"} if info.has_video else set())
    assert set(out.made) == want
    args = {r.args for r in out.made.values()}
    assert len(args) == 1  # one ffmpeg run made all of them
    (argv,) = args
    assert argv.count("-i") == 1 and "-noautorotate" in argv

    # the fingerprint: the one the fingerprint module computes, and a naive second decode's
    reference = await fingerprint(src, info)
    assert out.fingerprint == reference
    assert out.made["fingerprint"].path.read_bytes() == reference.to_bytes()
    naive = _naive_segments(src, info)
    assert [(s.video_sha256, s.audio_sha256) for s in reference.segments] == naive
    assert reference.merkle_root == merkle_root(reference.segments)

    # proxy and poster: byte for byte what the separate functions make
    (tmp_path / "alone").mkdir()
    proxy = await make_proxy(src, tmp_path / "alone", info)
    assert out.made["proxy"].method == proxy.method
    assert out.made["proxy"].path.read_bytes() == proxy.path.read_bytes()
    if info.has_video:
        poster = await make_poster(src, tmp_path / "alone", info)
        assert out.made["poster"].path.read_bytes() == poster.path.read_bytes()
        assert out.made["poster"].method == "frame"
    placeholders = out.made["proxy"].portable_args(src)
    assert "{input}" in placeholders and "{output}" in placeholders
    assert not any(p.endswith(".part") for p in placeholders)
    assert sorted(p.name for p in one.iterdir()) == sorted(r.path.name for r in out.made.values())


async def test_poster_failure_on_audio_leaves_proxy_and_fingerprint(
    sample: Callable[[str], Path], tmp_path: Path
) -> None:
    src = sample("audio.m4a")
    info = await probe(src)
    out = await make_renditions(src, tmp_path, info, kinds=["proxy", "poster", "fingerprint"])
    assert set(out.failed) == {"poster"} and "no video" in out.failed["poster"].reason
    assert set(out.made) == {"proxy", "fingerprint"} and out.shared
    assert out.fingerprint == await fingerprint(src, info)


async def test_poster_with_nothing_at_the_seek_time_takes_the_first_frame(tmp_path: Path) -> None:
    """A header claiming more time than the pictures hold: the shared run's poster is empty,
    so it is made alone from the first frame; proxy and fingerprint come from the shared run."""
    src = tmp_path / "claims.mkv"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=s=160x120:r=25:d=0.4"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src)),
    )
    data = bytearray(src.read_bytes())
    at = data.find(b"\x44\x89\x88")  # Segment Info Duration (8-byte float, ms)
    data[at + 3 : at + 11] = struct.pack(">d", 10_000.0)
    src.write_bytes(bytes(data))
    info = await probe(src)
    out = await make_renditions(src, tmp_path, info)
    assert not out.failed and out.shared
    assert out.made["poster"].method == "first-frame"
    assert out.made["proxy"].args == out.made["fingerprint"].args != out.made["poster"].args


async def test_timestamps_running_past_the_declared_duration_fail_only_the_fingerprint(
    tmp_path: Path,
) -> None:
    """The fingerprint refuses video that runs far past what the header declares; that
    failure ends the shared run, and proxy and poster are then made alone."""
    src = tmp_path / "understated.mkv"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=s=64x48:r=2:d=70"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(src)),
    )
    data = bytearray(src.read_bytes())
    at = data.find(b"\x44\x89\x88")
    data[at + 3 : at + 11] = struct.pack(">d", 1_000.0)
    src.write_bytes(bytes(data))
    info = await probe(src)
    assert info.duration_ms == 1000
    out = await make_renditions(src, tmp_path, info)
    assert set(out.failed) == {"fingerprint"}
    assert "past the declared duration" in out.failed["fingerprint"].reason
    assert set(out.made) == {"proxy", "poster"} and not out.shared
    assert out.fingerprint is None


async def test_missing_ffmpeg_is_raised_not_counted_as_a_failed_rendition(
    sample: Callable[[str], Path], tmp_path: Path
) -> None:
    src = sample("h264_aac.mp4")
    info = await probe(src)
    with pytest.raises(MediaToolError):
        await make_renditions(src, tmp_path, info, tools=Tools(ffmpeg=str(tmp_path / "nope")))
