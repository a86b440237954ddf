"""``evault serve --workers N``: API worker processes sharing the main process's listening socket.

Guarantees:

- The main process binds the listening socket(s) itself before anything starts (a busy port is
  the same one-line error as with one process), then starts N-1 workers: the same interpreter
  running ``python -m api.cli ... serve`` with the socket's descriptor inherited (``pass_fds``)
  and named by a hidden option. Every process accepts on that socket; the kernel hands each
  connection to one of them. The main process runs every part; a worker only the API
  (``api.app.make_app(worker=True)``: no watchers, media workers, scrub, checkpoint signing,
  time-stamping, witness client or event delivery).
- On the embedded PostgreSQL, workers use the main process's server (its DSN in their
  environment): no second server is started.
- A worker dies with the main process: ``PR_SET_PDEATHSIG`` (Linux) and, everywhere, a check
  that its parent is still the main process every :data:`PARENT_POLL` seconds.
- A worker that exits while the service runs is started again after a backoff (0.5 s doubling
  up to 30 s; back to 0.5 s once one ran :data:`STABLE_SECONDS`). At SIGTERM/SIGINT the main
  process terminates its workers, waits up to :data:`STOP_SECONDS`, kills what is left, and only
  then stops its own parts (and the embedded server).
- Metrics: before anything is imported that defines one, the main process makes a new
  ``<data>/run/metrics/<its pid>`` and re-executes itself (same pid, same arguments) with
  ``PROMETHEUS_MULTIPROC_DIR`` pointing there; workers inherit it (``api.metrics``). A worker
  that exits has its live gauges removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from vault.retry import backoff

log = logging.getLogger("evault.serve")

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Set (to its pid) by a main process before it re-executes itself for multiprocess metrics.
MAIN_ENV = "EVAULT_SERVE_MAIN_PID"
METRICS_DIR = Path("run") / "metrics"
BACKLOG = 1024
PARENT_POLL = 1.0
STABLE_SECONDS = 30.0
STOP_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


def metrics_folder(data: Path, pid: int | None = None) -> Path:
    """The metric files of the main process ``pid`` (this one) and its workers."""
    return data / METRICS_DIR / str(os.getpid() if pid is None else pid)


def prepare_metrics(data: Path) -> None:
    """In the main process, before it starts anything: make sure this interpreter writes its
    metrics to :func:`metrics_folder` (new for this run), re-executing it if needed. Folders
    of main processes that are gone are removed; those of running ones left alone."""
    folder = metrics_folder(data)
    if os.environ.get(MAIN_ENV) == str(os.getpid()) and os.environ.get(METRICS_ENV) == str(folder):
        return  # re-executed: the folder was cleared before, prometheus_client reads it now
    for old in (data / METRICS_DIR).glob("*"):
        if old.name.isdigit() and (old == folder or not _alive(int(old.name))):
            shutil.rmtree(old, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    env = {**os.environ, METRICS_ENV: str(folder), MAIN_ENV: str(os.getpid())}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "api.cli", *sys.argv[1:]], env)  # noqa: S606


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for ``host:port`` (every address it resolves to, as aiohttp's TCP
    site would bind); OSError if one cannot be bound (nothing left open)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            s = socket.socket(family, kind, proto)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(addr)
            s.listen(BACKLOG)
            s.setblocking(False)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def adopt(fds: Sequence[int]) -> list[socket.socket]:
    """The listening sockets a worker inherited."""
    socks = [socket.socket(fileno=fd) for fd in fds]
    for s in socks:
        s.setblocking(False)
    return socks


def die_with_parent(parent: int, stop: asyncio.Event) -> asyncio.Task[None]:
    """In a worker: be sent SIGTERM when the main process ``parent`` dies (Linux), and set
    ``stop`` if it is gone anyway (checked now and every :data:`PARENT_POLL` seconds)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    async def watch() -> None:
        while os.getppid() == parent:  # noqa: ASYNC110 - nothing to wait on but the clock
            await asyncio.sleep(PARENT_POLL)
        log.warning("the main process %d is gone: this API worker stops", parent)
        stop.set()

    return asyncio.create_task(watch(), name="watch-main-process")


class Workers:
    """The API worker processes of a main process (module docstring)."""

    def __init__(self, count: int, argv: Sequence[str], env: Mapping[str, str], fds: Sequence[int]):
        self._count = count
        self._argv = list(argv)
        self._env = dict(env)
        self._fds = tuple(fds)
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values() if p.returncode is None]

    def start(self) -> None:
        for slot in range(self._count):
            self._tasks.append(asyncio.create_task(self._keep(slot), name=f"api-worker-{slot}"))

    async def _keep(self, slot: int) -> None:
        attempt = 0
        while not self._stopping:
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *self._argv, env=self._env, pass_fds=self._fds
            )
            self._procs[slot] = proc
            if self._stopping:  # stop() began while it was being started
                proc.terminate()
            log.info("API worker %d started (pid %d)", slot + 1, proc.pid)
            code = await proc.wait()
            _forget_metrics(proc.pid)
            if self._stopping:
                return
            attempt = 1 if time.monotonic() - started >= STABLE_SECONDS else attempt + 1
            delay = backoff(attempt, 0.5, 30.0)
            log.error(
                "API worker %d (pid %d) exited with status %d; starting it again in %.1f s",
                slot + 1,
                proc.pid,
                code,
                delay,
            )
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        """Terminate every worker, wait up to :data:`STOP_SECONDS`, kill what is left."""
        self._stopping = True
        procs = [p for p in self._procs.values() if p.returncode is None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        waits = [asyncio.create_task(p.wait()) for p in procs]
        if waits:
            _, late = await asyncio.wait(waits, timeout=STOP_SECONDS)
            for proc in procs:
                if proc.returncode is None:
                    log.warning("API worker pid %d did not stop in time: killed", proc.pid)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            if late:
                await asyncio.wait(late)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _forget_metrics(pid: int) -> None:
    """Remove the live gauges of an exited worker (its counters keep counting in the sum)."""
    if os.environ.get(METRICS_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
