"""The dock watcher: settle time against a slow writer, markers, skipped names, rescans."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import msgspec

from ingest.acquire import Deferred
from ingest.config import DockConfig
from ingest.watcher import DockWatcher, ignored
from tests.ingest.acquire_fixtures import NAME, Env, dock, objects, open_acquirer, sha


async def wait_for(cond, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def running(env: Env, d: DockConfig) -> DockWatcher:
    watcher = DockWatcher(d, env.acq, asyncio.Semaphore(2))
    watcher.start()
    await wait_for(watcher.alive)
    return watcher


async def test_slow_writer_is_taken_once_when_finished(pg_dsn: str, tmp_path: Path) -> None:
    d = dock(tmp_path, settle_seconds=1.5, rescan_seconds=0.3, release="move")
    src = d.path / NAME
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        watcher = await running(env, d)
        try:
            # Each pause is longer than a rescan interval, shorter than the settle time; the
            # file is closed between writes, so only the settle time can tell it is not done.
            with src.open("wb") as f:
                f.write(os.urandom(50_000))
            await asyncio.sleep(0.8)
            final = os.urandom(80_000)
            with src.open("r+b") as f:
                f.write(final[:60_000])
                f.truncate(60_000)
            await asyncio.sleep(0.8)
            with src.open("ab") as f:
                f.write(final[60_000:])
            assert await env.rows("SELECT 1 FROM evidence") == []
            released = d.path / ".released" / NAME
            await wait_for(
                lambda: (d.path / ".released" / (NAME + ".evault-receipt.json")).exists()
            )
            await wait_for(lambda: released.exists())
            assert released.read_bytes() == final
            await asyncio.sleep(1.0)  # nothing more happens
            assert objects(env.store) == {sha(final): final}
            assert len(await env.rows("SELECT 1 FROM evidence")) == 1
            assert len(await env.entries("acquired")) == 1
            assert await env.entries("reoffered") == []
            assert watcher.backlog == 0
        finally:
            await watcher.stop()


async def test_marker_hidden_sidecar_and_rescan(pg_dsn: str, tmp_path: Path) -> None:
    d = dock(tmp_path, settle_seconds=0.2, rescan_seconds=0.3, marker=".done")
    (d.path / "day1").mkdir()
    media = d.path / "day1" / NAME
    media.write_bytes(b"footage")
    (d.path / "day1" / (NAME + ".json")).write_text('{"officer_id": "OFF999"}')
    (d.path / ".partial.mp4").write_bytes(b"hidden temp")
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        watcher = await running(env, d)
        try:
            await asyncio.sleep(1.0)
            assert await env.rows("SELECT 1 FROM evidence") == []  # no marker yet
            (d.path / "day1" / (NAME + ".done")).write_bytes(b"")
            receipt = d.path / "day1" / (NAME + ".evault-receipt.json")
            await wait_for(receipt.exists)
            rows = await env.rows("SELECT officer_id FROM evidence")
            assert [r["officer_id"] for r in rows] == ["OFF999"]  # the sidecar overrides
            await asyncio.sleep(1.0)  # rescans: kept and receipted, never taken again
            assert len(await env.rows("SELECT 1 FROM evidence_offers")) == 1
            assert watcher.backlog == 0
        finally:
            await watcher.stop()


def test_ignored_names() -> None:
    d = msgspec.structs.replace(DockConfig(id="x", path=Path("/d")), marker=".done")
    assert ignored(d, b"a/.released/x.mp4") and ignored(d, b".hidden.mp4")
    assert ignored(d, b"x.mp4.evault-receipt.json") and ignored(d, b"x.mp4.done")
    assert ignored(d, b"x.mp4.json") and ignored(d, b".evault-0123.tmp")
    assert not ignored(d, b"x.json") and not ignored(d, b"sub/x.mp4")
    assert not ignored(d, b"bad\n\xff.mp4")


async def test_deferred_file_waits_longer_each_time_capped(pg_dsn: str, tmp_path: Path) -> None:
    """A file deferred for a retryable reason (the store failing, say) is retried after 1, 2,
    4 … s, never more than a minute apart (``vault.retry.backoff``); a file that went away is
    not retried at all."""
    d = dock(tmp_path)
    path = os.fsencode(d.path / NAME)
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        watcher = DockWatcher(d, env.acq, asyncio.Semaphore(1))  # not started: no events
        waits = []
        for _ in range(9):
            before = time.monotonic()
            watcher._settle_outcome(path, Deferred("store", "disk full"))
            waits.append(round(watcher._retry[path][0] - before))
        assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
        gone = os.fsencode(d.path / "gone.mp4")
        watcher._settle_outcome(gone, Deferred("gone"))
        assert gone not in watcher._retry
