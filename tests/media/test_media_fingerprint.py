"""Fingerprints: stream consumers, frame sizes, serialisation, and tamper localisation."""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.media.compare import compare
from ingest.media.errors import MediaError
from ingest.media.fingerprint import EMPTY, Fingerprint, fingerprint
from ingest.media.fpstreams import (
    AudioSegments,
    Envelope,
    FrameDigests,
    VideoSegments,
    Y4MFrameDigests,
)
from ingest.media.pixfmt import frame_size
from ingest.media.probe import probe
from tests.media.media_tools import FFMPEG, ffmpeg
from vault.errors import IntegrityError

fingerprint_module = importlib.import_module("ingest.media.fingerprint")

# ---------------------------------------------------------------- consumers (no ffmpeg)


def feed(consumer: Callable[[memoryview], None], data: bytes, cuts: list[int]) -> None:
    """Deliver ``data`` in pieces cut at the given offsets (any chunking must give one result)."""
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for a, b in itertools.pairwise(bounds):
        consumer(memoryview(data)[a:b])


@given(st.binary(min_size=0, max_size=600), st.lists(st.integers(0, 10**6), max_size=8))
def test_frame_digests_any_chunking(data: bytes, cuts: list[int]) -> None:
    size = 7
    data = data[: len(data) - len(data) % size]
    got: list[bytes] = []
    digests = FrameDigests(size, got.append)
    feed(digests, data, cuts)
    digests.finish()
    assert got == [hashlib.sha256(data[i : i + size]).digest() for i in range(0, len(data), size)]


def test_frame_digests_reject_partial_frame() -> None:
    digests = FrameDigests(4, lambda d: None)
    digests(memoryview(b"abcdef"))
    with pytest.raises(MediaError):
        digests.finish()


@given(
    st.lists(st.binary(min_size=6, max_size=6), max_size=6),
    st.lists(st.integers(0, 10**6), max_size=10),
    st.sampled_from([b"", b" Ixyz"]),
)
def test_y4m_frame_digests_hash_only_the_frames(
    frames: list[bytes], cuts: list[int], params: bytes
) -> None:
    """Headers (any chunking, frame headers with or without parameters) are not hashed."""
    stream = b"YUV4MPEG2 W2 H2 F30:1 Ip C420jpeg\n"
    stream += b"".join(b"FRAME" + params + b"\n" + f for f in frames)
    got: list[bytes] = []
    digests = Y4MFrameDigests(6, got.append)
    feed(digests, stream, cuts)
    digests.finish()
    assert got == [hashlib.sha256(f).digest() for f in frames]


@pytest.mark.parametrize(
    "stream",
    [
        b"YUV4MPEG2 W2 H2\nFRAME\nabc",  # ends inside a frame
        b"YUV4MPEG2 W2 H2\nFRA",  # ends inside a frame header
        b"RIFF W2 H2\nFRAME\nabcdef",  # not a YUV4MPEG2 stream
        b"YUV4MPEG2 W2 H2\nFRAMEX\nabcdef",  # not a frame header
        b"YUV4MPEG2 W2 H2\nFRAME\nabcdefFRAME\nabcdefg\n",  # frame longer than its size
        b"YUV4MPEG2 " + b"x" * 5000,  # a header line without end
    ],
)
def test_y4m_frame_digests_reject_malformed(stream: bytes) -> None:
    digests = Y4MFrameDigests(6, lambda d: None)
    with pytest.raises(MediaError):
        digests(memoryview(stream))
        digests.finish()


@given(
    rate=st.sampled_from([8000, 11025, 22050, 44100, 48000]),
    channels=st.integers(1, 3),
    segment_ms=st.sampled_from([100, 250, 1000, 1500]),
    seconds_x10=st.integers(0, 25),
    cuts=st.lists(st.integers(0, 10**7), max_size=6),
)
def test_audio_segments_cut_at_exact_samples(
    rate: int, channels: int, segment_ms: int, seconds_x10: int, cuts: list[int]
) -> None:
    frame = 2 * channels
    total = rate * seconds_x10 // 10
    data = bytes(i % 251 for i in range(total * frame))
    audio = AudioSegments(rate, channels, segment_ms, 10**6)
    feed(audio, data, cuts)
    parts = audio.finish()
    assert audio.samples == total == sum(p.count for p in parts)
    start = 0
    for k, part in enumerate(parts):
        end = min(total, (k + 1) * segment_ms * rate // 1000)
        assert part.count == end - start
        assert part.sha256 == hashlib.sha256(data[start * frame : end * frame]).digest()
        start = end


def test_video_segments_follow_timestamps() -> None:
    video = VideoSegments(1000, 100)
    video.times(memoryview(b"#software: x\n#tb 0: 1/1000\n"))
    pts = [0, 400, 990, 1000, 980, 3500]  # 980 goes backwards: stays in segment 1
    for i, p in enumerate(pts):
        video.add_digest(bytes([i]) * 32)
        video.add_grid(bytes([i * 10]) * 144)
        video.times(memoryview(f"0, {p}, {p}, 1, 144, 0x0\n".encode()))
    video.times.finish()
    parts = video.finish()
    assert [p.count for p in parts] == [3, 2, 0, 1]
    assert (
        parts[0].sha256
        == hashlib.sha256(bytes([0]) * 32 + bytes([1]) * 32 + bytes([2]) * 32).digest()
    )
    assert parts[2].sha256 == EMPTY and parts[2].grid == b""
    assert parts[1].grid == bytes([35]) * 144  # mean of 30 and 40
    assert video.frames == 6 and video.last_ms == 3500


def test_video_timestamp_jump_is_refused() -> None:
    video = VideoSegments(1000, 10)
    video.times(memoryview(b"#tb 0: 1/1\n0, 0, 0, 1, 144, 0x0\n0, 99999, 99999, 1, 144, 0x0\n"))
    video.add_digest(b"\0" * 32)
    video.add_grid(b"\0" * 144)
    video.add_digest(b"\0" * 32)
    with pytest.raises(MediaError, match="timestamps"):
        video.add_grid(b"\0" * 144)


def test_envelope_rms() -> None:
    env = Envelope(4)
    samples = [1000, -1000, 1000, -1000, 0, 0, 0, 0, 3, 4]
    env(memoryview(b"".join(s.to_bytes(2, "little", signed=True) for s in samples)))
    assert env.finish() == [1000, 0, 3]  # last window: isqrt((9 + 16) / 2) = 3


@pytest.mark.parametrize(
    "pix_fmt",
    ["yuv420p", "yuvj422p", "yuv444p", "nv12", "yuyv422", "rgb24", "yuv420p10le", "gray"],
)
def test_frame_size_matches_ffmpeg(pix_fmt: str) -> None:
    out = subprocess.run(
        [
            *(FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=320x240:d=0.04"),
            *("-frames:v", "1", "-vf", "scale=321:243", "-pix_fmt", pix_fmt, "-f", "rawvideo", "-"),
        ],
        capture_output=True,
        check=True,
    ).stdout
    assert frame_size(pix_fmt, 321, 243) == len(out)
    assert frame_size("no-such-format", 321, 243) is None


# ---------------------------------------------------------------- recordings


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 6 s original and copies: remuxed, re-encoded, 4th second replaced, 2 s silenced."""
    d = tmp_path_factory.mktemp("fingerprint")
    p = {n: d / n for n in ("orig.mp4", "remux.mov", "reenc.mp4", "video.mp4", "audio.mp4")}
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=s=320x240:r=30:d=6"),
        *("-f", "lavfi", "-i", "sine=f=440:r=48000:d=6"),
        *("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "60"),
        *("-c:a", "aac", "-shortest", str(p["orig.mp4"])),
    )
    orig = str(p["orig.mp4"])
    ffmpeg("-i", orig, "-c", "copy", "-movflags", "+faststart", str(p["remux.mov"]))
    ffmpeg(
        *("-i", orig, "-vf", "scale=240:180", "-c:v", "libx264", "-preset", "veryfast"),
        *("-crf", "28", "-c:a", "aac", "-b:a", "96k", str(p["reenc.mp4"])),
    )
    ffmpeg(
        *("-i", orig, "-f", "lavfi", "-i", "smptebars=s=320x240:r=30:d=6"),
        *("-filter_complex", "[0:v][1:v]overlay=enable='gte(t,3)*lt(t,4)'[v]"),
        *("-map", "[v]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast"),
        *("-c:a", "copy", str(p["video.mp4"])),
    )
    ffmpeg(
        *("-i", orig, "-af", "volume=enable='gte(t,2)*lt(t,4)':volume=0"),
        *("-c:v", "copy", "-c:a", "aac", str(p["audio.mp4"])),
    )
    return p


async def fp_of(path: Path) -> Fingerprint:
    return await fingerprint(path, await probe(path))


def near(got: tuple[tuple[int, int], ...], want: tuple[int, int], slack: int = 1000) -> bool:
    return len(got) == 1 and all(abs(g - w) <= slack for g, w in zip(got[0], want, strict=True))


async def test_localisation(recordings: dict[str, Path]) -> None:
    original = await fp_of(recordings["orig.mp4"])
    assert len(original.segments) in (6, 7)

    same = compare(original, await fp_of(recordings["orig.mp4"]))
    assert same.verdict == "identical" and same.exact_video and same.exact_audio

    remux = compare(original, await fp_of(recordings["remux.mov"]))
    assert remux.verdict == "identical" and remux.exact_video is True

    reenc = compare(original, await fp_of(recordings["reenc.mp4"]))
    assert reenc.verdict == "similar" and reenc.same_recording
    assert reenc.exact_video is False and reenc.video_ranges == reenc.audio_ranges == ()

    video = compare(original, await fp_of(recordings["video.mp4"]))
    assert video.verdict == "altered" and video.same_recording
    assert near(video.video_ranges, (3000, 4000)) and video.audio_ranges == ()
    assert video.exact_audio is True  # audio stream copied: samples identical

    audio = compare(original, await fp_of(recordings["audio.mp4"]))
    assert audio.verdict == "altered"
    assert near(audio.audio_ranges, (2000, 4000)) and audio.video_ranges == ()
    assert audio.exact_video is True and audio.exact_video_ranges == ()


async def test_not_the_same_recording(recordings: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", "mandelbrot=s=320x240:r=30", "-f", "lavfi"),
        *("-i", "anoisesrc=d=6:r=48000", "-t", "6", "-c:v", "libx264", "-preset", "ultrafast"),
        *("-pix_fmt", "yuv420p", "-c:a", "aac", str(other)),
    )
    original = await fp_of(recordings["orig.mp4"])
    result = compare(original, await fp_of(other))
    assert result.verdict == "different" and not result.same_recording
    short = replace(original, segments=original.segments[:2], video=(("last_ms", 1966),))
    assert compare(original, short).verdict == "different"


async def test_serialisation_and_tamper_evidence(recordings: dict[str, Path]) -> None:
    original = await fp_of(recordings["orig.mp4"])
    data = original.to_bytes()
    json.loads(data, parse_float=lambda text: pytest.fail(f"float {text} in fingerprint"))
    assert Fingerprint.from_bytes(data) == original
    tampered = data.replace(original.segments[2].video_sha256.hex().encode(), b"0" * 64)
    with pytest.raises(IntegrityError, match="Merkle root"):
        Fingerprint.from_bytes(tampered)
    with pytest.raises(IntegrityError):
        Fingerprint.from_bytes(data.replace(b'"v":1', b'"v":2'))
    with pytest.raises(IntegrityError):
        Fingerprint.from_bytes(b'{"v":1}')


async def test_unlisted_pixel_format_is_measured(tmp_path: Path) -> None:
    """pal8 is not in the size table: one frame is decoded to learn its size (w*h + palette)."""
    path = tmp_path / "pal.avi"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10:d=1"),
        *("-c:v", "rawvideo", "-pix_fmt", "pal8", str(path)),
    )
    info = await probe(path)
    assert info.pix_fmt == "pal8" and frame_size("pal8", 64, 48) is None
    first = await fingerprint(path, info)
    assert dict(first.video)["frames"] == 10
    assert await fingerprint(path, info) == first  # deterministic


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv422p", "yuv444p", "gray"])
async def test_y4m_and_rawvideo_paths_agree(
    pix_fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The YUV4MPEG2 transport hashes exactly what the rawvideo one does: same fingerprint."""
    path = tmp_path / "clip.mkv"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=s=96x64:r=15:d=2"),
        *("-c:v", "ffv1", "-pix_fmt", pix_fmt, str(path)),
    )
    info = await probe(path)
    assert info.pix_fmt == pix_fmt in fingerprint_module.Y4M_PIX_FMTS
    via_y4m = await fingerprint(path, info)
    monkeypatch.setattr(fingerprint_module, "Y4M_PIX_FMTS", frozenset())
    via_raw = await fingerprint(path, info)
    assert via_y4m == via_raw and dict(via_y4m.video)["frames"] == 30
    raw = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"],
        check=True,
        capture_output=True,
    ).stdout
    size = frame_size(pix_fmt, 96, 64)
    assert size is not None and len(raw) == 30 * size
    digests = b"".join(
        hashlib.sha256(raw[i : i + size]).digest() for i in range(0, 15 * size, size)
    )
    assert via_y4m.segments[0].video_sha256 == hashlib.sha256(digests).digest()
