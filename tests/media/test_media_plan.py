"""Pure tests of proxy/poster/clip planning: no ffmpeg, no files."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.media.plan import (
    ms_to_seconds,
    plan_clip,
    plan_poster,
    plan_proxy,
    plan_renditions,
    poster_seek_ms,
    scale_filter,
)
from ingest.media.probe import ProbeInfo, StreamInfo

BASE = ProbeInfo(
    format_name="mov,mp4,m4a,3gp,3g2,mj2",
    demuxer="mov",
    size_bytes=1_000_000,
    duration_ms=10_000,
    bit_rate=800_000,
    streams=(StreamInfo(0, "video", "h264"), StreamInfo(1, "audio", "aac")),
    video_index=0,
    video_codec="h264",
    video_profile="High",
    pix_fmt="yuv420p",
    width=1280,
    height=720,
    fps="30/1",
    audio_index=1,
    audio_codec="aac",
    sample_rate=48000,
    channels=2,
)
NO_AUDIO = replace(BASE, audio_index=None, audio_codec=None, sample_rate=None, channels=None)
AUDIO_ONLY = replace(
    BASE,
    video_index=None,
    video_codec=None,
    video_profile=None,
    pix_fmt=None,
    width=None,
    height=None,
    fps=None,
    audio_index=0,
)


def arg(args: tuple[str, ...], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_h264_aac_mp4_within_cap_is_remuxed() -> None:
    plan = plan_proxy(BASE)
    assert plan.kind == "remux"
    assert plan.ext == "mp4" and plan.media_type == "video/mp4"
    assert arg(plan.output_args, "-c") == "copy"
    assert arg(plan.output_args, "-movflags") == "+faststart"
    assert "libx264" not in plan.output_args
    assert plan.output_args.count("-map") == 2


def test_h264_without_audio_is_remuxed() -> None:
    plan = plan_proxy(NO_AUDIO)
    assert plan.kind == "remux"
    assert plan.output_args[:2] == ("-map", "0:0") and plan.output_args.count("-map") == 1


def test_other_audio_codec_copies_video_and_encodes_aac() -> None:
    plan = plan_proxy(replace(BASE, audio_codec="pcm_s16le", channels=6, sample_rate=96000))
    assert plan.kind == "remux-video"
    assert arg(plan.output_args, "-c:v") == "copy"
    assert arg(plan.output_args, "-c:a") == "aac"
    assert arg(plan.output_args, "-b:a") == "128k"
    assert arg(plan.output_args, "-ac") == "2" and arg(plan.output_args, "-ar") == "48000"


@pytest.mark.parametrize(
    "change",
    [
        {"video_codec": "hevc"},
        {"pix_fmt": "yuv422p"},
        {"pix_fmt": "yuv420p10le"},
        {"demuxer": "avi", "format_name": "avi"},
        {"demuxer": "matroska", "format_name": "matroska,webm"},
        {"width": 1920, "height": 1080},
    ],
)
def test_anything_else_is_transcoded(change: dict[str, object]) -> None:
    plan = plan_proxy(replace(BASE, **change))  # type: ignore[arg-type]
    assert plan.kind == "transcode"
    args = plan.output_args
    assert arg(args, "-c:v") == "libx264"
    assert arg(args, "-preset") == "veryfast" and arg(args, "-crf") == "23"
    assert arg(args, "-pix_fmt") == "yuv420p"
    assert arg(args, "-c:a") == "aac" and arg(args, "-b:a") == "128k"
    assert arg(args, "-vf").endswith(",format=yuv420p")
    assert arg(args, "-f") == "mp4" and arg(args, "-movflags") == "+faststart"


def test_1080p_landscape_scales_height_to_cap() -> None:
    plan = plan_proxy(replace(BASE, width=1920, height=1080))
    assert arg(plan.output_args, "-vf") == "scale=-2:720,format=yuv420p"


def test_portrait_by_pixels_caps_the_short_side() -> None:
    info = replace(BASE, width=1080, height=1920)
    assert info.portrait
    plan = plan_proxy(info)
    assert plan.kind == "transcode"
    assert arg(plan.output_args, "-vf") == "scale=720:-2,format=yuv420p"


def test_portrait_by_rotation_uses_upright_dimensions() -> None:
    info = replace(BASE, width=1920, height=1080, rotation=90)
    assert info.portrait and (info.display_width, info.display_height) == (1080, 1920)
    assert arg(plan_proxy(info).output_args, "-vf") == "scale=720:-2,format=yuv420p"
    small = replace(BASE, rotation=270)  # 1280x720 stored, 720x1280 shown: within the cap
    assert small.portrait
    assert plan_proxy(small).kind == "remux"


def test_small_odd_sizes_are_made_even_not_upscaled() -> None:
    info = replace(BASE, video_codec="mpeg4", width=321, height=241)
    assert arg(plan_proxy(info).output_args, "-vf").startswith("scale=trunc(iw/2)*2:trunc(ih/2)")


def test_audio_only() -> None:
    plan = plan_proxy(AUDIO_ONLY)
    assert plan.kind == "audio" and plan.ext == "m4a" and plan.media_type == "audio/mp4"
    assert arg(plan.output_args, "-c:a") == "copy" and "-vn" in plan.output_args
    wav = plan_proxy(replace(AUDIO_ONLY, audio_codec="pcm_s16le", demuxer="wav"))
    assert arg(wav.output_args, "-c:a") == "aac"


def test_metadata_is_dropped_and_cap_validated() -> None:
    assert arg(plan_proxy(BASE).output_args, "-map_metadata") == "-1"
    with pytest.raises(ValueError):
        plan_proxy(BASE, max_height=721)
    with pytest.raises(ValueError):
        plan_proxy(replace(AUDIO_ONLY, audio_index=None))


@given(
    w=st.integers(2, 8192),
    h=st.integers(2, 8192),
    rotation=st.sampled_from([0, 90, 180, 270]),
    cap=st.sampled_from([144, 360, 480, 720, 1080]),
    codec=st.sampled_from(["h264", "hevc", "mjpeg"]),
)
def test_plan_properties(w: int, h: int, rotation: int, cap: int, codec: str) -> None:
    info = replace(BASE, width=w, height=h, rotation=rotation, video_codec=codec)
    plan = plan_proxy(info, cap)
    short = min(info.display_width or 0, info.display_height or 0)
    if plan.kind == "remux":
        assert codec == "h264" and short <= cap
    else:
        assert plan.kind == "transcode"
        vf = arg(plan.output_args, "-vf")
        if short > cap:
            landscape = (info.display_width or 0) >= (info.display_height or 0)
            assert vf.startswith(f"scale=-2:{cap}" if landscape else f"scale={cap}:-2")
        else:
            assert "trunc(iw/2)*2" in vf  # never upscaled, only made even
    assert plan.output_args[-2:] == ("-f", "mp4")


def test_scale_filter_is_pure_function_of_display_size() -> None:
    assert scale_filter(replace(BASE, width=1920, height=1080), 720) == "scale=-2:720"
    assert scale_filter(replace(BASE, width=1920, height=1080, rotation=90), 720) == "scale=720:-2"


def test_poster_plan() -> None:
    assert poster_seek_ms(BASE) == 1000
    assert poster_seek_ms(replace(BASE, duration_ms=900)) == 450
    assert poster_seek_ms(replace(BASE, duration_ms=None)) == 0
    plan = plan_poster(BASE)
    assert plan.ext == "jpg" and arg(plan.output_args, "-frames:v") == "1"
    assert arg(plan.output_args, "-c:v") == "mjpeg"
    # Output-side seek: the first option, before the stream map (after the input).
    assert plan.output_args[:2] == ("-ss", "1.000") and plan.seek_ms == 1000
    assert plan_poster(BASE, seek_ms=0).output_args[:2] == ("-ss", "0.000")
    with pytest.raises(ValueError, match="audio gets no poster"):
        plan_poster(AUDIO_ONLY)


def test_audio_only_is_planned_without_a_poster() -> None:
    assert plan_renditions(BASE) == ("proxy", "poster", "fingerprint")
    assert plan_renditions(AUDIO_ONLY) == ("proxy", "fingerprint")
    with pytest.raises(ValueError):
        plan_renditions(replace(AUDIO_ONLY, audio_index=None))


def test_clip_plan_is_accurate_seek_plus_reencode() -> None:
    plan = plan_clip(BASE, 1500, 4250)
    assert plan.input_args == ("-accurate_seek", "-ss", "1.500")
    assert arg(plan.output_args, "-t") == "2.750" and plan.duration_ms == 2750
    assert arg(plan.output_args, "-c:v") == "libx264" and arg(plan.output_args, "-crf") == "18"
    assert plan_clip(BASE, 9000, 20000).duration_ms == 1000  # clamped to the recording
    assert plan_clip(AUDIO_ONLY, 0, 1000).ext == "m4a"
    for start, end in ((-1, 10), (500, 500), (10_000, 11_000)):
        with pytest.raises(ValueError):
            plan_clip(BASE, start, end)


@given(st.integers(-(10**9), 10**9))
def test_ms_to_seconds_is_exact(ms: int) -> None:
    text = ms_to_seconds(ms)
    whole, frac = text.lstrip("-").split(".")
    assert int(whole) * 1000 + int(frac) == abs(ms) and len(frac) == 3
    assert text.startswith("-") == (ms < 0)
