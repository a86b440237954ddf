"""The S3 blob store against a plain client on the same gateway (a single-node Ceph started by
tests/storage/ceph_fixture.py): the store level of the issue's targets; the service-level runs
(acquisition from a dock, Range through the API) come when the service uses the S3 store.

Usage: python bench/s3.py [--size-mib 256] [--repeat 3] [--ranges 200]

Times, interleaved, REPEAT rounds of:

  (a) a plain multipart upload of the file with aiobotocore: the same part size and parts in
      flight as the store, no Content-MD5, no hashing, no lock, no HEAD  -- the baseline
  (b) S3BlobStore.put_file of the same file (a new bucket each round, so it is really sent):
      hash pass, Content-MD5 per part, COMPLIANCE lock, HEAD confirmation
  (c) RANGES ranged GETs of 1 MiB at random offsets straight from the gateway
  (d) the same ranges through S3BlobStore.read

and prints the ratios b/a (target >= 0.8) and d/c (target >= 0.7) and this process's peak RSS
(target <= 300 MB; it includes the benchmark's own buffers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "storage")]

from ceph_fixture import CephCluster, missing, start  # noqa: E402

from vault.config import S3StoreConfig  # noqa: E402
from vault.storage.s3client import S3Credentials, open_client  # noqa: E402
from vault.storage.s3store import S3BlobStore  # noqa: E402
from vault.storage.s3upload import INFLIGHT  # noqa: E402

MIB = 1 << 20


def config(ceph: CephCluster, bucket: str) -> S3StoreConfig:
    return S3StoreConfig(
        endpoint=ceph.endpoint, bucket=bucket, region=ceph.region, create_bucket=True
    )


async def plain_upload(client: Any, bucket: str, path: Path, part: int) -> None:
    started = await client.create_multipart_upload(Bucket=bucket, Key="plain")
    upload_id = started["UploadId"]
    size = path.stat().st_size
    sem = asyncio.Semaphore(INFLIGHT)
    etags: dict[int, str] = {}
    fd = os.open(path, os.O_RDONLY)

    async def send(n: int, offset: int) -> None:
        try:
            data = await asyncio.to_thread(os.pread, fd, min(part, size - offset), offset)
            got = await client.upload_part(
                Bucket=bucket, Key="plain", UploadId=upload_id, PartNumber=n, Body=data
            )
            etags[n] = got["ETag"]
        finally:
            sem.release()

    try:
        tasks = []
        for n, offset in enumerate(range(0, size, part), start=1):
            await sem.acquire()
            tasks.append(asyncio.create_task(send(n, offset)))
        await asyncio.gather(*tasks)
    finally:
        os.close(fd)
    await client.complete_multipart_upload(
        Bucket=bucket,
        Key="plain",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]},
    )


async def run(ceph: CephCluster, size: int, repeat: int, nranges: int, work: Path) -> None:
    creds = S3Credentials(ceph.access_key, ceph.secret_key, "bench")
    src = work / "src"
    with src.open("wb") as f:
        for _ in range(size // MIB):
            f.write(secrets.token_bytes(MIB))
    cfg0 = config(ceph, "bench-" + secrets.token_hex(4))
    times: dict[str, list[float]] = {"a": [], "b": [], "c": [], "d": []}
    async with open_client(cfg0, creds) as client:
        await client.create_bucket(Bucket=cfg0.bucket, ObjectLockEnabledForBucket=True)
        for _ in range(repeat):
            t0 = time.perf_counter()
            await plain_upload(client, cfg0.bucket, src, cfg0.part_size)
            times["a"].append(time.perf_counter() - t0)
            cfg = config(ceph, "bench-" + secrets.token_hex(4))
            async with S3BlobStore.open(cfg, credentials=creds, spool_dir=work) as store:
                fd = os.open(src, os.O_RDONLY)
                try:
                    t0 = time.perf_counter()
                    stored = await store.put_file(fd, retain_until=_tomorrow())
                    times["b"].append(time.perf_counter() - t0)
                finally:
                    os.close(fd)
                offsets = [random.randrange(0, size - MIB) for _ in range(nranges)]
                t0 = time.perf_counter()
                for off in offsets:
                    got = await client.get_object(
                        Bucket=cfg0.bucket, Key="plain", Range=f"bytes={off}-{off + MIB - 1}"
                    )
                    async with got["Body"] as body:
                        assert len(await body.read()) == MIB
                times["c"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                for off in offsets:
                    n = sum([len(c) async for c in store.read(stored.sha256, off, off + MIB)])
                    assert n == MIB
                times["d"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    part = cfg0.part_size
    print(
        f"{size / MIB:.0f} MiB, {repeat} rounds, {nranges} ranges of 1 MiB, part {part // MIB} MiB"
    )
    print(f"(a) plain multipart upload   {size / MIB / med['a']:8.1f} MiB/s  {times['a']}")
    print(f"(b) S3BlobStore.put_file     {size / MIB / med['b']:8.1f} MiB/s  {times['b']}")
    print(f"(c) ranged GETs, plain       {nranges / med['c']:8.1f} /s     {times['c']}")
    print(f"(d) ranged reads, the store  {nranges / med['d']:8.1f} /s     {times['d']}")
    ab, cd = med["a"] / med["b"], med["c"] / med["d"]
    print(f"b/a {ab:.2f} (target >= 0.80) {'OK' if ab >= 0.8 else 'BELOW'}")
    print(f"d/c {cd:.2f} (target >= 0.70) {'OK' if cd >= 0.7 else 'BELOW'}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"peak RSS {rss / 1e6:.0f} MB (target <= 300 MB);"
        f" Ceph daemons {ceph.rss_bytes() / 1e6:.0f} MB"
    )


def _tomorrow() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(days=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ranges", type=int, default=200)
    args = parser.parse_args()
    reason = missing()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="evault-bench-s3-") as tmp:
        work = Path(tmp)
        ceph = start(work / "ceph")
        print(f"Ceph ready in {ceph.started_in:.1f} s, {ceph.rss_bytes() / 1e6:.0f} MB RSS")
        try:
            asyncio.run(run(ceph, args.size_mib * MIB, args.repeat, args.ranges, work))
        finally:
            ceph.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
