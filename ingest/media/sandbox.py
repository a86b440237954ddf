"""Run ffmpeg and ffprobe on untrusted media with as little room to do harm as we can give them.

Guarantees of :func:`run` (and :func:`run_sync`, the same thing for code without a loop):

* The child is started from an argv list, never through a shell, with stdin on ``/dev/null``,
  a minimal environment (``PATH``, ``LC_ALL=C``, ``HOME``/``TMPDIR`` pointing at its own
  working directory) and a fresh temporary working directory that is removed afterwards,
  whatever happened.
* Resource limits are set in the child before ``exec``: address space (``RLIMIT_AS``), CPU
  seconds (``RLIMIT_CPU``: SIGXCPU at the soft limit, SIGKILL 5 s later), size of any file it
  writes (``RLIMIT_FSIZE``), open files (``RLIMIT_NOFILE``) and no core dumps. Limits are only
  ever lowered, never raised.
* Wall time: after ``limits.wall_s`` seconds the child's process group gets SIGTERM, and
  SIGKILL after ``limits.grace_s`` more; :class:`MediaError` ``"timed out after N s"`` follows.
  Cancelling the awaiting task stops the child the same way before the cancellation goes on.
* Outputs (*sinks*) are drained on their own threads while the child runs, so the child
  never blocks for long and the event loop never hashes; memory stays bounded by the channel
  buffers and whatever the consumers keep. The child writes each sink through FFmpeg's
  ``pipe:`` protocol to a file descriptor that is one end of an ``AF_UNIX`` stream socket
  pair, made one-way (the child's end cannot read, ours cannot write) and connected to
  nothing else; ancillary data the child might send is never read (the kernel drops it).
  A socket pair rather than a pipe: a pipe moves data in 4 KiB pages, each allocated,
  charged and freed, where the socket moves it in larger buffers: less system time for the
  reader on the fingerprint's raw frame stream (figures in docs/performance.md). The send
  buffer is asked for
  :data:`SINK_BUFFER_BYTES` (the kernel caps it at ``net.core.wmem_max``), and each sink is
  read in chunks of at most :data:`READ_CHUNK` bytes: a chunk that stays in the CPU cache
  between the kernel's copy and the consumer (the size that cost least system time of those
  tried: docs/performance.md).
* A non-zero exit, a signal, a limit or a consumer's exception is raised as
  :class:`MediaError` with a short reason (see :func:`explain`) that names no path.

Inputs are opened only as :mod:`ingest.media.ffargs` builds them (confined ``file:`` URLs,
protocol and format whitelists); reasons come from :mod:`ingest.media.reasons`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ingest.media.errors import MediaError, MediaToolError
from ingest.media.limits import Limits
from ingest.media.reasons import explain
from ingest.media.tools import child_env, resolve

__all__ = ["Consumer", "Limits", "RunResult", "run", "run_sync", "sink"]

STDERR_TAIL = 8192
#: Wanted send buffer of each sink (the kernel caps it at ``net.core.wmem_max``).
SINK_BUFFER_BYTES = 1 << 20
#: Largest chunk read from a sink at once (see module).
READ_CHUNK = 128 << 10
_SINK_PREFIX = "\x00sink:"  # a NUL can never reach exec: an unreplaced placeholder fails loudly

#: Receives each chunk a sink yields, in order. The memoryview is only valid during the
#: call (the buffer is reused): copy what must be kept.
Consumer = Callable[[memoryview], None]


@dataclass(frozen=True)
class RunResult:
    """A finished run: the exact argv executed (argv[0] resolved), its stdout and stderr tail."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr_tail: str
    elapsed_s: float


def sink(index: int) -> str:
    """Placeholder for output ``index`` of the ``sinks`` given to :func:`run` (becomes pipe:N)."""
    return f"{_SINK_PREFIX}{index}"


# --------------------------------------------------------------------------- the child


def _rlimits(limits: Limits) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) to apply in the child: computed here, never above current hard."""

    def clamp(res: int, value: int) -> int:
        hard = resource.getrlimit(res)[1]
        return value if hard == resource.RLIM_INFINITY else min(value, hard)

    cpu = limits.cpu_seconds()
    out = [
        (resource.RLIMIT_AS, clamp(resource.RLIMIT_AS, limits.memory_bytes)),
        (resource.RLIMIT_FSIZE, clamp(resource.RLIMIT_FSIZE, limits.file_size_bytes)),
        (resource.RLIMIT_NOFILE, clamp(resource.RLIMIT_NOFILE, limits.open_files)),
        (resource.RLIMIT_CORE, 0),
    ]
    triples = [(res, v, v) for res, v in out]
    triples.append(
        (
            resource.RLIMIT_CPU,
            clamp(resource.RLIMIT_CPU, cpu),
            clamp(resource.RLIMIT_CPU, cpu + 5),
        )
    )
    return triples


def _preexec(triples: list[tuple[int, int, int]]) -> Callable[[], None]:
    def apply() -> None:  # runs in the forked child, before exec: setrlimit calls only
        for res, soft, hard in triples:
            resource.setrlimit(res, (soft, hard))

    return apply


class _Drain(threading.Thread):
    """Reads one sink to EOF, handing chunks to its consumer; keeps the first error.

    The thread owns the read end and closes it when done, so no other code can close (and the
    process reuse) that descriptor number while it is still being read.
    """

    def __init__(self, fd: int, consumer: Consumer, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name=f"media-sink-{fd}", daemon=True)
        self.fd = fd
        self.consumer = consumer
        self.error: Exception | None = None
        self._loop = loop
        self.finished: asyncio.Future[None] = loop.create_future()

    def run(self) -> None:
        buf = bytearray(READ_CHUNK)
        view = memoryview(buf)
        try:
            while n := os.readv(self.fd, [buf]):
                if self.error is None:
                    try:
                        self.consumer(view[:n])
                    except Exception as exc:  # noqa: BLE001 - kept, re-raised by run()
                        self.error = exc
        except OSError as exc:
            self.error = self.error or exc
        finally:
            os.close(self.fd)
            with contextlib.suppress(RuntimeError):  # the loop may be gone on shutdown
                self._loop.call_soon_threadsafe(_set_done, self.finished)


def _sink_channel() -> tuple[int, int]:
    """(our read end, the child's write end) of one sink: a one-way AF_UNIX stream pair."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(OSError):
            theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SINK_BUFFER_BYTES)
        ours.shutdown(socket.SHUT_WR)
        theirs.shutdown(socket.SHUT_RD)
    except BaseException:
        ours.close()
        theirs.close()
        raise
    return ours.detach(), theirs.detach()


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _stop(proc: asyncio.subprocess.Process, grace_s: float) -> None:
    if proc.returncode is not None:
        return
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        _signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()


async def _read_tail(stream: asyncio.StreamReader | None, keep: int) -> bytes:
    tail = b""
    while stream is not None and (chunk := await stream.read(65536)):
        tail = (tail + chunk)[-keep:]
    return tail


async def _read_capped(
    stream: asyncio.StreamReader | None, cap: int, proc: asyncio.subprocess.Process
) -> bytes | None:
    """All of stdout, or None (and the child stopped) once it exceeds ``cap`` bytes."""
    parts: list[bytes] = []
    size = 0
    while stream is not None and (chunk := await stream.read(65536)):
        size += len(chunk)
        if size > cap:
            _signal_group(proc.pid, signal.SIGKILL)
            return None
        parts.append(chunk)
    return b"".join(parts)


async def run(
    argv: Sequence[str],
    *,
    limits: Limits | None = None,
    sinks: Sequence[Consumer] = (),
    stdout_limit: int = 0,
    check: bool = True,
) -> RunResult:
    """Run ``argv`` confined as the module describes; return or raise :class:`MediaError`.

    ``sinks[i]`` receives what the child writes to the output named :func:`sink` (i).
    ``stdout_limit > 0`` captures stdout up to that many bytes (more is an error); otherwise
    stdout goes to /dev/null. ``check=False`` returns failed runs instead of raising (limits,
    timeouts and consumer errors still raise).
    """
    limits = limits or Limits()
    loop = asyncio.get_running_loop()
    exe = resolve(argv[0])
    workdir = tempfile.mkdtemp(prefix="evault-media-")
    channels = [_sink_channel() for _ in sinks]
    fds = {sink(i): w for i, (_, w) in enumerate(channels)}
    real = (exe, *(f"pipe:{fds[a]}" if a in fds else a for a in argv[1:]))
    drains: list[_Drain] = []
    started = time.monotonic()
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                *real,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if stdout_limit else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                cwd=workdir,
                env=child_env(workdir),
                pass_fds=[w for _, w in channels],
                preexec_fn=_preexec(_rlimits(limits)),
                start_new_session=True,
            )
        except OSError as exc:
            raise MediaToolError(f"cannot start {Path(exe).name}: {exc.strerror}") from exc
        finally:
            for _, w in channels:
                os.close(w)
        for (r, _), consumer in zip(channels, sinks, strict=True):
            drains.append(_Drain(r, consumer, loop))
            drains[-1].start()
        out_task = asyncio.ensure_future(_read_capped(proc.stdout, stdout_limit, proc))
        err_task = asyncio.ensure_future(_read_tail(proc.stderr, STDERR_TAIL))
        timed_out = False
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), limits.wall_s)
        except TimeoutError:
            timed_out = True
            await _stop(proc, limits.grace_s)
        except asyncio.CancelledError:
            await asyncio.shield(_stop(proc, limits.grace_s))
            out_task.cancel()
            err_task.cancel()
            raise
        stdout, stderr = await out_task, await err_task
        for d in drains:
            await d.finished
    finally:
        for r, _ in channels[len(drains) :]:  # read ends no thread took over
            os.close(r)
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    rc = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    tail = stderr.decode("utf-8", "replace")
    if stdout is None:
        raise MediaError(f"output larger than {stdout_limit} bytes")
    for d in drains:
        if d.error is not None:
            raise d.error
    if timed_out or rc < 0 or (check and rc != 0):
        raise MediaError(explain(tail, rc, timed_out=timed_out, limits=limits, argv=real))
    return RunResult(real, rc, stdout, tail, elapsed)


def run_sync(
    argv: Sequence[str],
    *,
    limits: Limits | None = None,
    sinks: Sequence[Consumer] = (),
    stdout_limit: int = 0,
    check: bool = True,
) -> RunResult:
    """:func:`run` for code without an event loop (scripts, benchmarks)."""
    return asyncio.run(
        run(argv, limits=limits, sinks=sinks, stdout_limit=stdout_limit, check=check)
    )
