"""The measurements: list latency, Range streaming, dock upload, and their baselines."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import aiohttp

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


async def range_stream(
    url: str, token: str, eid: str, size: int, chunk: int, clients: int, passes: int, path: str
) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"}
    ranges = iter([s for _ in range(passes) for s in range(0, size, chunk)])
    got = errors = 0
    latencies: list[float] = []
    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, connector=conn, headers=headers) as s:
        # correctness first: one range compared with the file
        probe = (size // 2, min(size, size // 2 + MIB))
        async with s.get(
            f"/v1/evidence/{eid}/content", headers={"Range": f"bytes={probe[0]}-{probe[1] - 1}"}
        ) as r:
            body = await r.read()
        with open(path, "rb") as f:
            f.seek(probe[0])
            if r.status != 206 or body != f.read(probe[1] - probe[0]):
                raise RuntimeError(f"Range probe failed: {r.status}")

        async def client() -> None:
            nonlocal got, errors
            for start in ranges:
                end = min(size, start + chunk) - 1
                t = time.perf_counter()
                async with s.get(
                    f"/v1/evidence/{eid}/content", headers={"Range": f"bytes={start}-{end}"}
                ) as r:
                    n = 0
                    while data := await r.content.readany():
                        n += len(data)
                latencies.append(time.perf_counter() - t)
                if r.status != 206 or n != end - start + 1:
                    errors += 1
                got += n

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return {"rate": got / elapsed, "errors": errors, "p99": pct(latencies, 99)}


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


async def upload(url: str, token: str, size: int) -> dict[str, float]:
    """hashlib over the body, then the PUT until its receipt; ``tail``: from the last body
    byte handed to the connection to the receipt (fsync, rename, ledger entry, checkpoint)."""
    block = memoryview(hashlib.shake_256(secrets.token_bytes(16)).digest(64 * MIB))
    t = time.perf_counter()
    h = hashlib.sha256()
    for c in upload_chunks(size, block):
        h.update(c)
    digest = h.hexdigest()
    hash_rate = size / (time.perf_counter() - t)
    sent_all = 0.0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent_all
        for c in upload_chunks(size, block):
            yield bytes(c)
        sent_all = time.perf_counter()

    name = f"DSJ-BENCH_OFF99999_{datetime.now(UTC):%Y%m%d%H%M%S}.mp4"
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Content-SHA256": digest,
        "Content-Length": str(size),
        "Content-Type": "application/octet-stream",
    }
    timeout = aiohttp.ClientTimeout(total=3600)
    async with aiohttp.ClientSession(url, timeout=timeout) as s:
        t = time.perf_counter()
        async with s.put(f"/v1/docks/{DOCK}/files/{name}", data=body(), headers=headers) as r:
            receipt = await r.json(content_type=None)
        done = time.perf_counter()
    if r.status != 201 or receipt.get("sha256") != digest:
        raise RuntimeError(f"upload failed: {r.status} {receipt}")
    return {"rate": size / (done - t), "hash_rate": hash_rate, "tail": done - sent_all}
