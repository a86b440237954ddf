"""The sandbox: limits, environment, working directory, timeouts, cancellation, sinks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ingest.media.errors import MediaError, MediaToolError
from ingest.media.ffargs import ALLOWED_DEMUXERS, file_url, input_args
from ingest.media.reasons import explain
from ingest.media.sandbox import READ_CHUNK, SINK_BUFFER_BYTES, Limits, run, run_sync, sink

PY = sys.executable


def limits_of(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines()[1:]:
        name = line[:26].strip()
        out[name] = line[26:47].strip()  # the soft limit column
    return out


async def test_child_gets_resource_limits() -> None:
    limits = Limits(wall_s=10, memory_bytes=1 << 30, cpu_s=7, file_size_bytes=1 << 20)
    result = await run(["cat", "/proc/self/limits"], limits=limits, stdout_limit=65536)
    got = limits_of(result.stdout.decode())
    assert got["Max address space"] == str(1 << 30)
    assert got["Max cpu time"] == "7"
    assert got["Max file size"] == str(1 << 20)
    assert got["Max core file size"] == "0"
    assert got["Max open files"] == "256"


async def test_default_cpu_limit_scales_with_wall_time() -> None:
    assert Limits(wall_s=30, threads=2).cpu_seconds() == 95
    result = await run(["cat", "/proc/self/limits"], limits=Limits(wall_s=30), stdout_limit=65536)
    assert limits_of(result.stdout.decode())["Max address space"] == str(2 << 30)


async def test_minimal_environment_and_private_workdir_removed() -> None:
    code = "import os, json; print(json.dumps([os.getcwd(), dict(os.environ)]))"
    result = await run([PY, "-c", code], stdout_limit=65536)
    cwd, env = json.loads(result.stdout)
    assert set(env) <= {"PATH", "LC_ALL", "HOME", "TMPDIR", "LC_CTYPE"}
    assert env["HOME"] == cwd and Path(cwd).name.startswith("evault-media-")
    assert not Path(cwd).exists()


async def test_wall_timeout_terminates() -> None:
    started = time.monotonic()
    with pytest.raises(MediaError) as err:
        await run(["sleep", "30"], limits=Limits(wall_s=0.3))
    assert err.value.reason == "timed out after 0.3 s"
    assert time.monotonic() - started < 5


async def test_child_ignoring_sigterm_is_killed_after_grace() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    started = time.monotonic()
    with pytest.raises(MediaError, match="timed out"):
        await run([PY, "-c", code], limits=Limits(wall_s=0.5, grace_s=0.5))
    assert time.monotonic() - started < 5


async def test_cancellation_stops_the_child() -> None:
    pids: list[int] = []
    code = (
        "import os, sys, time; fd = int(sys.argv[1].split(':')[1]);"
        "os.write(fd, str(os.getpid()).encode()); os.close(fd); time.sleep(60)"
    )

    def take(chunk: memoryview) -> None:
        pids.append(int(bytes(chunk)))

    task = asyncio.ensure_future(run([PY, "-c", code, sink(0)], sinks=[take]))
    for _ in range(100):
        await asyncio.sleep(0.05)
        if pids:
            break
    assert pids, "child did not start"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


async def test_cpu_limit_reports_clearly() -> None:
    with pytest.raises(MediaError) as err:
        await run([PY, "-c", "while True: pass"], limits=Limits(wall_s=20, cpu_s=1))
    assert err.value.reason == "CPU time limit exceeded (1 s)"


async def test_sinks_receive_pipes_and_consumer_errors_propagate() -> None:
    got: list[bytes] = []
    code = "import os, sys\nfor a in sys.argv[1:]: os.write(int(a.split(':')[1]), a.encode())"
    await run([PY, "-c", code, sink(0), sink(1)], sinks=[lambda c: got.append(bytes(c))] * 2)
    assert len(got) == 2 and all(g.startswith(b"pipe:") for g in got)

    def boom(chunk: memoryview) -> None:
        raise MediaError("consumer refused")

    with pytest.raises(MediaError, match="consumer refused"):
        await run([PY, "-c", code, sink(0)], sinks=[boom])


async def test_sinks_are_one_way_buffered_and_read_in_bounded_chunks() -> None:
    """The child's end is a write-only stream socket with a send buffer larger than the
    default; the consumer gets every byte in <= READ_CHUNK pieces."""
    code = (
        "import os, socket, sys\n"
        "fd = int(sys.argv[1].split(':')[1])\n"
        "s = socket.socket(fileno=os.dup(fd))\n"
        "print(s.family == socket.AF_UNIX, s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))\n"
        "print(s.recv(1) == b'')\n"
        "os.write(fd, bytes(range(256)) * 8192)"
    )
    sizes: list[int] = []
    data = bytearray()

    def take(chunk: memoryview) -> None:
        sizes.append(len(chunk))
        data.extend(chunk)

    result = await run([PY, "-c", code, sink(0)], sinks=[take], stdout_limit=100)
    family, sndbuf, no_read = result.stdout.split()
    assert family == b"True" and no_read == b"True"
    with open("/proc/sys/net/core/wmem_max", "rb") as f:
        assert int(sndbuf) >= min(SINK_BUFFER_BYTES, int(f.read())) > 65536
    assert data == bytes(range(256)) * 8192 and max(sizes) <= READ_CHUNK


async def test_stdout_limit() -> None:
    with pytest.raises(MediaError, match="output larger than 100 bytes"):
        await run([PY, "-c", "print('x' * 1000)"], stdout_limit=100)


async def test_missing_tool_is_a_tool_error() -> None:
    with pytest.raises(MediaToolError):
        await run(["no-such-ffmpeg-binary"])


def test_run_sync_and_nonzero_exit_reason() -> None:
    with pytest.raises(MediaError) as err:
        run_sync(
            [PY, "-c", "import sys; sys.stderr.write('/secret/path.mp4: bad\\n'); sys.exit(3)"]
        )
    assert err.value.reason.startswith("ffmpeg failed:")
    assert run_sync(["true"]).returncode == 0
    assert run_sync(["false"], check=False).returncode == 1


def test_input_args_confine_every_input(tmp_path: Path) -> None:
    weird = tmp_path / "-i http:evil.mp4"
    args = input_args(weird, demuxer="mov", threads=2, before=["-ss", "1.000"])
    assert args[-2:] == ["-i", "file:" + str(weird)]
    assert args[args.index("-protocol_whitelist") + 1] == "file,pipe"
    assert args[args.index("-format_whitelist") + 1].split(",") == list(ALLOWED_DEMUXERS)
    assert args[args.index("-f") + 1] == "mov"
    assert args.index("-ss") < args.index("-i")
    assert file_url("rel.mp4") == "file:" + str(Path.cwd() / "rel.mp4")
    for bad in ("hls", "concat", "image2", "tee", "dash"):
        assert bad not in ALLOWED_DEMUXERS
        with pytest.raises(MediaError, match=f"format {bad} not allowed"):
            input_args(weird, demuxer=bad)


def test_explain_reasons() -> None:
    lim = Limits(wall_s=30, memory_bytes=1 << 30, memory_origin="the probe's built-in default")
    cases = {
        "[hls @ 0x55d] Format not on whitelist 'mov,avi'": "format hls not allowed",
        "[concat @ 0x1] Format not on whitelist 'mov'": "format concat not allowed",
        "Protocol 'http' not on whitelist 'file,pipe'!": (
            "refers to another resource (http protocol not allowed)"
        ),
        "[mov,mp4 @ 0x2] moov atom not found": "truncated (no moov atom)",
        "x: Invalid data found when processing input": "not a media file (invalid data)",
        "Cannot allocate memory": "memory limit exceeded (1024 MiB: the probe's built-in default)",
        # ENOMEM from the stream limit is not a memory limit: named as what it is.
        "[matroska,webm @ 0x5] Number of streams exceeds max_streams parameter (64), see the"
        " documentation if you wish to increase it\nfile:/x.mkv: Cannot allocate memory": (
            "too many streams (more than 64: the media sandbox's stream limit)"
        ),
    }
    for stderr, reason in cases.items():
        assert explain(stderr, 1, timed_out=False, limits=lim) == reason
    assert explain("", 0, timed_out=True, limits=lim) == "timed out after 30 s"
    assert explain("", -signal.SIGSEGV, timed_out=False, limits=lim) == "ffmpeg killed by SIGSEGV"
    scrubbed = explain(
        "file:/vault/x.mp4: odd failure @ 0xdeadbeef",
        1,
        timed_out=False,
        limits=lim,
        argv=["ffmpeg", "-i", "file:/vault/x.mp4"],
    )
    assert "/vault" not in scrubbed and scrubbed.startswith("ffmpeg failed: <file>")
