"""Probe, proxy, poster, clip and fingerprint on each kind of generated recording."""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.media.errors import MediaError
from ingest.media.fingerprint import Fingerprint, make_fingerprint
from ingest.media.plan import plan_renditions
from ingest.media.probe import probe
from ingest.media.render import ffmpeg_version, make_clip, make_poster, make_proxy
from tests.media.media_tools import FFMPEG, decode_errors, ffmpeg, ffprobe_json
from verify.canonical import canonical_json
from verify.merkle import leaf_hash, root_from_leaf_hashes

# name -> (expected proxy method, has video, has audio, upright size or None)
CASES: dict[str, tuple[str, bool, bool, tuple[int, int] | None]] = {
    "h264_aac.mp4": ("remux", True, True, (320, 240)),
    "hevc_aac.mp4": ("transcode", True, True, (320, 240)),
    "mjpeg_pcm.avi": ("transcode", True, True, (320, 240)),
    "audio.wav": ("audio", False, True, None),
    "audio.m4a": ("audio", False, True, None),
    "audio.aac": ("audio", False, True, None),
    "video_only.mp4": ("remux", True, False, (320, 240)),
    "portrait_240x320.mp4": ("remux", True, False, (240, 320)),
    "portrait_rotated.mp4": ("remux", True, True, (240, 320)),
    # Containers recorders and platforms write (DEFAULT_EXTENSIONS): each probed, proxied,
    # postered (video) and fingerprinted through the sandbox's format whitelist.
    "h264_aac.ts": ("transcode", True, True, (320, 240)),
    "h264_aac.m2ts": ("transcode", True, True, (320, 240)),
    "h264_aac.mkv": ("transcode", True, True, (320, 240)),
    "h264_aac.mov": ("remux", True, True, (320, 240)),
    "h264_aac.3gp": ("remux", True, True, (320, 240)),
    "h263_aac.3gp": ("transcode", True, True, (176, 144)),
    "mpeg2_mp2.mpg": ("transcode", True, True, (320, 240)),
    "mpeg2_mp2.vob": ("transcode", True, True, (320, 240)),
    "h264_mp2.mpg": ("transcode", True, True, (320, 240)),
    "audio.mp3": ("audio", False, True, None),
    "audio.amr": ("audio", False, True, None),
    "audio_8k_mono.wav": ("audio", False, True, None),
}


def streams(path: Path) -> dict[str, dict[str, object]]:
    data = ffprobe_json(path)
    out: dict[str, dict[str, object]] = {}
    for s in data["streams"]:  # type: ignore[attr-defined]
        out.setdefault(s["codec_type"], s)
    return out


@pytest.mark.parametrize("name", sorted(CASES))
async def test_probe_proxy_poster_fingerprint(
    name: str, sample: Callable[[str], Path], tmp_path: Path
) -> None:
    method, has_video, has_audio, upright = CASES[name]
    src = sample(name)
    info = await probe(src)
    assert info.has_video == has_video and info.has_audio == has_audio
    assert info.duration_ms is not None and 2900 <= info.duration_ms <= 3100
    json_info = info.to_json()
    canonical_json(json_info)  # ints and strings only: no float sneaks in
    if upright:
        assert (info.display_width, info.display_height) == upright
        assert info.portrait == (upright[1] > upright[0])
        assert info.fps in ("30/1", "25/1")
    if has_audio:
        assert info.sample_rate in (8000, 44100, 48000) and info.channels in (1, 2)

    proxy = await make_proxy(src, tmp_path, info)
    assert proxy.method == method and proxy.kind == "proxy"
    assert proxy.path.name == ("proxy.m4a" if method == "audio" else "proxy.mp4")
    assert oct(proxy.path.stat().st_mode & 0o777) == "0o600"
    assert proxy.args[0] == FFMPEG and proxy.ffmpeg_version == ffmpeg_version()
    assert proxy.args[-1] == "file:" + str(tmp_path / proxy.args[-1].split("/")[-1])
    got = streams(proxy.path)
    assert ("video" in got) == has_video and ("audio" in got) == has_audio
    if has_video:
        assert got["video"]["codec_name"] == "h264" and got["video"]["pix_fmt"] == "yuv420p"
    if has_audio:
        assert got["audio"]["codec_name"] == "aac"
    assert decode_errors(proxy.path) == ""
    assert [p.name for p in tmp_path.iterdir()] == [proxy.path.name]  # no part file left

    assert ("poster" in plan_renditions(info)) == has_video  # audio gets no poster
    if has_video:
        poster = await make_poster(src, tmp_path, info)
        data = poster.path.read_bytes()
        assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9"
        pic = streams(poster.path)["video"]
        if upright:
            assert (pic["width"], pic["height"]) == upright
        assert poster.method == "frame"  # the picture at the seek time, not a fallback
    else:
        with pytest.raises(ValueError, match="no video"):
            await make_poster(src, tmp_path, info)

    rendition, fp = await make_fingerprint(src, tmp_path, info)
    assert rendition.path.read_bytes() == fp.to_bytes()
    assert Fingerprint.from_bytes(fp.to_bytes()) == fp
    assert fp.has_video == has_video and fp.has_audio == has_audio
    assert 3 <= len(fp.segments) <= 4
    leaves = [leaf_hash(s.video_sha256 + s.audio_sha256) for s in fp.segments]
    assert fp.merkle_root == root_from_leaf_hashes(leaves)
    if has_video:
        assert sum(s.frames for s in fp.segments) == dict(fp.video)["frames"] in (75, 90)
        assert all(len(s.luma) == 144 for s in fp.segments if s.frames)
    if has_audio:
        assert all(len(s.rms) == 10 for s in fp.segments[:3])


async def test_rotation_survives_remux(sample: Callable[[str], Path], tmp_path: Path) -> None:
    info = await probe(sample("portrait_rotated.mp4"))
    assert info.rotation == 90 and (info.width, info.height) == (320, 240)
    proxy = await make_proxy(sample("portrait_rotated.mp4"), tmp_path, info)
    again = await probe(proxy.path)
    assert again.rotation == 90 and again.portrait


async def test_portrait_transcode_is_upright_and_capped(
    sample: Callable[[str], Path], tmp_path: Path
) -> None:
    src = sample("portrait_rotated.mp4")
    info = await probe(src)
    proxy = await make_proxy(src, tmp_path, info, max_height=120)
    assert proxy.method == "transcode"
    out = await probe(proxy.path)
    assert (out.width, out.height, out.rotation) == (120, 160, 0)


async def test_clip_is_frame_exact(sample: Callable[[str], Path], tmp_path: Path) -> None:
    """counter.mp4 frame n has flat luma (8n mod 256); 1000-2000 ms must be frames 30..59."""
    src = sample("counter.mp4")
    info = await probe(src)
    clip = await make_clip(src, tmp_path, 1000, 2000, info)
    assert clip.path.name == "clip-1000-2000.mp4" and clip.method == "accurate-seek-reencode"
    i = clip.args.index("-i")
    assert clip.args[i - 3 : i] == ("-accurate_seek", "-ss", "1.000")
    lumas = subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-i",
            str(clip.path),
            "-vf",
            *("scale=1:1,format=gray", "-f", "rawvideo", "-"),
        ],
        capture_output=True,
        check=True,
    ).stdout
    expected = [(8 * n) % 256 for n in range(30, 60)]
    assert len(lumas) == 30
    assert all(abs(a - b) <= 3 for a, b in zip(lumas, expected, strict=True)), list(lumas)


async def test_clip_of_audio_only(sample: Callable[[str], Path], tmp_path: Path) -> None:
    src = sample("audio.wav")
    clip = await make_clip(src, tmp_path, 500, 1500, await probe(src))
    audio = streams(clip.path)["audio"]
    assert audio["codec_name"] == "aac"
    assert abs(float(str(audio["duration"])) - 1.0) < 0.05


async def test_failed_render_leaves_nothing(sample: Callable[[str], Path], tmp_path: Path) -> None:
    src = sample("h264_aac.mp4")
    info = await probe(src)
    with pytest.raises(MediaError, match="timed out"):
        await make_proxy(src, tmp_path, info, max_height=120, timeout=0.01)
    assert list(tmp_path.iterdir()) == []


async def test_weird_file_names_are_files(sample: Callable[[str], Path], tmp_path: Path) -> None:
    for name in ("-i.mp4", "http:x.mp4", "concat:a|b.mp4", "a b;$(x).mp4"):
        path = tmp_path / name
        os.link(sample("h264_aac.mp4"), path)
        assert (await probe(path)).video_codec == "h264"


async def test_probe_reports_device_tags(sample: Callable[[str], Path], tmp_path: Path) -> None:
    path = tmp_path / "tagged.mp4"
    ffmpeg(
        "-i",
        str(sample("h264_aac.mp4")),
        "-c",
        "copy",
        "-movflags",
        "+use_metadata_tags",
        "-metadata",
        "make=ACME\x01Cam",
        "-metadata",
        "model=BWC-9",
        "-metadata",
        "creation_time=2024-05-01T08:00:00Z",
        str(path),
    )
    info = await probe(path)
    tags = dict(info.device_tags)
    assert tags["make"] == "ACMECam" and tags["model"] == "BWC-9"  # control chars removed
    assert info.creation_time is not None and info.creation_time.startswith("2024-05-01T08:00")
    assert info.to_json()["device"] == tags


async def test_ts_poster_from_a_single_key_frame_recording(tmp_path: Path) -> None:
    """A short MPEG-TS with one key frame (what a platform export of a brief event is): an
    input-side seek lands past the key frame and decodes nothing; the poster must still be
    the picture at the seek time."""
    src = tmp_path / "export.ts"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=s=160x120:r=25:d=2"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "250"),
        *("-f", "mpegts", str(src)),
    )
    info = await probe(src)
    assert info.demuxer == "mpegts" and info.video_codec == "h264"
    poster = await make_poster(src, tmp_path, info)
    assert poster.method == "frame" and ffprobe_json(poster.path)["streams"]


async def test_poster_falls_back_to_the_first_frame(tmp_path: Path) -> None:
    """A header that claims more time than the pictures hold: nothing at the seek time, so
    the first decodable frame is the poster, and the rendition says so."""
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
    assert info.duration_ms == 10_000
    poster = await make_poster(src, tmp_path, info)
    assert poster.method == "first-frame" and "-ss" in poster.args
    assert poster.args[poster.args.index("-ss") + 1] == "0.000"
    assert streams(poster.path)["video"]["codec_name"] == "mjpeg"
