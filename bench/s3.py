"""The service on the S3 store against plain S3 clients on the same gateway (a single-node Ceph
started by tests/storage/ceph_fixture.py), each target with its baseline in the same run.

Usage: python bench/s3.py [--size-mib 64] [--repeat 5] [--ranges 100] [--range-mib 1,8]
                         [--ceph INFO.json]

PostgreSQL: EVAULT_TEST_DSN if set (a server where databases may be created), else an embedded
one (pgserver). ``--ceph``: the JSON line printed by ``python tests/storage/ceph_fixture.py
FOLDER`` (a cluster already running); without it a cluster is started and stopped here.

1. Acquisition, REPEAT rounds on a fresh SIZE file each (order alternating):
   (a) a plain multipart upload of the file by aiobotocore, the library the store uses: the
       same part size and parts in flight, no hashing, no Content-MD5, no lock, no HEAD;
   (b) the dock file -> receipt through the service's ``Acquirer`` on the S3 store (hash
       pass: SHA-256 of the file and of each part; upload with each part signed with its
       SHA-256, checked by the store; lock unless the bucket's default retention covers it,
       HEAD confirmation, evidence row, ledger entry and signed checkpoint), in this process.
   Target: (b) >= 80% of (a)'s rate (medians). Floor: the plain upload after one SHA-256
   pass over the file (the object's key is its hash, known only once the whole file is read),
   timed in the same rounds.
2. Range streaming: a real ``evault serve`` on the S3 store, one SIZE file PUT to its dock and
   linked to a case; for each size in RANGE_MIB, RANGES random ranges of that size, fetched
   with the same HTTP client
   (http.client, one keep-alive connection each) from
   (c) the gateway itself (a presigned GET of the object's version),
   (d) the service's /v1/evidence/{id}/content (bearer token), and
   (e) a bare relay: a separate Python process that only forwards each GET to the gateway's
       presigned URL and streams the answer back (aiohttp, as the service), nothing else;
   in turn for each range.
   Target: (d) >= 70% of (c)'s rate (total times), for each range size. Floor: (e)'s rate,
   what any relay through one more Python process gets on this machine.
3. Peak RSS: this process (which ran the acquisitions) and the `evault serve` process (VmHWM).
   Target: each <= 300 MB.

Prints one ``target NAME: VALUE (GOAL) met|MISSED`` line per target at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import random
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), *(str(REPO / "tests" / d) for d in ("storage", "crypto", "api"))]

from ceph_fixture import CephCluster, missing, start  # noqa: E402

from vault.config import S3StoreConfig, StoreConfig  # noqa: E402
from vault.storage.s3client import S3Credentials, open_client  # noqa: E402
from vault.storage.s3store import key_of  # noqa: E402
from vault.storage.s3upload import INFLIGHT  # noqa: E402

MIB = 1 << 20
PART = 8 * MIB  # the service's default store.s3.part_size
NAME = "DEV01_OFF123_20260101{:06d}.mp4"


def target(name: str, value: float, goal: str, met: bool, unit: str = "") -> str:
    shown = f"{value:.0f}" if unit else f"{value:.3f}"
    return f"target {name}: {shown}{unit} ({goal}) {'met' if met else 'MISSED'}"


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as f:
        for _ in range(size // MIB):
            f.write(secrets.token_bytes(MIB))
        f.write(secrets.token_bytes(size % MIB))


async def plain_upload(client: Any, bucket: str, key: str, path: Path) -> None:
    """A multipart upload as a plain client makes it: INFLIGHT parts of PART bytes at once."""
    started = await client.create_multipart_upload(Bucket=bucket, Key=key)
    upload_id = started["UploadId"]
    size = path.stat().st_size
    sem = asyncio.Semaphore(INFLIGHT)
    etags: dict[int, str] = {}
    fd = os.open(path, os.O_RDONLY)

    async def send(n: int, offset: int) -> None:
        try:
            data = await asyncio.to_thread(os.pread, fd, min(PART, size - offset), offset)
            got = await client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data
            )
            etags[n] = got["ETag"]
        finally:
            sem.release()

    try:
        tasks = []
        for n, offset in enumerate(range(0, size, PART), start=1):
            await sem.acquire()
            tasks.append(asyncio.create_task(send(n, offset)))
        await asyncio.gather(*tasks)
    finally:
        os.close(fd)
    await client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]},
    )


def s3_cfg(ceph: CephCluster, bucket: str) -> S3StoreConfig:
    return S3StoreConfig(
        endpoint=ceph.endpoint,
        bucket=bucket,
        region=ceph.region,
        create_bucket=True,
        part_size=PART,
        retain_days=1,
    )


def sha256_pass(path: Path) -> float:
    """Seconds of one SHA-256 pass over the file, read in parts."""
    t0 = time.perf_counter()
    hasher = hashlib.sha256()
    with path.open("rb", buffering=0) as f:
        while data := f.read(PART):
            hasher.update(data)
    return time.perf_counter() - t0


async def acquisition(
    ceph: CephCluster, dsn: str, size: int, repeat: int, work: Path
) -> tuple[float, float, float]:
    """Section 1: median seconds of the plain upload, of the acquisition, of a SHA-256 pass."""
    from crypto_fixtures import dock, open_env

    from ingest.acquire import Receipt

    os.environ["AWS_ACCESS_KEY_ID"] = ceph.access_key
    os.environ["AWS_SECRET_ACCESS_KEY"] = ceph.secret_key
    creds = S3Credentials(ceph.access_key, ceph.secret_key, "bench")
    plain_bucket = "bench-plain-" + secrets.token_hex(4)
    store = StoreConfig(backend="s3", s3=s3_cfg(ceph, "bench-svc-" + secrets.token_hex(4)))
    work.mkdir(parents=True, exist_ok=True)
    d = dock(work, label="internal", release="keep")
    times: dict[str, list[float]] = {"plain": [], "service": [], "hash": []}
    async with (
        open_client(s3_cfg(ceph, plain_bucket), creds) as client,
        open_env(dsn, work, [d], store=store) as env,
    ):
        await client.create_bucket(Bucket=plain_bucket, ObjectLockEnabledForBucket=True)
        for i in range(repeat):
            path = d.path / NAME.format(i)
            write_random(path, size)
            times["hash"].append(await asyncio.to_thread(sha256_pass, path))
            for which in ("plain", "service") if i % 2 == 0 else ("service", "plain"):
                t0 = time.perf_counter()
                if which == "plain":
                    await plain_upload(client, plain_bucket, f"plain-{i}", path)
                else:
                    got = await env.acq.acquire_path(d, path)
                    assert isinstance(got, Receipt), got
                times[which].append(time.perf_counter() - t0)
            print(
                f"  round {i + 1}: plain {times['plain'][-1]:.2f} s,"
                f" acquisition {times['service'][-1]:.2f} s",
                flush=True,
            )
            path.unlink()
    return (
        statistics.median(times["plain"]),
        statistics.median(times["service"]),
        statistics.median(times["hash"]),
    )


@contextlib.contextmanager
def serving(ceph: CephCluster, admin_dsn: str, work: Path) -> Iterator[Any]:
    from http_fixtures import seeded_service
    from test_s3_http import s3_env

    env = s3_env(ceph, "bench-http-" + secrets.token_hex(4), work / "cred")
    env["EVAULT_STORE_S3_PART_SIZE"] = str(PART)
    with seeded_service(admin_dsn, work / "data", env) as w:
        yield w, env["EVAULT_STORE_S3_BUCKET"]


RELAY = """
import asyncio, sys
import aiohttp
from aiohttp import web

async def main():
    session = aiohttp.ClientSession(auto_decompress=False)
    target = sys.argv[1]

    async def relay(request):
        async with session.get(target, headers={"Range": request.headers["Range"]}) as got:
            out = web.StreamResponse(status=got.status)
            out.content_length = got.content_length
            await out.prepare(request)
            async for chunk in got.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    app = web.Application()
    app.router.add_get("/", relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@contextlib.contextmanager
def relay(url: str) -> Iterator[http.client.HTTPConnection]:
    """A bare relay to ``url`` in its own process (section 2's floor), and a connection to it."""
    proc = subprocess.Popen([sys.executable, "-c", RELAY, url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            yield conn
        finally:
            conn.close()
    finally:
        proc.terminate()
        proc.wait()


def vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def ranges(
    ceph: CephCluster, admin_dsn: str, size: int, nranges: int, span_mib: list[int], work: Path
) -> tuple[dict[int, dict[str, float]], int]:
    """Section 2: {range MiB: {"gateway"/"service"/"relay": seconds}}, and serve's peak RSS."""
    work.mkdir(parents=True, exist_ok=True)
    src = work / "range-src"
    write_random(src, size)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    with serving(ceph, admin_dsn, work) as (w, bucket):
        url = urllib.parse.urlsplit(w.svc.url)
        svc = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        with src.open("rb") as body:
            hdrs = {
                "Authorization": f"Bearer {w.tokens['dock1']}",
                "X-Content-SHA256": sha,
                "Content-Length": str(size),
            }
            svc.request("PUT", f"/v1/docks/dock-01/files/{NAME.format(999)}", body, hdrs)
            r = svc.getresponse()
            receipt = json.loads(r.read())
            assert r.status == 201, receipt
        evidence_id = receipt["evidence_id"]
        r = w.call(
            "POST",
            "/v1/cases/C1/evidence",
            who="admin",
            body=json.dumps({"evidence_id": evidence_id}).encode(),
        )
        assert r.status == 201, r.body
        presigned = asyncio.run(_presign(ceph, bucket, key_of(sha)))
        gw_url = urllib.parse.urlsplit(presigned)
        gw = http.client.HTTPConnection(gw_url.hostname, gw_url.port, timeout=120)
        gw_path = f"{gw_url.path}?{gw_url.query}"
        svc_path = f"/v1/evidence/{evidence_id}/content"
        auth = {"Authorization": f"Bearer {w.tokens['reviewer']}"}
        time.sleep(3)  # let the upload's media job (random bytes: it fails fast) settle
        data = src.read_bytes()
        out = {}
        with relay(presigned) as rel:
            for mib in span_mib:
                spent = {"gateway": 0.0, "service": 0.0, "relay": 0.0}
                n = mib * MIB
                for k in range(nranges):
                    off = random.randrange(0, size - n)
                    rng = {"Range": f"bytes={off}-{off + n - 1}"}
                    order = [
                        ("gateway", gw, gw_path, {}),
                        ("service", svc, svc_path, auth),
                        ("relay", rel, "/", {}),
                    ]
                    for which, conn, path, extra in order[k % 3 :] + order[: k % 3]:
                        t0 = time.perf_counter()
                        conn.request("GET", path, headers={**rng, **extra})
                        r = conn.getresponse()
                        got = r.read()
                        spent[which] += time.perf_counter() - t0
                        assert r.status == 206, (which, r.status, got[:200])
                        assert got == data[off : off + n], which
                out[mib] = spent
                rates = ", ".join(f"{w} {nranges * mib / t:7.1f} MiB/s" for w, t in spent.items())
                print(f"  {mib} MiB ranges: {rates}", flush=True)
        del data
        gw.close()
        svc.close()
        rss = vm_hwm(w.svc.proc.pid)
    return out, rss


async def _presign(ceph: CephCluster, bucket: str, key: str) -> str:
    creds = S3Credentials(ceph.access_key, ceph.secret_key, "bench")
    async with open_client(s3_cfg(ceph, bucket), creds) as client:
        versions = await client.list_object_versions(Bucket=bucket, Prefix=key)
        version = sorted(versions["Versions"], key=lambda v: v["LastModified"])[0]["VersionId"]
        return str(
            await client.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": key, "VersionId": version},
                ExpiresIn=3600,
            )
        )


@contextlib.contextmanager
def postgres(work: Path) -> Iterator[str]:
    """A server where databases may be created: EVAULT_TEST_DSN, else an embedded one."""
    dsn = os.environ.get("EVAULT_TEST_DSN")
    if dsn:
        yield dsn
        return
    import pgserver

    server = pgserver.get_server(work / "pg", cleanup_mode="stop")
    try:
        yield str(server.get_uri("postgres"))
    finally:
        server.cleanup()


async def _create_db(admin_dsn: str) -> str:
    import asyncpg

    from vault.db import with_database

    name = "evault_bench_" + secrets.token_hex(4)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return str(with_database(admin_dsn, name))


async def _drop_db(admin_dsn: str, dsn: str) -> None:
    import asyncpg

    name = urllib.parse.urlsplit(dsn).path.lstrip("/")
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@contextlib.contextmanager
def cluster(info: str | None, work: Path) -> Iterator[CephCluster]:
    if info:
        got = json.loads(Path(info).read_text())
        yield CephCluster(
            root=Path(got["conf"]).parent,
            endpoint=got["endpoint"],
            access_key=got["access_key"],
            secret_key=got["secret_key"],
            region=got["region"],
        )
        return
    ceph = start(work / "ceph")
    print(f"Ceph ready in {ceph.started_in:.1f} s, {ceph.rss_bytes() / 1e6:.0f} MB RSS")
    try:
        yield ceph
    finally:
        ceph.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ranges", type=int, default=100)
    parser.add_argument("--range-mib", default="1,8", help="range sizes, MiB, comma-separated")
    parser.add_argument("--ceph", help="JSON line of a running ceph_fixture cluster")
    args = parser.parse_args()
    reason = None if args.ceph else missing()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    size = args.size_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="evault-bench-s3-"))
    try:
        with cluster(args.ceph, work) as ceph, postgres(work) as admin_dsn:
            print(f"{args.size_mib} MiB files, parts of {PART // MIB} MiB, {INFLIGHT} in flight")
            print("1. acquisition (dock file -> receipt) vs a plain multipart upload")
            dsn = asyncio.run(_create_db(admin_dsn))
            try:
                plain, service, hashing = asyncio.run(
                    acquisition(ceph, dsn, size, args.repeat, work / "acq")
                )
            finally:
                asyncio.run(_drop_db(admin_dsn, dsn))
            own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            mb = size / MIB
            print(
                f"  plain upload {mb / plain:7.1f} MiB/s, acquisition {mb / service:7.1f} MiB/s,"
                f" SHA-256 pass {mb / hashing:7.1f} MiB/s"
            )
            print(f"2. {args.ranges} ranged reads each: gateway vs the service's content")
            spans = [int(x) for x in args.range_mib.split(",")]
            got, serve_rss = ranges(ceph, admin_dsn, size, args.ranges, spans, work / "http")
            print(f"floor acquisition/plain-upload: {plain / (plain + hashing):.3f}")
            for mib, spent in got.items():
                print(f"floor range-{mib}MiB/gateway: {spent['gateway'] / spent['relay']:.3f}")
            ratio = plain / service
            print(target("acquisition/plain-upload", ratio, ">= 0.80", ratio >= 0.8))
            for mib, spent in got.items():
                ratio = spent["gateway"] / spent["service"]
                print(target(f"range-{mib}MiB/gateway", ratio, ">= 0.70", ratio >= 0.7))
            print(target("peak-rss-acquirer", own_rss / 1e6, "<= 300 MB", own_rss <= 300e6, " MB"))
            print(target("peak-rss-serve", serve_rss / 1e6, "<= 300 MB", serve_rss <= 300e6, " MB"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
