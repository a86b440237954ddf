"""A running `evault serve` seeded as a reviewer would meet it, and a headless system Chromium.

Seeding goes the way an operator's does: principals, assignments, tokens and cases through the
`evault` CLI; evidence by dropping real ffmpeg clips into the default dock folder and waiting
until their media jobs made the proxies and posters. Case C1 is internal; CS is secret. E1 is
linked to C1 only; E2 is linked to C1 and to CS, so its effective label is secret. `reviewer`
(cleared internal) and `legal` (cleared secret) are both assigned to C1 and CS.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from tests.api.service_fixtures import Service, running_service
from vault.db import with_database

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEZONE = "Asia/Shanghai"


@dataclass
class Seeded:
    svc: Service
    tokens: dict[str, str]
    e1: str  # internal, in C1
    e2: str  # secret (via CS), in C1 and CS
    held: Path  # E1's bytes
    held_secret: Path  # E2's bytes
    foreign: Path  # a clip never acquired
    vkey: str

    def get(self, path: str, who: str | None = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.svc.url + path)
        if who is not None:
            req.add_header("Authorization", f"Bearer {self.tokens[who]}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers.items()), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()


def make_clip(path: Path, seconds: int, tone: int) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=25:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency={tone}:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-shortest", str(path)],
        check=True,
        timeout=60,
    )  # fmt: skip


def _cli(svc: Service, *calls: tuple[str, ...]) -> list[str]:
    """Run independent `evault` commands concurrently; their stdout, in order."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "api.cli", "--data", str(svc.data), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=svc.env,
        )
        for args in calls
    ]
    out = []
    for args, p in zip(calls, procs, strict=True):
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, f"evault {' '.join(args)}: {stdout}\n{stderr}"
        out.append(stdout)
    return out


async def _sql(admin_dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _database(admin_dsn: str, statement: str) -> None:
    # In a thread of its own: the test thread's event loop (pytest-asyncio's) stays untouched.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _sql(admin_dsn, statement)).result(timeout=60)


def _ready(seeded: Seeded, count: int, deadline: float) -> list[dict[str, Any]]:
    while True:
        status, _, body = seeded.get("/v1/evidence?limit=100", who="admin")
        items = json.loads(body)["items"] if status == 200 else []
        if len(items) >= count and all(i["media_status"] == "ready" for i in items):
            return list(items)
        if time.monotonic() > deadline:
            raise AssertionError(f"evidence not ready in time: {items}")
        time.sleep(0.3)


@contextmanager
def seeded_console(admin_dsn: str, tmp: Path, *, media: bool = True) -> Iterator[Seeded]:
    """The seeded service (see the module docstring); ``media=False``: principals, tokens and
    cases only, no footage (for tests that need no evidence)."""
    name = "evault_c_" + secrets.token_hex(6)
    _database(admin_dsn, f"CREATE DATABASE {name}")
    src = tmp / "clips"
    src.mkdir()
    held, held_secret, foreign = (
        src / "DEV01_OFF1_20260301090000.mp4",
        src / "DEV02_OFF2_20260301093000.mp4",
        src / "foreign.mp4",
    )
    for path, seconds, tone in ((held, 4, 440), (held_secret, 3, 660), (foreign, 2, 880)):
        if media:
            make_clip(path, seconds, tone)
    try:
        with running_service(tmp / "data", with_database(admin_dsn, name)) as svc:
            dock = svc.data / "docks" / "dock-01"
            dock.mkdir(parents=True, exist_ok=True)
            for path in (held, held_secret) if media else ():
                shutil.copy(path, dock / path.name)
            _cli(
                svc,
                ("principal", "add", "reviewer", "--role", "reviewer"),
                ("principal", "add", "legal", "--role", "legal_reviewer", "--clearance", "secret"),
                ("case", "add", "C1", "--title", "某市场监管局现场检查案"),
                ("case", "add", "CS", "--title", "涉密专案", "--label", "secret"),
            )
            calls = [("token", "create", who) for who in ("admin", "reviewer", "legal")]
            calls += [
                ("principal", "assign", "reviewer", "C1"),
                ("principal", "assign", "reviewer", "CS", "--force"),  # below its label on purpose
                ("principal", "assign", "legal", "C1"),
                ("principal", "assign", "legal", "CS"),
            ]
            out = _cli(svc, *calls, ("ledger", "vkey"))
            tokens = {w: out[i].strip() for i, w in enumerate(("admin", "reviewer", "legal"))}
            seeded = Seeded(svc, tokens, "", "", held, held_secret, foreign, out[-1].strip())
            if media:
                items = _ready(seeded, 2, time.monotonic() + 120)
                by_device = {i["device_id"]: i["id"] for i in items}
                seeded.e1, seeded.e2 = by_device["DEV01"], by_device["DEV02"]
                _cli(svc, ("case", "link", "C1", seeded.e1), ("case", "link", "CS", seeded.e2))
                _cli(svc, ("case", "link", "C1", seeded.e2))
            yield seeded
    finally:
        _database(admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
