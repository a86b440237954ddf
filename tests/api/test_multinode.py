"""Two `evault serve` nodes on one PostgreSQL, each with its own dock, data directory and port,
sharing the log key; CLI commands append from a third process; the leader is SIGKILLed in the
middle of acquisitions and restarted.

At the end: every offered file has exactly one evidence row, every media job finished once (one
``derived`` entry per rendition row, none left running), `evault ledger fsck` is clean, and
every entry appended while the nodes ran was covered by a stored checkpoint within 1 s (p99) of
its commit, whichever process appended it. Commit and coverage times are observed from outside
by polling the tree size and the largest stored checkpoint (not through the notifications the
nodes use).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from tests.api.http_fixtures import _create_db, _drop_db, make_video
from tests.api.service_fixtures import free_port
from vault.db import with_database
from vault.ops import backupfmt as fmt

pytestmark = [
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg"),
    pytest.mark.alone,  # a p99 bound on checkpoint coverage
]

CLI = [sys.executable, "-m", "api.cli"]
FILES_PER_WAY = 3  # per node: dropped on its dock, and PUT to it
LEASE = "5"  # media job lease (s): a dead node's jobs are taken over after this


@dataclass(eq=False)
class Node:
    name: str
    data: Path
    dock: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.data / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [*CLI, "--data", str(self.data), "serve", "--listen", f"127.0.0.1:{self.port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        log.close()

    def wait_ready(self, limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        while True:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "not ready: " + self.log()
            time.sleep(0.1)

    def leading(self) -> bool:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
            return b"evault_ledger_checkpoint_leader 1.0" in r.read()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut would stop it."""
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return (self.data / "serve.log").read_text(errors="replace")[-4000:]

    def evault(self, *args: str) -> str:
        proc = subprocess.run(
            [*CLI, "--data", str(self.data), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        assert proc.returncode == 0, f"evault {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout


class Observer:
    """Polls (tree size, largest checkpoint size) from its own thread every few ms, recording
    when each size was first seen."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.appended: list[tuple[float, int]] = []  # (time, size) when the size grew
        self.covered: list[tuple[float, int]] = []  # (time, checkpoint size) when it grew
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            size = cp = -1
            while not self._stop.is_set():
                try:
                    row = await conn.fetchrow(
                        "SELECT (SELECT size FROM ledger_state) AS s,"
                        " (SELECT coalesce(max(size), 0) FROM ledger_checkpoints) AS c"
                    )
                except asyncpg.UndefinedTableError:  # not migrated yet
                    await asyncio.sleep(0.05)
                    continue
                now = time.monotonic()
                assert row is not None
                if row["s"] > size:
                    size = row["s"]
                    self.appended.append((now, size))
                if row["c"] > cp:
                    cp = row["c"]
                    self.covered.append((now, cp))
                await asyncio.sleep(0.005)
        finally:
            await conn.close()

    def wait_covered(self, most: float) -> int:
        """The tree size once a stored checkpoint covers it (at most ``most`` seconds: then the
        size seen last, whose late entries count as never covered)."""
        deadline = time.monotonic() + most
        while True:
            end = self.appended[-1][1]
            if (self.covered and self.covered[-1][1] >= end) or time.monotonic() > deadline:
                return end
            time.sleep(0.02)

    def latencies(self, first: int, end: int) -> list[float]:
        """Seconds from each entry's commit to its coverage, for entries ``first``..``end``-1."""
        out = []
        for i in range(first, end):
            t_app = next(t for t, s in self.appended if s > i)
            t_cov = next((t for t, s in self.covered if s > i), float("inf"))
            out.append(t_cov - t_app)
        return out


def put(node: Node, token: str, name: str, data: bytes, limit: float = 60) -> int:
    """PUT a file to the node's dock, retrying while the node is down; the final status."""
    deadline = time.monotonic() + limit
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
    }
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
            try:
                conn.request("PUT", f"/v1/docks/{node.dock}/files/{name}", data, headers)
                r = conn.getresponse()
                r.read()
                if r.status < 500:
                    return r.status
            finally:
                conn.close()
        except OSError:
            pass
        assert time.monotonic() < deadline, f"PUT {name} to {node.name} never succeeded"
        time.sleep(0.2)


def variants(base: Path, out: Path, count: int) -> list[Path]:
    """``count`` distinct real MP4s (one encode, then stream copies with distinct metadata)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = out / f"v{i}.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(base), "-c", "copy",
             "-metadata", f"comment=multinode {i} {os.urandom(4).hex()}", str(p)],
            check=True, timeout=60,
        )  # fmt: skip
        paths.append(p)
    return paths


@contextmanager
def two_nodes(
    pg_admin_dsn: str, tmp_path: Path, stores: tuple[dict[str, str], dict[str, str]]
) -> Iterator[tuple[Node, Node, str]]:
    """Nodes a (dock-01) and b (dock-02) on a fresh database, not started; ``stores``: each
    node's environment selecting its blob store (one store for both: one folder or bucket)."""
    name = asyncio.run(_create_db(pg_admin_dsn))
    dsn = with_database(pg_admin_dsn, name)
    nodes = []
    for (n, dock), store in zip((("a", "dock-01"), ("b", "dock-02")), stores, strict=True):
        env = dict(os.environ)
        env.update(EVAULT_DATABASE_DSN=dsn, EVAULT_MEDIA_LEASE_SECONDS=LEASE, **store)
        data = tmp_path / n
        if n == "b":  # the same log key and MAC key on every node, copied at deployment
            data.mkdir()
            shutil.copytree(tmp_path / "a" / "keys", data / "keys")
        subprocess.run(
            [*CLI, "--data", str(data), "init"],
            check=True,
            capture_output=True,
            env=env,
            timeout=120,
        )
        toml = (data / "evault.toml").read_text()
        toml = toml.replace('"dock-01"', f'"{dock}"').replace("docks/dock-01", f"docks/{dock}")
        toml = toml.replace("settle_seconds = 2.0", "settle_seconds = 0.3")
        (data / "evault.toml").write_text(
            toml.replace("rescan_seconds = 10.0", "rescan_seconds = 1.0")
        )
        (data / "docks" / dock).mkdir(parents=True, exist_ok=True)
        nodes.append(Node(n, data, dock, env))
    a, b = nodes
    try:
        yield a, b, dsn
    finally:
        for node in nodes:
            node.stop(signal.SIGKILL if node.proc and node.proc.poll() is None else signal.SIGTERM)
        asyncio.run(_drop_db(pg_admin_dsn, name))


@pytest.fixture
def cluster(pg_admin_dsn: str, tmp_path: Path) -> Iterator[tuple[Node, Node, str]]:
    # One store for both nodes, as one bucket would be (here a folder both can reach).
    store = {"EVAULT_STORE_ROOT": str(tmp_path / "store")}
    with two_nodes(pg_admin_dsn, tmp_path, (store, store)) as nodes:
        yield nodes


def test_two_nodes_one_log(cluster: tuple[Node, Node, str], tmp_path: Path) -> None:
    run_two_nodes(*cluster, tmp_path)


def run_two_nodes(a: Node, b: Node, dsn: str, tmp_path: Path) -> set[str]:
    """The scenario of the module docstring on nodes ``a`` and ``b`` (not started); returns
    the SHA-256 of every file offered."""
    base = tmp_path / "base.mp4"
    make_video(base, seconds=1)
    files = variants(base, tmp_path / "offered", 4 * FILES_PER_WAY)
    offered = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    drops = {a: files[0:FILES_PER_WAY], b: files[FILES_PER_WAY : 2 * FILES_PER_WAY]}
    puts = {
        a: files[2 * FILES_PER_WAY : 3 * FILES_PER_WAY],
        b: files[3 * FILES_PER_WAY : 4 * FILES_PER_WAY],
    }

    with Observer(dsn) as obs:
        for node in (a, b):
            node.start()
        for node in (a, b):
            node.wait_ready()
        first = obs.appended[-1][1] if obs.appended else 0
        leader, follower = (a, b) if a.leading() else (b, a)
        assert not follower.leading()

        # Appends from CLI processes (neither node): principals and their tokens.
        for node in (a, b):
            n = node.dock[-1]
            node.evault("principal", "add", f"dock{n}", "--role", "dock", "--dock", node.dock)
        tokens = {node: node.evault("token", "create", f"dock{node.dock[-1]}").split()[0]
                  for node in (a, b)}  # fmt: skip

        def drop(node: Node, path: Path, i: int) -> None:
            dock = node.data / "docks" / node.dock
            tmp = dock / f".part-{i}"
            shutil.copyfile(path, tmp)
            tmp.rename(dock / f"CAM{i}_OFF{i}_20260101120{i:03d}_0001.mp4")

        statuses: dict[str, int] = {}

        def pusher(node: Node) -> None:
            for i, path in enumerate(puts[node]):
                name = f"PUT{i}_OFF{i}_20260102120{i:03d}_0001.mp4"
                statuses[f"{node.name}{i}"] = put(node, tokens[node], name, path.read_bytes())

        for i, path in enumerate(drops[follower]):
            drop(follower, path, i)
        threads = [threading.Thread(target=pusher, args=(n,)) for n in (follower, leader)]
        for t in threads:
            t.start()
        # The leader's dock fills and its uploads start: kill it once the first of its files
        # is acquired, the others being offered.
        for i, path in enumerate(drops[leader]):
            drop(leader, path, 10 + i)
        mine = {hashlib.sha256(p.read_bytes()).hexdigest() for p in drops[leader] + puts[leader]}
        assert leader.proc is not None
        worker = f"{socket.gethostname()}:{leader.proc.pid}"
        at_kill = asyncio.run(_when_some_acquired(dsn, mine, worker, leader.kill))
        acquired_before, jobs_held = at_kill
        assert 0 < acquired_before < len(mine), "the kill was not in the middle of acquisitions"
        time.sleep(0.3)
        assert follower.leading(), "the surviving node did not take over"
        leader.start()
        leader.wait_ready()
        assert not leader.leading()
        for t in threads:
            t.join(90)
        assert all(s in (200, 201) for s in statuses.values()), statuses
        assert len(statuses) == 2 * FILES_PER_WAY

        async def settled() -> tuple[dict[str, int], list[asyncpg.Record], int, int]:
            conn = await asyncpg.connect(dsn)
            try:
                deadline = time.monotonic() + 60
                while True:
                    rows = await conn.fetch("SELECT sha256, id FROM evidence")
                    jobs = await conn.fetch("SELECT id, kind, status, attempts FROM jobs")
                    seen = {r["sha256"] for r in rows}
                    if offered <= seen and all(j["status"] in ("done", "failed") for j in jobs):
                        break
                    assert time.monotonic() < deadline, (offered - seen, jobs)
                    await asyncio.sleep(0.2)
                counts = {
                    r["sha256"]: r["n"]
                    for r in await conn.fetch(
                        "SELECT sha256, count(*) AS n FROM evidence GROUP BY sha256"
                    )
                }
                derived = await conn.fetchval(
                    "SELECT count(*) FROM ledger_entries WHERE kind = 'derived'"
                )
                renditions = await conn.fetchval("SELECT count(*) FROM renditions")
                return counts, jobs, derived, renditions
            finally:
                await conn.close()

        counts, jobs, derived, renditions = asyncio.run(settled())
        # A case linked from a CLI process after the acquisitions.
        ev = asyncio.run(_one_evidence(dsn))
        b.evault("case", "add", "C9", "--title", "multinode")
        b.evault("case", "link", "C9", ev)
        end = obs.wait_covered(1.5)  # the last entries' coverage is observed

    assert all(counts[s] == 1 for s in offered), counts
    assert jobs and all(j["status"] == "done" for j in jobs), jobs
    retaken = [j for j in jobs if j["id"] in jobs_held]
    assert all(j["attempts"] >= 2 for j in retaken), retaken  # taken over after the lease
    assert derived == renditions > 0  # no rendition recorded twice, none recorded without a row
    for node in (a, b):  # each node's checkpoints.log holds every stored checkpoint
        fsck = node.evault("ledger", "fsck")
        assert re.search(r"^ok: \d+ entries", fsck, re.M), fsck

    # A backup taken on a node that was down while the other signed: its checkpoints.log copy
    # must still hold every checkpoint of its dump (the backup appends the ones it lacks).
    a.stop()
    b.evault("case", "add", "C10", "--title", "after node a stopped")
    asyncio.run(_until_checkpointed(dsn, 5))  # by node b, the one running
    out = a.evault("backup", "--out", str(tmp_path / "backup"))
    assert "PROBLEM" not in out, out
    logged = {
        json.loads(line)["note"]
        for line in (tmp_path / "backup" / fmt.CHECKPOINTS).read_text().splitlines()
    }
    assert set(asyncio.run(_notes(dsn))) <= logged

    lat = sorted(obs.latencies(first, end))
    assert lat, "no entries observed"
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(
        f"entries {first}..{end}: covered p50 {lat[len(lat) // 2] * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms; leader killed with "
        f"{acquired_before}/{len(mine)} of its files acquired and {len(jobs_held)} jobs held; "
        f"jobs {len(jobs)}, renditions {renditions}"
    )
    assert p99 <= 1.0, lat[-10:]
    return offered


async def _when_some_acquired(
    dsn: str, shas: set[str], worker: str, kill: Callable[[], None]
) -> tuple[int, set[int]]:
    """Call ``kill`` as soon as one of ``shas`` has an evidence row and ``worker`` (the
    process killed) runs a media job, or half of them have rows (on a fast machine the rest
    would be acquired before a job starts), or 3 s after the first row; then how many had a
    row, and the jobs ``worker`` held at that moment."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + 30
        first = None
        while True:
            n = await conn.fetchval(
                "SELECT count(*) FROM evidence WHERE sha256 = ANY($1::text[])", list(shas)
            )
            held = await conn.fetch(
                "SELECT id FROM jobs WHERE status = 'running' AND worker = $1", worker
            )
            if n and first is None:
                first = time.monotonic()
            if n and (held or n >= len(shas) // 2 or time.monotonic() - first > 3):  # type: ignore[operator]
                break
            assert time.monotonic() < deadline, "nothing acquired by the leader"
            await asyncio.sleep(0.01)
        kill()
        n = await conn.fetchval(
            "SELECT count(*) FROM evidence WHERE sha256 = ANY($1::text[])", list(shas)
        )
        return int(n), {r["id"] for r in held}
    finally:
        await conn.close()


async def _until_checkpointed(dsn: str, most: float) -> None:
    """Until a stored checkpoint covers the tree (at most ``most`` seconds)."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + most
        while time.monotonic() < deadline and not await conn.fetchval(
            "SELECT (SELECT coalesce(max(size), 0) FROM ledger_checkpoints)"
            " >= (SELECT size FROM ledger_state)"
        ):
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def _notes(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["note"] for r in await conn.fetch("SELECT note FROM ledger_checkpoints")]
    finally:
        await conn.close()


async def _one_evidence(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SELECT id FROM evidence ORDER BY id LIMIT 1"))
    finally:
        await conn.close()
