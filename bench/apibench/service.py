"""The service under test: `evault serve` as a subprocess, its memory and CPU."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg

# -- the service -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(
    data: Path, env: dict[str, str], parts: str, workers: int = 1
) -> Iterator[tuple[str, int]]:
    port = free_port()
    log = (data / "serve.log").open("w")
    command = [sys.executable, "-m", "api.cli", "--data", str(data), "serve"]
    proc = subprocess.Popen(
        [*command, "--listen", f"127.0.0.1:{port}", "--only", parts, "--workers", str(workers)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=Path(__file__).resolve().parents[2],  # the checkout
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError("evault serve exited: " + (data / "serve.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("evault serve not listening in 120 s")
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def memory(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS of ``pid`` in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


_TICK = os.sysconf("SC_CLK_TCK")
_CORES = os.cpu_count() or 1


def _cpu_of(stat: str) -> float:
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


async def postmaster_pid(dsn: str) -> int | None:
    """The PID of the PostgreSQL server behind ``dsn`` when it runs on this machine (the
    parent of our backend), so only its processes are counted; None when it cannot be seen."""
    conn = await asyncpg.connect(dsn)
    try:  # read while the backend lives: it exits with the connection
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        with contextlib.suppress(OSError, ValueError):
            stat = Path(f"/proc/{backend}/stat").read_text()
            return int(stat[stat.rindex(")") + 2 :].split()[1])
    finally:
        await conn.close()
    return None


class Cpu:
    """CPU seconds spent by the service process (with its API workers), by PostgreSQL's
    processes (the server's own when ``postmaster`` is known, else every ``postgres`` process)
    and by this process with its waited-for children (the clients: aiohttp, threads, wrk)
    between ``start`` and ``stop``: where a phase's time goes."""

    def __init__(self, pid: int, postmaster: int | None = None) -> None:
        self.pid = pid
        self.postmaster = postmaster
        self._t0: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def postgres(self) -> float:
        """CPU seconds so far of PostgreSQL's live processes (those of ``postmaster``)."""
        pg = 0.0
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError, ValueError):
                    stat = (proc / "stat").read_text()
                    if self.postmaster is not None:
                        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                        if self.postmaster in (ppid, int(proc.name)):
                            pg += _cpu_of(stat)
                    elif stat[stat.index("(") + 1 : stat.rindex(")")] == "postgres":
                        pg += _cpu_of(stat)
        return pg

    def service(self) -> float:
        """CPU seconds so far of the service process and its live children (API workers)."""
        total = 0.0
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError, ValueError):
                    stat = (proc / "stat").read_text()
                    ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                    if self.pid in (ppid, int(proc.name)):
                        total += _cpu_of(stat)
        return total

    def _now(self) -> tuple[float, float, float, float]:
        service = self.service()
        me = os.times()
        clients = me.user + me.system + me.children_user + me.children_system
        return time.perf_counter(), service, self.postgres(), clients

    def start(self) -> None:
        self._t0 = self._now()

    def stop(self, per: float = 1.0, unit: str = "") -> str:
        now = self._now()
        wall, service, pg, client = (b - a for a, b in zip(self._t0, now, strict=True))
        scale = 1000 / per if unit else 1.0
        sfx = f" ms/{unit}" if unit else " s"
        return (
            f"cpu: service {service * scale:.2f}{sfx}, postgres {pg * scale:.2f}{sfx}, "
            f"clients {client * scale:.2f}{sfx} ({wall:.1f} s wall, {_CORES} cores = "
            f"{_CORES * wall * scale:.2f}{sfx})"
        )


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(600):
            with contextlib.suppress(aiohttp.ClientError):
                async with s.get(url + "/readyz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError("service not ready")
