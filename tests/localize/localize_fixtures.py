"""Recordings for the localisation tests (ffmpeg lavfi, 7 s, 320x240) and a vault holding one.

The original has a key frame every second. Copies: its fourth second replaced by other content,
re-encoded and spliced in between stream copies of the rest (``spliced``), or overlaid while
re-encoding everything (``overlaid``); two seconds of audio silenced (video stream-copied);
lossless remuxes (``-c copy``) to .mp4, .mov, .mkv and .ts (the last two keep the AAC
priming that the MP4's edit list trims); a downscaled re-encode (a proxy); an unrelated
recording.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec

from api.config import Config, load
from api.runtime import Runtime, open_runtime
from ingest.acquire import Acquirer, Receipt
from ingest.mediajobs import MediaJobs
from ingest.quarantine import Quarantine
from vault.jobs import JobRunner
from vault.storage.blobstore import BlobStore
from vault.storage.content import PlainContentStore

SECONDS = 7
#: Lossless remuxes of the original into every container a recording arrives in.
REMUXES = ("remux.mp4", "remux.mov", "remux.mkv", "remux.ts")
_FF = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
_X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


def ffmpeg(*args: str) -> None:
    subprocess.run([*_FF, *args], check=True, timeout=120)


def make_recordings(folder: Path) -> dict[str, Path]:
    p = {n: folder / n for n in ("original.mp4", "spliced.mp4", "overlaid.mp4", "silenced.mp4",
                                 *REMUXES, "proxy.mp4", "other.mp4")}  # fmt: skip
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={SECONDS}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={SECONDS}:sample_rate=48000",
        *_X264, "-g", "25", "-c:a", "aac", "-shortest", str(p["original.mp4"]),
    )  # fmt: skip
    src = str(p["original.mp4"])
    parts = [folder / f"part{i}.ts" for i in range(3)]
    ffmpeg("-i", src, "-an", "-c:v", "copy", "-t", "3", "-f", "mpegts", str(parts[0]))
    ffmpeg(
        "-f", "lavfi", "-i", "smptebars=size=320x240:rate=25:duration=1",
        *_X264, "-g", "25", "-f", "mpegts", str(parts[1]),
    )  # fmt: skip
    ffmpeg("-ss", "4", "-i", src, "-an", "-c:v", "copy", "-f", "mpegts", str(parts[2]))
    ffmpeg(
        "-i", "concat:" + "|".join(map(str, parts)), "-i", src,
        "-map", "0:v", "-map", "1:a", "-c", "copy", str(p["spliced.mp4"]),
    )  # fmt: skip
    ffmpeg(
        "-i", src, "-f", "lavfi", "-i", "smptebars=size=320x240:rate=25",
        "-filter_complex", "[0:v][1:v]overlay=enable='gte(t,3)*lt(t,4)':shortest=1[v]",
        "-map", "[v]", "-map", "0:a", *_X264, "-c:a", "copy", str(p["overlaid.mp4"]),
    )  # fmt: skip
    ffmpeg(
        "-i", src, "-af", "volume=enable='gte(t,2)*lt(t,4)':volume=0",
        "-c:v", "copy", "-c:a", "aac", str(p["silenced.mp4"]),
    )  # fmt: skip
    for name in REMUXES:
        ffmpeg("-i", src, "-c", "copy", str(p[name]))
    ffmpeg("-i", src, "-vf", "scale=160:120", *_X264, "-c:a", "aac", str(p["proxy.mp4"]))
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={SECONDS}",
        "-f", "lavfi", "-i", f"sine=frequency=1000:duration={SECONDS}",
        *_X264, "-c:a", "aac", "-shortest", str(p["other.mp4"]),
    )  # fmt: skip
    return p


@dataclass
class Vault:
    cfg: Config
    rt: Runtime
    receipt: Receipt
    content: PlainContentStore


def init_data(data: Path, dsn: str) -> Config:
    """`evault init` a data directory on the test database and load its configuration."""
    import os
    import sys

    env = dict(os.environ, EVAULT_DATABASE_DSN=dsn)
    subprocess.run(
        [sys.executable, "-m", "api.cli", "--data", str(data), "init"],
        check=True, capture_output=True, env=env, timeout=120,
    )  # fmt: skip
    return load(None, str(data), environ={"EVAULT_DATABASE_DSN": dsn})


@asynccontextmanager
async def vault_with(cfg: Config, recording: Path) -> AsyncIterator[Vault]:
    """A runtime where ``recording`` was acquired from dock-01 and its media job has run."""
    async with open_runtime(cfg) as rt:
        store = BlobStore(cfg.path(cfg.store.root))
        dock = msgspec.structs.replace(cfg.docks[0], path=cfg.path(cfg.docks[0].path))
        quarantine = Quarantine(cfg.path(cfg.store.quarantine), rt.ledger)
        acq = Acquirer(store, rt.ledger, quarantine, [dock], verifier=rt.ledger.verifier)
        receipt = await acq.acquire_path(dock, recording)
        assert isinstance(receipt, Receipt)
        scratch = cfg.path(cfg.store.root) / "scratch"
        scratch.mkdir(mode=0o700, exist_ok=True)
        media = MediaJobs(rt.ledger, store, cfg.media, scratch)
        runner = JobRunner(rt.db.pool, media.handlers(), worker="t", concurrency=1, lease=60)
        while await runner.run_once():
            pass
        yield Vault(cfg, rt, receipt, PlainContentStore(store))
