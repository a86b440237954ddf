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

1. ``GET /v1/evidence?case=<random case>``: ``--clients`` concurrent aiohttp clients (closed loop,
   ``--requests`` requests after a warm-up) as the case system → p50/p99; the same for the
   reviewer, and one client alone (the unloaded service time);
2. Range streaming of the stored object in ``--range-chunk-mib`` ranges by ``--range-clients``
   clients, ``--range-passes`` times over the object, against one thread reading the same file
   from the page cache (1 MiB ``readinto``) in the same run;
3. a ``--upload-mib`` dock upload (``PUT /v1/docks/dock-01/files/...`` with X-Content-SHA256,
   until the receipt) against hashlib SHA-256 of the same bytes in the same run;
4. peak RSS (VmHWM) of the service process.

For phases 1-3 the CPU time of the service process, of PostgreSQL's processes and of this
process (the clients) is printed too: on a small machine they share the cores.

With ``--explain``, the list query as the service builds it is shown with EXPLAIN ANALYZE
(custom and generic plan) on a random case.

Usage: python bench/api.py [--evidence 1000000] [--cases 100000] [--clients 64]
                           [--upload-mib 1024] [--dsn DSN] [--explain]
"""

# ruff: noqa: E402  (the script's folder must leave sys.path before `api` is imported:
# `python bench/api.py` would otherwise import this file as the `api` package)

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
import api.cli  # noqa: F401  (binds the real `api` package before this folder returns, last)

sys.path.append(str(_HERE))  # for apibench/

import argparse
import asyncio
import contextlib
import io
import os
import secrets
import shutil
import tempfile
import time

import asyncpg
from apibench.common import CS, DOCK_PRINCIPAL, MIB, REVIEWER
from apibench.load import list_load, page_cache_read, range_stream, upload
from apibench.seed import case_id, explain, seed, vacuum
from apibench.service import Cpu, memory, serve, wait_ready

from api.cmd_setup import cmd_init
from api.config import load
from vault.db import EmbeddedServer, with_database

# -- main ------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


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
            f"{args.clients} clients, upload {args.upload_mib} MiB, parts {args.parts}",
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
        with serve(data, env, args.parts) as (url, pid):
            await wait_ready(url)
            cpu = Cpu(pid)
            cs, rv = str(s[CS]), str(s[REVIEWER])
            await list_load(url, cs, all_cases, args.clients, min(2000, args.requests))  # warm-up
            cpu.start()
            lst = await list_load(url, cs, all_cases, args.clients, args.requests)
            print(f"  list, {args.clients} clients: {cpu.stop(args.requests, 'request')}")
            rev_cases: list[str] = s["reviewer_cases"]  # type: ignore[assignment]
            rev = await list_load(url, rv, rev_cases, args.clients, max(1, args.requests // 4))
            one = await list_load(url, cs, all_cases, 1, max(1, args.requests // 20))
            base_read = await asyncio.to_thread(page_cache_read, obj_path, args.range_passes)
            cpu.start()
            rng = await range_stream(
                url,
                cs,
                eid,
                size,
                args.range_chunk_mib * MIB,
                args.range_clients,
                args.range_passes,
                obj_path,
            )
            gib = args.range_passes * size / (1 << 30)
            print(f"  range streaming: {cpu.stop(gib, 'GiB')}")
            cpu.start()
            up = await upload(url, str(s[DOCK_PRINCIPAL]), args.upload_mib * MIB)
            print(f"  upload (with its baselines): {cpu.stop()}", flush=True)
            mem = memory(pid)
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
            f"{lst['rate']:,.0f} req/s, {lst['items']:.1f} items/page, {lst['errors']} errors",
            "p99 <= 25 ms",
            verdict(lst["p99"] <= 0.025 and not lst["errors"]),
        ),
        (
            f"  same, reviewer (need-to-know, {len(rev_cases)} cases)",
            f"p50 {rev['p50'] * ms:.1f} ms, p99 {rev['p99'] * ms:.1f} ms, "
            f"{rev['rate']:,.0f} req/s, {rev['errors']} errors",
            "p99 <= 25 ms",
            verdict(rev["p99"] <= 0.025 and not rev["errors"]),
        ),
        (
            "  same, 1 client (unloaded service time)",
            f"p50 {one['p50'] * ms:.1f} ms, p99 {one['p99'] * ms:.1f} ms",
            "(info)",
            "",
        ),
        (
            f"Range streaming, {args.range_clients} clients x {args.range_chunk_mib} MiB ranges",
            f"{rng['rate'] / MIB:,.0f} MiB/s vs page cache {base_read / MIB:,.0f} MiB/s = "
            f"{rng['rate'] / base_read:.0%} ({rng['errors']} errors)",
            ">= 70%",
            verdict(rng["rate"] >= 0.7 * base_read and not rng["errors"]),
        ),
        (
            f"dock upload, {args.upload_mib} MiB PUT to receipt",
            f"{up['rate'] / MIB:,.0f} MiB/s vs hashlib SHA-256 {up['hash_rate'] / MIB:,.0f} MiB/s"
            f" = {up['rate'] / up['hash_rate']:.0%}",
            ">= 60%",
            verdict(up["rate"] >= 0.6 * up["hash_rate"]),
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
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print()
    print(f"  {'measure':<{width}}  {'result':<{vwidth}}  {'target':<12}  verdict")
    for name, value, target, ok in rows:
        print(f"  {name:<{width}}  {value:<{vwidth}}  {target:<12}  {ok}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--evidence", type=int, default=1_000_000)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=20_000, help="list requests measured")
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
        "--dsn", help="use this server (a fresh database in it) instead of an embedded one"
    )
    args = ap.parse_args()
    if args.evidence < 1 or args.cases < 1 or args.clients < 1 or args.requests < 1:
        ap.error("--evidence, --cases, --clients and --requests must be at least 1")
    tmp = Path(tempfile.mkdtemp(prefix="evault-bench-api-"))
    try:
        asyncio.run(run(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
