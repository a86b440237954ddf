"""Media from real recorders and platforms, through the dock and the media jobs.

Each recording is a second or two made with ffmpeg's lavfi sources in the container a device
writes: an MPEG-TS with H.264 (GB/T 28181 platforms, DVR exports), an MPEG-PS .mpg (DVRs),
a 3GP (phones), a WAV (voice recorders). A Matroska file whose header claims 1 s while its
stream runs 66 s makes the fingerprint fail on its own, so one failed rendition can be
watched not condemning the others.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from ingest.acquire import Receipt
from ingest.config import DEFAULT_EXTENSIONS, MediaConfig
from ingest.mediajobs import PROCESS, MediaJobs
from tests.ingest.acquire_fixtures import dock, open_acquirer
from vault.jobs import JobRunner

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
_V = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=15:duration=1.5"]
_A = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1.5:sample_rate=48000"]
_X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


def short_claiming_mkv(path: Path) -> None:
    """66 s of tiny video whose Matroska header declares 1 s (Segment Info Duration)."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=5:duration=66", *_X264, str(path))
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88")  # Duration, an 8-byte float in milliseconds
    assert at > 0 and struct.unpack(">d", data[at + 3 : at + 11]) == (66000.0,)
    data[at + 3 : at + 11] = struct.pack(">d", 1000.0)
    path.write_bytes(bytes(data))


async def drain(runner: JobRunner, limit: int = 50) -> None:
    for _ in range(limit):
        if not await runner.run_once():
            return


def test_default_extensions_cover_what_recorders_write() -> None:
    for ext in ("mp4", "mov", "3gp", "avi", "mkv", "ts", "m2ts", "mpg", "vob"):
        assert ext in DEFAULT_EXTENSIONS, ext
    for ext in ("wav", "amr", "aac", "m4a", "mp3"):
        assert ext in DEFAULT_EXTENSIONS, ext


async def test_recorder_containers_get_their_renditions_and_failures_stay_apart(
    pg_dsn: str, tmp_path: Path
) -> None:
    d = dock(tmp_path)  # the default extensions
    files = {
        "ts": d.path / "DEV01_OFF123_20260101120000.ts",
        "mpg": d.path / "DEV01_OFF123_20260101120100.mpg",
        "3gp": d.path / "DEV01_OFF123_20260101120200.3gp",
        "wav": d.path / "DEV01_OFF123_20260101120300.wav",
        "mkv": d.path / "DEV01_OFF123_20260101120400.mkv",
    }
    ffmpeg(*_V, *_A, *_X264, "-c:a", "aac", "-shortest", "-f", "mpegts", str(files["ts"]))
    ffmpeg(*_V, *_A, "-c:v", "mpeg2video", "-c:a", "mp2", "-f", "mpeg", str(files["mpg"]))
    ffmpeg(*_V, *_A, *_X264, "-c:a", "aac", "-shortest", str(files["3gp"]))
    ffmpeg(*_A, "-ac", "1", "-c:a", "pcm_s16le", str(files["wav"]))
    short_claiming_mkv(files["mkv"])
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        for p in files.values():  # accepted at the door, not quarantined
            assert isinstance(await env.acq.acquire_path(d, p), Receipt), p.name
        media = MediaJobs(env.ledger, env.store, MediaConfig(), tmp_path / "scratch")
        (tmp_path / "scratch").mkdir()
        runner = JobRunner(env.db.pool, media.handlers(), worker="t", concurrency=1, lease=60)
        await drain(runner)
        rows = await env.rows(
            "SELECT e.id, e.file_name, e.media_status, e.media_reason,"
            " array_remove(array_agg(r.kind ORDER BY r.kind), NULL) AS kinds"
            " FROM evidence e LEFT JOIN renditions r ON r.evidence_id = e.id GROUP BY e.id"
        )
        by_ext = {r["file_name"].rsplit(".", 1)[1]: r for r in rows}

        # A plain MPEG-TS with H.264 gets its poster (and everything else).
        for ext in ("ts", "mpg", "3gp"):
            r = by_ext[ext]
            assert (r["media_status"], r["media_reason"]) == ("ready", None), dict(r)
            assert r["kinds"] == ["fingerprint", "poster", "proxy"], ext
        # Audio gets no poster, and that is no failure.
        wav = by_ext["wav"]
        assert (wav["media_status"], wav["media_reason"]) == ("ready", None), dict(wav)
        assert wav["kinds"] == ["fingerprint", "proxy"]
        # One failed rendition does not condemn the others: proxy and poster are made and
        # recorded; the failure is recorded on its own, under its rendition's name.
        mkv = by_ext["mkv"]
        assert mkv["media_status"] == "partial", dict(mkv)
        assert mkv["kinds"] == ["poster", "proxy"]
        assert mkv["media_reason"] == (
            "fingerprint: video timestamps run far past the declared duration"
        )
        derived = await env.entries("derived")
        assert sorted(e["rendition"] for e in derived if e["evidence_id"] == str(mkv["id"])) == [
            "poster",
            "proxy",
        ]
        events = [
            json.loads(r["payload"])
            for r in await env.rows("SELECT payload FROM event_outbox WHERE type = 'media.ready'")
        ]
        partial = [e for e in events if e["evidence_id"] == str(mkv["id"])]
        assert partial == [
            {
                "evidence_id": str(mkv["id"]),
                "status": "partial",
                "made": ["proxy", "poster"],
                "failed": ["fingerprint"],
            }
        ]
        assert len(events) == len(files)

        # Run again: what was made is not made twice; the failed rendition is tried again
        # and fails again on its own.
        await env.db.pool.execute(
            "UPDATE jobs SET status = 'queued', run_after = now() WHERE kind = $1", PROCESS
        )
        await drain(runner)
        assert len(await env.rows("SELECT 1 FROM renditions")) == 3 * 3 + 2 + 2
        again = await env.rows(
            "SELECT media_status, media_reason FROM evidence WHERE id = $1", mkv["id"]
        )
        assert (again[0]["media_status"], again[0]["media_reason"]) == (
            "partial",
            mkv["media_reason"],
        )
