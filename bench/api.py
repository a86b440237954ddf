"""HTTP API benchmark: list latency, Range streaming, dock upload and service memory.

Runs against a real ``evault serve`` (a subprocess on 127.0.0.1, a free port) on the embedded
PostgreSQL (pgserver) in a temporary directory, or on ``--dsn`` (a fresh database is created in
it and dropped afterwards). Set-up, not measured:

* a data directory made by ``evault init`` (default config, signing key);
* ``--cases`` cases and ``--evidence`` evidence rows, each with its ledger entry (``case``,
  ``acquired``, ``linked``/``unlinked``, with salted commitments and openings), appended through
  the ledger's group commit in bulk: each call's ``effect`` COPYs the rows of its entries
  (cases + label history + refs; evidence + offers; link history + refs). Every evidence item is
  linked to one case (~10 per case), 5% to a second one, and 1% of the first links are undone.
  No blobs: listing does not read content. Then VACUUM ANALYZE and a CHECKPOINT + sync, so
  the tables have statistics (steady state) and seeding's writes are not flushed meanwhile;
* principals (a ``case_system`` module, a reviewer assigned to 50 cases, a dock) and tokens;
* one ``--range-mib`` object stored through ``BlobStore.ingest_file`` and recorded as evidence.

Measured, in this order, with the service running ``--parts`` (default ``api,ingest``: an API
node; the media part would start a full scrub pass and the fsck over the seeded ledger):

1. ``GET /v1/evidence?case=<random case>``: first a correctness probe and warm-up through
   aiohttp (2,000 requests: status, JSON, items per page); then the measurement by ``wrk``
   (needed: ``make bench`` installs it) with ``--clients`` keep-alive connections, closed loop
   (each sends its next request when the previous answer is in; a Lua script picks a random
   case per request and sends the case system's token) for ``--seconds`` → p50/p99 and req/s
   from wrk's latency histogram; the same for the reviewer (its 50 cases), and one connection
   alone (the unloaded service time). The load generator is C in its own process, so it takes
   a few percent of a core instead of the one the service needs;
2. Range streaming of the stored object in ``--range-chunk-mib`` ranges by ``--range-clients``
   clients (threads, each a keep-alive connection reading with ``recv_into`` a 4 MiB buffer;
   one range is first checked against the file through aiohttp), ``--range-passes`` times over
   the object, against two baselines in the same run: one thread reading the same file from
   the page cache (1 MiB ``readinto``) and the transport floor,
   the same ranges from a bare ``os.sendfile`` loop (``apibench/floor.py``) to the same client
   over loopback: what moving the bytes through TCP on this machine costs at all (information:
   the target is against nginx, in ``bench/baselines.py``);
3. a ``--upload-mib`` dock upload (``PUT /v1/docks/dock-01/files/...`` with X-Content-SHA256,
   until the receipt) against hashlib SHA-256 of the same bytes in the same run, and against
   writing the same bytes to the data directory's filesystem and fsyncing (a durable upload
   cannot beat the disk); information: the targets are against a bare receiver and Ceph RGW,
   in ``bench/baselines.py``;
4. peak RSS (VmHWM) of the service process (the main one);
5. with ``--compare-workers`` (default ``1,2``): the case system's list load again (``wrk``,
   ``--seconds``) on a service started with each of those ``--workers`` counts, printed as
   req/s and as a ratio to the first: how the API worker processes scale on this machine.

The service runs ``--workers`` API processes (default: the number of cores).

It ends with ``target NAME: VALUE (GOAL) met|MISSED`` lines for the list latency and the peak
RSS.

For each phase the CPU time of the service process, of PostgreSQL's processes (its server's
own) and of the clients (this process and its children: threads, wrk) is printed too: on a
small machine they share the cores.

With ``--explain``, the list query as the service builds it is shown with EXPLAIN ANALYZE
(custom and generic plan) on a random case.

Usage: python bench/api.py [--evidence 1000000] [--cases 100000] [--clients 64]
                           [--seconds 20] [--upload-mib 1024] [--dsn DSN] [--explain]
                           [--workers N] [--compare-workers 1,2]
"""

# ruff: noqa: E402  (the script's folder must leave sys.path before `api` is imported:
# `python bench/api.py` would otherwise import this file as the `api` package)

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
# Bind the real packages before this folder returns (last) to sys.path: bench/verify.py would
# otherwise shadow `verify`, which the lazy CLI no longer imports at start-up.
import api.cli  # noqa: F401
import vault  # noqa: F401
import verify  # noqa: F401

sys.path.append(str(_HERE))  # for apibench/

import argparse
import asyncio
import contextlib
import functools
import io
import os
import secrets
import shutil
import tempfile
import time

import asyncpg
from apibench.common import CS, DOCK_PRINCIPAL, MIB, REVIEWER
from apibench.load import (
    list_load,
    page_cache_read,
    range_probe,
    range_stream,
    transport_floor,
    upload,
    wrk_list_load,
)
from apibench.seed import case_id, explain, seed, vacuum
from apibench.service import Cpu, memory, postmaster_pid, serve, wait_ready

from api.cmd_setup import cmd_init
from api.config import load
from vault.db import EmbeddedServer, with_database

# -- main ------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


async def run(args: argparse.Namespace, tmp: Path) -> None:
    server = None
    admin_dsn = dbname = None
    try:
        if args.dsn:
            admin_dsn, dbname = args.dsn, "evault_bench_" + secrets.token_hex(4)
            conn = await asyncpg.connect(admin_dsn)
            try:
                await conn.execute(f"CREATE DATABASE {dbname}")
            finally:
                await conn.close()
            dsn = with_database(admin_dsn, dbname)
        else:
            server = EmbeddedServer(tmp / "data" / "pg")
            dsn = await server.start()
        data = tmp / "data"
        with contextlib.redirect_stdout(io.StringIO()):
            cmd_init(argparse.Namespace(config=None, data=str(data)), None)
        env = {**os.environ, "EVAULT_DATABASE_DSN": dsn}
        cfg = load(None, str(data), environ=env)
        print(
            f"api bench: {args.evidence:,} evidence, {args.cases:,} cases, "
            f"{args.clients} clients, upload {args.upload_mib} MiB, parts {args.parts}, "
            f"{args.workers} workers",
            flush=True,
        )
        t = time.perf_counter()
        s = await seed(cfg, args, tmp)
        t_vacuum = await vacuum(dsn)
        print(
            f"  seeded in {time.perf_counter() - t:.0f} s (cases {s['t_cases']:.0f} s, "
            f"evidence {s['t_evidence']:.0f} s, {s['links']:,} link changes "
            f"{s['t_links']:.0f} s, {args.range_mib} MiB object {s['t_object']:.0f} s, "
            f"vacuum analyze + checkpoint {t_vacuum:.0f} s); ledger size {s['ledger_size']:,}",
            flush=True,
        )
        all_cases = [case_id(c) for c in range(args.cases)]
        if args.explain:
            await explain(cfg, dsn, all_cases[secrets.randbelow(args.cases)])
        eid, obj_path = s["object"]  # type: ignore[misc]
        size = args.range_mib * MIB
        postmaster = await postmaster_pid(dsn)
        with serve(data, env, args.parts, args.workers) as (url, pid):
            await wait_ready(url)
            cpu = Cpu(pid, postmaster)
            cs, rv = str(s[CS]), str(s[REVIEWER])
            # correctness and warm-up through aiohttp: status, JSON, items per page
            probe = await list_load(url, cs, all_cases, args.clients, 2000)
            if probe["errors"]:
                raise RuntimeError(f"list probe: {probe['errors']} errors")
            cpu.start()
            lst = await asyncio.to_thread(
                wrk_list_load, url, cs, all_cases, args.clients, args.seconds, tmp
            )
            print(f"  list, {args.clients} clients: {cpu.stop(lst['requests'], 'request')}")
            rev_cases: list[str] = s["reviewer_cases"]  # type: ignore[assignment]
            cpu.start()
            rev = await asyncio.to_thread(
                wrk_list_load, url, rv, rev_cases, args.clients, args.seconds / 2, tmp
            )
            print(f"  list, reviewer: {cpu.stop(rev['requests'], 'request')}")
            one = await asyncio.to_thread(
                wrk_list_load, url, cs, all_cases, 1, args.seconds / 4, tmp
            )
            base_read = await asyncio.to_thread(page_cache_read, obj_path, args.range_passes)
            await range_probe(url, cs, eid, size, obj_path)
            stream = functools.partial(
                range_stream,
                size=size,
                chunk=args.range_chunk_mib * MIB,
                clients=args.range_clients,
                passes=args.range_passes,
            )
            gib = args.range_passes * size / (1 << 30)
            with transport_floor(obj_path) as floor_url:
                cpu.start()
                floor = await asyncio.to_thread(stream, floor_url, None, "/")
                print(f"  transport floor (bare sendfile): {cpu.stop(gib, 'GiB')}")
            cpu.start()
            rng = await asyncio.to_thread(stream, url, cs, f"/v1/evidence/{eid}/content")
            print(f"  range streaming: {cpu.stop(gib, 'GiB')}")
            cpu.start()
            up = await upload(url, str(s[DOCK_PRINCIPAL]), args.upload_mib * MIB, data)
            print(f"  upload (with its baselines): {cpu.stop()}", flush=True)
            mem = memory(pid)
        scaling = []
        for count in args.compare_workers:
            with serve(data, env, args.parts, count) as (url, pid):
                await wait_ready(url)
                await list_load(url, cs, all_cases, args.clients, 500)  # warm-up
                cpu = Cpu(pid, postmaster)
                cpu.start()
                res = await asyncio.to_thread(
                    wrk_list_load, url, cs, all_cases, args.clients, args.seconds, tmp
                )
                print(f"  list, {count} workers: {cpu.stop(res['requests'], 'request')}")
                scaling.append((count, res))
    finally:
        if server is not None:
            await server.stop()
        if admin_dsn and dbname:
            conn = await asyncpg.connect(admin_dsn)
            try:
                await conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            finally:
                await conn.close()
    ms = 1000
    rows = [
        (
            f"list a case's evidence, {args.clients} clients (case system)",
            f"p50 {lst['p50'] * ms:.1f} ms, p99 {lst['p99'] * ms:.1f} ms, "
            f"{lst['rate']:,.0f} req/s, {probe['items']:.1f} items/page, {lst['errors']} errors",
            "p99 <= 25 ms",
            verdict(lst["p99"] <= 0.025 and not lst["errors"]),
        ),
        (
            f"  list, reviewer (need-to-know, {len(rev_cases)} cases)",
            f"p50 {rev['p50'] * ms:.1f} ms, p99 {rev['p99'] * ms:.1f} ms, "
            f"{rev['rate']:,.0f} req/s, {rev['errors']} errors",
            "p99 <= 25 ms",
            verdict(rev["p99"] <= 0.025 and not rev["errors"]),
        ),
        (
            "  same, 1 client (unloaded service time)",
            f"p50 {one['p50'] * ms:.1f} ms, p99 {one['p99'] * ms:.1f} ms, {one['rate']:,.0f} req/s",
            "(info)",
            "",
        ),
        (
            f"Range streaming, {args.range_clients} clients x {args.range_chunk_mib} MiB ranges",
            f"{rng['rate'] / MIB:,.0f} MiB/s vs page cache {base_read / MIB:,.0f} MiB/s = "
            f"{rng['rate'] / base_read:.0%} ({rng['errors']} errors)",
            "(info)",  # the target is against nginx: bench/baselines.py
            "",
        ),
        (
            "  vs the transport floor (bare sendfile, same client)",
            f"{rng['rate'] / MIB:,.0f} MiB/s vs {floor['rate'] / MIB:,.0f} MiB/s = "
            f"{rng['rate'] / floor['rate']:.0%}; the floor itself is "
            f"{floor['rate'] / base_read:.0%} of the page cache read",
            "(info)",
            "",
        ),
        (
            f"dock upload, {args.upload_mib} MiB PUT to receipt",
            f"{up['rate'] / MIB:,.0f} MiB/s vs hashlib SHA-256 {up['hash_rate'] / MIB:,.0f} MiB/s"
            f" = {up['rate'] / up['hash_rate']:.0%}",
            "(info)",  # the targets are against a bare receiver and RGW: bench/baselines.py
            "",
        ),
        (
            "  vs the disk's durable write (same bytes, write + fsync, same filesystem)",
            f"{up['rate'] / MIB:,.0f} MiB/s vs {up['disk_rate'] / MIB:,.0f} MiB/s = "
            f"{up['rate'] / up['disk_rate']:.0%}",
            "(info)",
            "",
        ),
        (
            "  of which after the last body byte (fsync, ledger, checkpoint)",
            f"{up['tail'] * 1000:,.0f} ms",
            "(info)",
            "",
        ),
        (
            "peak RSS of the service process (VmHWM)",
            f"{mem['VmHWM'] / 1024:,.0f} MB (now {mem['VmRSS'] / 1024:,.0f} MB)",
            "<= 300 MB",
            verdict(mem["VmHWM"] / 1024 <= 300),
        ),
    ]
    if scaling:
        base = scaling[0][1]["rate"] or 1.0
        rows.append(
            (
                "list throughput by --workers (case system, same run)",
                ", ".join(
                    f"{n}: {r['rate']:,.0f} req/s ({r['rate'] / base:.2f}x)" for n, r in scaling
                ),
                "(info)",
                "",
            )
        )
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print()
    print(f"  {'measure':<{width}}  {'result':<{vwidth}}  {'target':<12}  verdict")
    for name, value, target, ok in rows:
        print(f"  {name:<{width}}  {value:<{vwidth}}  {target:<12}  {ok}")
    print()
    for name, value, target, ok in rows:
        if ok:
            print(f"target {name.strip()}: {value} ({target}) {ok}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--evidence", type=int, default=1_000_000)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=20, help="list load duration (reviewer: half)")
    ap.add_argument("--upload-mib", type=int, default=1024)
    ap.add_argument("--range-mib", type=int, default=1024, help="size of the streamed object")
    ap.add_argument("--range-chunk-mib", type=int, default=8)
    ap.add_argument("--range-clients", type=int, default=4)
    ap.add_argument("--range-passes", type=int, default=4)
    ap.add_argument(
        "--parts", default="api,ingest", help="evault serve --only (default api,ingest)"
    )
    ap.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the list query")
    ap.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="evault serve --workers (default: the number of cores)",
    )
    ap.add_argument(
        "--compare-workers",
        type=lambda s: [int(n) for n in s.split(",") if n],
        default=[1, 2],
        help="also measure list throughput with these --workers counts (empty: skip)",
    )
    ap.add_argument(
        "--dsn", help="use this server (a fresh database in it) instead of an embedded one"
    )
    args = ap.parse_args()
    if args.evidence < 1 or args.cases < 1 or args.clients < 1 or args.seconds < 1:
        ap.error("--evidence, --cases, --clients and --seconds must be at least 1")
    if shutil.which("wrk") is None:
        sys.exit(
            "bench/api.py needs wrk, the HTTP load generator (`make bench` installs it; or"
            " apt-get install wrk): the list load must not run in this Python process"
        )
    tmp = Path(tempfile.mkdtemp(prefix="evault-bench-api-"))
    try:
        asyncio.run(run(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
