"""The measurements: list latency, Range streaming, dock upload, and their baselines."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import yarl

from apibench.common import DOCK, MIB, pct

# -- measurements ----------------------------------------------------------------------------


async def list_load(
    url: str, token: str, cases: list[str], clients: int, requests: int
) -> dict[str, float]:
    """``requests`` list calls by ``clients`` closed-loop clients on random cases."""
    latencies: list[float] = []
    errors = items = 0
    todo = iter(range(requests))
    headers = {"Authorization": f"Bearer {token}"}
    rng = secrets.SystemRandom()
    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, connector=conn, headers=headers) as s:

        async def client() -> None:
            nonlocal errors, items
            for _ in todo:
                params = {"case": rng.choice(cases)}
                t = time.perf_counter()
                async with s.get("/v1/evidence", params=params) as r:
                    body = await r.read()
                latencies.append(time.perf_counter() - t)
                if r.status != 200:
                    errors += 1
                else:
                    items += len(json.loads(body)["items"])

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return {
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "rate": requests / elapsed,
        "errors": errors,
        "items": items / requests,
    }


_LIST_LUA = """
local cases = {}
for line in io.lines(os.getenv("EVAULT_BENCH_CASES")) do cases[#cases + 1] = line end
wrk.headers["Authorization"] = "Bearer " .. os.getenv("EVAULT_BENCH_TOKEN")
math.randomseed(tonumber(os.getenv("EVAULT_BENCH_SEED")))
request = function()
  return wrk.format("GET", "/v1/evidence?case=" .. cases[math.random(#cases)])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "\\nEVAULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


def wrk_list_load(
    url: str, token: str, cases: list[str], clients: int, seconds: float, tmp: Path
) -> dict[str, float]:
    """``GET /v1/evidence?case=<random case>`` by ``clients`` closed-loop keep-alive
    connections of ``wrk`` (one thread: C, a few percent of a core) for ``seconds``; each
    connection sends its next request when the previous answer is in. Latency percentiles are
    wrk's (microsecond histogram); ``errors``: non-2xx answers and socket errors."""
    script, listing = tmp / "list.lua", tmp / f"cases-{len(cases)}.txt"
    script.write_text(_LIST_LUA)
    listing.write_text("\n".join(cases) + "\n")
    env = {
        **os.environ,
        "EVAULT_BENCH_CASES": str(listing),
        "EVAULT_BENCH_TOKEN": token,
        "EVAULT_BENCH_SEED": str(secrets.randbelow(1 << 30)),
    }
    threads = min(clients, 2)
    command = ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{max(1, round(seconds))}s"]
    command += ["--timeout", "10s", "-s", str(script), url]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    out = done.stdout
    line = next((x for x in out.splitlines() if x.startswith("EVAULT ")), None)
    if line is None:
        raise RuntimeError("wrk printed no summary:\n" + out)
    n, duration_us, p50, p99, status_errors, socket_errors = map(int, line.split()[1:])
    return {
        "p50": p50 / 1e6,
        "p99": p99 / 1e6,
        "rate": n / (duration_us / 1e6),
        "errors": status_errors + socket_errors,
        "requests": n,
    }


def page_cache_read(path: str, passes: int) -> float:
    """Bytes/s of one thread reading ``path`` from the page cache (after a warming pass)."""
    buf = bytearray(MIB)
    total = 0
    t = 0.0
    for p in range(passes + 1):
        start = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n if p else 0
        if p:
            t += time.perf_counter() - start
    return total / t


async def range_probe(url: str, token: str, eid: str, size: int, path: str) -> None:
    """Correctness first (aiohttp): one Range of the object compared with the file."""
    probe = (size // 2, min(size, size // 2 + MIB))
    async with (
        aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {token}"}) as s,
        s.get(
            f"/v1/evidence/{eid}/content", headers={"Range": f"bytes={probe[0]}-{probe[1] - 1}"}
        ) as r,
    ):
        body = await r.read()
    with open(path, "rb") as f:
        f.seek(probe[0])
        if r.status != 206 or body != f.read(probe[1] - probe[0]):
            raise RuntimeError(f"Range probe failed: {r.status}")


class _RangeClient:
    """One keep-alive HTTP/1.1 connection reading bodies with ``recv_into`` a 4 MiB buffer:
    a client that costs little next to what it measures (no parsing beyond the head)."""

    def __init__(self, host: str, port: int, request_head: bytes) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MIB)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.head = request_head
        self.view = memoryview(bytearray(4 * MIB))

    def get(self, start: int, end: int) -> tuple[int, int]:
        """(status, body bytes) of ``Range: bytes=start-(end-1)``."""
        self.sock.sendall(self.head % (start, end - 1))
        got = bytearray()
        while (cut := got.find(b"\r\n\r\n")) < 0:
            n = self.sock.recv_into(self.view, 65536)
            if not n:
                raise ConnectionError("closed before the response head")
            got += self.view[:n]
        head = bytes(got[:cut]).decode("latin-1").lower()
        status = int(head.split(None, 2)[1])
        length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
        have = len(got) - cut - 4
        while have < length:
            n = self.sock.recv_into(self.view, min(len(self.view), length - have))
            if not n:
                raise ConnectionError("closed mid-body")
            have += n
        return status, have

    def close(self) -> None:
        self.sock.close()


def range_stream(
    url: str, token: str | None, target: str, size: int, chunk: int, clients: int, passes: int
) -> dict[str, float]:
    """``passes`` times over ``[0, size)`` in ``chunk`` ranges by ``clients`` threads (each
    its own keep-alive connection, recv_into: the GIL is released while bytes move)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{auth}Range: bytes=%d-%d\r\n\r\n").encode()
    ranges = iter([s for _ in range(passes) for s in range(0, size, chunk)])
    lock = threading.Lock()
    got: list[int] = []
    errors: list[int] = []

    def client() -> None:
        c = _RangeClient(host, int(port), head)
        n = bad = 0
        try:
            while True:
                with lock:
                    start = next(ranges, None)
                if start is None:
                    break
                end = min(size, start + chunk)
                status, length = c.get(start, end)
                n += length
                bad += status != 206 or length != end - start
        finally:
            c.close()
            with lock:
                got.append(n)
                errors.append(bad)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {"rate": sum(got) / elapsed, "errors": sum(errors)}


@contextlib.contextmanager
def transport_floor(path: str) -> Iterator[str]:
    """``apibench/floor.py`` serving ``path`` (bare sendfile over loopback); yields its URL."""
    floor = Path(__file__).with_name("floor.py")
    proc = subprocess.Popen([sys.executable, str(floor), path], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield f"http://127.0.0.1:{int(proc.stdout.readline())}"
    finally:
        proc.kill()
        proc.wait()


def upload_chunks(size: int, block: memoryview) -> Iterator[memoryview]:
    """The upload body: 1 MiB chunks of a 64 MiB random block at shifting offsets (distinct
    content, no generation cost during the measurement)."""
    sent = k = 0
    while sent < size:
        n = min(MIB, size - sent)
        off = (k * 1_048_583) % (len(block) - MIB)
        yield block[off : off + n]
        sent += n
        k += 1


def durable_write(folder: Path, size: int, block: memoryview) -> float:
    """Bytes/s of writing the upload's bytes to a new file in ``folder`` (the service's
    filesystem) in 1 MiB writes, then fsync: what the disk allows a durable upload, at most."""
    fd, name = tempfile.mkstemp(prefix="disk-floor-", dir=folder)
    try:
        t = time.perf_counter()
        for c in upload_chunks(size, block):
            os.write(fd, c)
        os.fsync(fd)
        return size / (time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(name)


def upload_block() -> memoryview:
    """64 MiB of random bytes that ``upload_chunks`` cuts the body from."""
    return memoryview(hashlib.shake_256(secrets.token_bytes(16)).digest(64 * MIB))


def sha256_rate(size: int, block: memoryview) -> tuple[str, float]:
    """(hex digest, bytes/s) of hashlib SHA-256 over the upload body alone."""
    t = time.perf_counter()
    h = hashlib.sha256()
    for c in upload_chunks(size, block):
        h.update(c)
    return h.hexdigest(), size / (time.perf_counter() - t)


async def put(
    url: str,
    target: str,
    headers: dict[str, str],
    size: int,
    block: memoryview,
    expect: int = 201,
) -> dict[str, float]:
    """One PUT of the upload body through aiohttp until the answer (``expect``; for 201, the
    receipt, whose ``sha256`` is checked against ``X-Content-SHA256``); ``rate``: bytes/s to
    the answer; ``tail``: from the last body byte handed to the connection to the answer.
    ``target`` is a path under ``url``, or with ``url`` empty an absolute URL sent as it is
    (a presigned one: its query must not be re-encoded)."""
    sent_all = 0.0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent_all
        for c in upload_chunks(size, block):
            yield bytes(c)
        sent_all = time.perf_counter()

    headers = {
        **headers,
        "Content-Length": str(size),
        "Content-Type": "application/octet-stream",
    }
    timeout = aiohttp.ClientTimeout(total=3600)
    where: str | yarl.URL = target if url else yarl.URL(target, encoded=True)
    async with aiohttp.ClientSession(url or None, timeout=timeout) as s:
        t = time.perf_counter()
        async with s.put(where, data=body(), headers=headers) as r:
            answer = await r.read()
        done = time.perf_counter()
    ok = r.status == expect
    out = {"rate": size / (done - t), "tail": done - sent_all}
    if ok and expect == 201:
        receipt = json.loads(answer)
        ok = receipt.get("sha256") == headers["X-Content-SHA256"]
        if "o_direct_bytes" in receipt:  # the bare receiver's
            out["o_direct"] = receipt["o_direct_bytes"] / size
    if not ok:
        raise RuntimeError(f"upload to {url}{target} failed: {r.status} {answer[:500]!r}")
    return out


_SEQ = iter(range(1, 1 << 30))


def dock_target() -> str:
    """A new file name in the bench's dock, as a body camera names its files."""
    stamp = f"{datetime.now(UTC):%Y%m%d%H%M%S}"
    return f"/v1/docks/{DOCK}/files/DSJ-BENCH_OFF99999_{stamp}_{next(_SEQ)}.mp4"


async def upload(url: str, token: str, size: int, folder: Path) -> dict[str, float]:
    """hashlib over the body, then the PUT until its receipt; ``tail``: from the last body
    byte handed to the connection to the receipt (fsync, rename, ledger entry, checkpoint);
    ``disk_rate``: ``durable_write`` of the same bytes into ``folder``, after the upload."""
    block = upload_block()
    digest, hash_rate = sha256_rate(size, block)
    headers = {"Authorization": f"Bearer {token}", "X-Content-SHA256": digest}
    got = await put(url, dock_target(), headers, size, block)
    disk_rate = await asyncio.to_thread(durable_write, folder, size, block)
    return {**got, "hash_rate": hash_rate, "disk_rate": disk_rate}
