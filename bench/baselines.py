"""The service against what a user would otherwise deploy, in one run, on the same bytes.

Set-up as ``bench/api.py`` (its ``apibench`` modules): a real ``evault serve`` subprocess on
127.0.0.1 over the embedded PostgreSQL (pgserver) or a fresh database in ``--dsn``, seeded with
``--cases`` cases and ``--evidence`` evidence rows with their ledger entries, a ``--range-mib``
plain object and a ``--range-mib`` confidential object stored sealed (AES-256-GCM chunks, as
re-encryption stores it). Then three comparisons, each against its peer started by this script:

1. **Range streaming vs nginx.** nginx from Debian's packages (``make nginx`` installs it;
   ``sendfile on``, one worker per core, a temporary config on a free loopback port) serves the
   plain object file itself (a symlink into the blob store) and a plaintext copy of the sealed
   object (nginx cannot decrypt; it sends the same bytes the client gets). The same client
   (``apibench.load.range_stream``: ``--range-clients`` threads, each a keep-alive connection,
   the same ``--range-chunk-mib`` ranges, ``--range-passes`` times over the object) asks nginx
   and the service, alternately, for each object. CPU per GiB of each server. For the sealed
   object, the floor measured in the same run (``apibench.decrypt``): ``cryptography``'s
   AES-256-GCM decryption of that very object, chunk by chunk as stored, in one thread, from
   memory (GiB/s, CPU-s per GiB). The service must decrypt and send, so its CPU per GiB is at
   least nginx's plus the decryption's: ``range sealed floor`` is the ratio that bound allows
   (nginx's CPU per GiB over the sum), against the sealed goal. The ``accessed`` entries the
   service wrote during its runs are counted (one per playback session is intended).
2. **Evidence list vs the same SQL alone.** The service under ``wrk`` (``--clients``
   connections, a random case per request, the case system's token) against pgbench (the
   pgserver wheel's, else the system's) running the very statement the service sends
   (``vault.access.listing.list_query`` for the same principal, the same page size), a random
   case per transaction, ``-M prepared`` (a prepared statement per connection, as asyncpg
   does), the same number of connections, as the service's database role, on the same
   server. Throughput, p50/p99, and CPU per request: the service process + PostgreSQL against
   PostgreSQL alone (the clients, wrk and pgbench, are shown apart).
3. **Dock upload vs a bare receiver.** The same ``--upload-mib`` PUT (the same bytes, the same
   aiohttp client) to the service's dock endpoint until the receipt, and to
   ``apibench/receiver.py``: a plain socket server that reads the request head, receives the
   body, hashes it with SHA-256 and writes it with O_DIRECT (plain writes where refused), then
   fsync, into the same data directory. hashlib SHA-256 over the same bytes is printed as the
   limit of any upload that hashes. With ``--rgw`` (the default; skipped, and said so, where
   Ceph is not installed: ``make ceph``), the same PUT also goes to the radosgw of the tests'
   single-node Ceph (``tests/storage/ceph_fixture.py``), presigned, as the object store a
   bureau would otherwise upload to. Each round uses new bytes (the vault dedups content).

Every comparison ends in ``target NAME: VALUE (GOAL) met|MISSED`` lines.

Usage: python bench/baselines.py [--evidence 100000] [--cases 10000] [--clients 64]
           [--seconds 15] [--range-mib 256] [--upload-mib 1024] [--dsn DSN]
"""

# ruff: noqa: E402  (the script's folder must leave sys.path before `api` is imported)

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
import api.cli  # noqa: F401
import vault  # noqa: F401
import verify  # noqa: F401

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
from collections.abc import Callable
from typing import Any

import asyncpg
from apibench.common import CS, DOCK_PRINCIPAL, MIB
from apibench.decrypt import decrypt_floor, sealed_object
from apibench.load import (
    dock_target,
    list_load,
    put,
    range_probe,
    range_stream,
    sha256_rate,
    upload_block,
    wrk_list_load,
)
from apibench.peers import (
    bare_receiver,
    nginx,
    nginx_binary,
    pgbench_binary,
    pgbench_defines,
    pgbench_script,
    process_tree,
    reaped_cpu,
    rgw,
    run_pgbench,
    tree_cpu,
)
from apibench.seed import case_id, seed, store_sealed_object, vacuum
from apibench.service import Cpu, postmaster_pid, serve, wait_ready

from api.cmd_setup import cmd_init
from api.config import Config, load
from api.runtime import open_runtime
from vault.access import principals
from vault.access.listing import EvidenceQuery, list_query
from vault.db import EmbeddedServer, with_database

GIB = 1 << 30


def target(name: str, value: str, goal: str, ok: bool) -> str:
    return f"target {name}: {value} ({goal}) {'met' if ok else 'MISSED'}"


class Meter:
    """CPU seconds of named groups of processes (and of this process with its waited-for
    children: the clients) between ``start`` and ``stop``."""

    def __init__(self, groups: dict[str, Callable[[], float]]) -> None:
        self.groups = groups
        self._t0: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        me = os.times()
        out = {name: f() for name, f in self.groups.items()}
        out["clients"] = me.user + me.system + me.children_user + me.children_system
        out["wall"] = time.perf_counter()
        return out

    def start(self) -> None:
        self._t0 = self._now()

    def stop(self) -> dict[str, float]:
        now = self._now()
        return {k: now[k] - self._t0[k] for k in now}


# -- 1. Range streaming vs nginx -------------------------------------------------------------


async def ranges_vs_nginx(
    args: argparse.Namespace,
    cfg: Config,
    dsn: str,
    url: str,
    pid: int,
    token: str,
    objects: dict[str, tuple[str, str]],
    tmp: Path,
) -> list[str]:
    size = args.range_mib * MIB
    gib = args.range_passes * size / GIB
    stream = _stream(args, size)
    lines: list[str] = []
    dek, sealed_path = await sealed_object(cfg, objects["sealed"][1])
    accessed = await _accessed(dsn)
    files = {f"{kind}.mp4": path for kind, (_eid, path) in objects.items()}
    with nginx(files, tmp) as (nginx_url, master):
        meter = Meter(
            {
                "service": lambda: tree_cpu([pid]),
                "nginx": lambda: tree_cpu(process_tree(master)),
            }
        )
        for kind, (eid, path) in objects.items():
            await range_probe(url, token, eid, size, path)
            runs: dict[str, list[dict[str, float]]] = {"nginx": [], "service": []}
            for _ in range(args.rounds):  # alternately, so background load hits both alike
                for side, base, tok, where in (
                    ("nginx", nginx_url, None, f"/{kind}.mp4"),
                    ("service", url, token, f"/v1/evidence/{eid}/content"),
                ):
                    meter.start()
                    got = await asyncio.to_thread(stream, base, tok, where)
                    cpu = meter.stop()
                    if got["errors"]:
                        raise RuntimeError(f"{side}, {kind} object: {got['errors']} bad ranges")
                    runs[side].append({**got, **cpu})
            best = {side: max(r, key=lambda x: x["rate"]) for side, r in runs.items()}
            n, s = best["nginx"], best["service"]
            ratio = s["rate"] / n["rate"]
            floor = None
            if kind == "sealed":  # in the same run, after the streams: the same bytes again
                floor = await asyncio.to_thread(
                    decrypt_floor, dek, Path(sealed_path), args.range_passes
                )
            print(
                f"  Range, {kind} object, {args.range_clients} clients x {args.range_chunk_mib} "
                f"MiB ranges: service {s['rate'] / MIB:,.0f} MiB/s, nginx "
                f"{n['rate'] / MIB:,.0f} MiB/s = {ratio:.0%}; CPU per GiB: service "
                f"{s['service'] / gib:.2f} s, nginx {n['nginx'] / gib:.2f} s (client "
                f"{s['clients'] / gib:.2f} / {n['clients'] / gib:.2f} s)",
                flush=True,
            )
            goal = 0.7 if kind == "plain" else 0.5
            lines.append(
                target(f"range {kind} vs nginx", f"{ratio:.0%}", f">= {goal:.0%}", ratio >= goal)
            )
            if floor is not None:
                nginx_cpu = n["nginx"] / gib
                bound = nginx_cpu / (nginx_cpu + floor["cpu"])
                print(
                    f"    decryption floor (AES-256-GCM, cryptography, 1 thread, the same "
                    f"object and chunks): {floor['rate'] / GIB:.2f} GiB/s, {floor['cpu']:.3f} "
                    f"CPU-s per GiB; decrypt + nginx's send {nginx_cpu + floor['cpu']:.2f} "
                    f"CPU-s per GiB against the service's {s['service'] / gib:.2f}: at most "
                    f"{bound:.0%} of nginx's rate for the same CPU (measured {ratio:.0%})",
                    flush=True,
                )
                lines.append(
                    target(
                        "range sealed floor (decrypt + send) vs nginx",
                        f"{bound:.0%}",
                        f">= the goal {goal:.0%}",
                        bound >= goal,
                    )
                )
    entries = await _accessed(dsn) - accessed
    per_object = args.rounds * args.range_passes * -(-size // (args.range_chunk_mib * MIB))
    print(
        f"  accessed entries written by the Range runs: {entries} for {len(objects)} objects "
        f"streamed by one principal, {per_object:,} requests each (one playback session per "
        "object is intended)",
        flush=True,
    )
    return lines


async def _accessed(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n = await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 'accessed'")
    finally:
        await conn.close()
    return int(n)


def _stream(args: argparse.Namespace, size: int) -> Callable[[str, str | None, str], Any]:
    def run(base: str, token: str | None, where: str) -> dict[str, float]:
        return range_stream(
            base,
            token,
            where,
            size=size,
            chunk=args.range_chunk_mib * MIB,
            clients=args.range_clients,
            passes=args.range_passes,
        )

    return run


# -- 2. Evidence list vs pgbench -------------------------------------------------------------


async def list_vs_pgbench(
    args: argparse.Namespace, cfg: Config, dsn: str, url: str, pid: int, token: str, tmp: Path
) -> list[str]:
    cases = [case_id(c) for c in range(args.cases)]
    probe = await list_load(url, token, cases, args.clients, 2000)  # correctness, warm-up
    if probe["errors"]:
        raise RuntimeError(f"list probe: {probe['errors']} errors")
    async with open_runtime(cfg) as rt:  # verifies the principal's row, as the service does
        who = await principals.load(rt.db.pool, CS)
    sql, values = list_query(who, EvidenceQuery(case_id=cases[0]))
    case_at = values.index(cases[0])
    script = pgbench_script(sql, values, case_at, len(cases[0]) - len("BENCH-"), args.cases)
    defines = pgbench_defines(values, case_at)
    rows = await statement_rows(cfg, dsn, sql, values, case_at, cases)
    postmaster = await postmaster_pid(dsn)
    pg = Cpu(pid, postmaster)

    def postgres() -> float:
        # live processes, plus what the postmaster's exited children spent (pgbench's backends
        # end with its connections, before the meter stops)
        return pg.postgres() + (reaped_cpu(postmaster) if postmaster else 0.0)

    meter = Meter({"service": lambda: tree_cpu([pid]), "postgres": postgres})
    svc: list[dict[str, float]] = []
    bare: list[dict[str, float]] = []
    for _ in range(args.rounds):  # alternately
        meter.start()
        got = await asyncio.to_thread(
            wrk_list_load, url, token, cases, args.clients, args.seconds, tmp
        )
        svc.append({**got, **meter.stop()})
        meter.start()
        got = await asyncio.to_thread(
            run_pgbench,
            dsn,
            cfg.database.app_role,
            script,
            defines,
            args.clients,
            args.seconds,
            tmp,
        )
        bare.append({**got, **meter.stop()})
    s = max(svc, key=lambda x: x["rate"])
    b = max(bare, key=lambda x: x["rate"])
    ms = 1000

    def per(r: dict[str, float], key: str) -> float:
        return r[key] * ms / max(1, r["requests"])

    print(
        f"  list, {args.clients} clients, {probe['items']:.1f} items/page ({rows:.1f} rows per "
        f"statement, limit + 1): service "
        f"{s['rate']:,.0f} req/s p50 {s['p50'] * ms:.1f} ms p99 {s['p99'] * ms:.1f} ms "
        f"({s['errors']} errors); pgbench {b['rate']:,.0f} tx/s p50 {b['p50'] * ms:.1f} ms "
        f"p99 {b['p99'] * ms:.1f} ms ({b['errors']} failed)\n"
        f"    CPU per request: service {per(s, 'service'):.2f} + postgres "
        f"{per(s, 'postgres'):.2f} ms (wrk {per(s, 'clients'):.2f} ms); pgbench side: "
        f"postgres {per(b, 'postgres'):.2f} ms (pgbench {per(b, 'clients'):.2f} ms)",
        flush=True,
    )
    ratio, p99x = s["rate"] / b["rate"], s["p99"] / b["p99"]
    ok = not s["errors"] and not b["errors"]
    return [
        target("list throughput vs pgbench", f"{ratio:.0%}", ">= 60%", ok and ratio >= 0.6),
        target("list p99 vs pgbench", f"{p99x:.2f}x", "<= 2x", ok and p99x <= 2),
    ]


async def statement_rows(
    cfg: Config, dsn: str, sql: str, values: list[object], case_at: int, cases: list[str]
) -> float:
    """Rows the list statement returns on average for 50 random cases, run with the values
    pgbench is given (as the service's role): the pgbench side is checked to do real work."""
    conn = await asyncpg.connect(dsn, server_settings={"role": cfg.database.app_role})
    try:
        total = 0
        for _ in range(50):
            v = list(values)
            v[case_at] = secrets.choice(cases)
            total += len(await conn.fetch(sql, *v))
    finally:
        await conn.close()
    return total / 50


# -- 3. Dock upload vs a bare receiver -------------------------------------------------------


async def upload_vs_bare(
    args: argparse.Namespace, url: str, pid: int, token: str, folder: Path, tmp: Path
) -> list[str]:
    size = args.upload_mib * MIB
    runs: dict[str, list[dict[str, float]]] = {"service": [], "bare": [], "rgw": []}
    hash_rate = 0.0
    with contextlib.ExitStack() as stack:
        bare_url, bare_pid = stack.enter_context(bare_receiver(folder))
        presign, ceph_pids = None, []
        rgw_error = "skipped (--no-rgw)"
        if args.rgw:
            try:
                presign, ceph_pids = stack.enter_context(rgw(tmp / "ceph"))
            except Exception as exc:  # the comparison is optional: say why it is missing
                rgw_error = f"Ceph did not start: {exc}"[:300]
        meter = Meter(
            {
                "service": lambda: tree_cpu([pid]),
                "bare": lambda: tree_cpu([bare_pid]),
                "rgw": lambda: tree_cpu(ceph_pids),
            }
        )
        for _ in range(args.rounds):  # alternately; new bytes each round (the vault dedups)
            block = upload_block()
            digest, rate = sha256_rate(size, block)
            hash_rate = max(hash_rate, rate)
            sides: list[tuple[str, str, str, dict[str, str], int]] = [
                ("bare", bare_url, "/upload", {"X-Content-SHA256": digest}, 201),
                (
                    "service",
                    url,
                    dock_target(),
                    {"Authorization": f"Bearer {token}", "X-Content-SHA256": digest},
                    201,
                ),
            ]
            if presign is not None:
                sides.append(("rgw", "", presign(), {}, 200))
            for side, base, where, headers, expect in sides:
                meter.start()
                got = await put(base, where, headers, size, block, expect)
                runs[side].append({**got, **meter.stop()})
    best = {side: max(r, key=lambda x: x["rate"]) for side, r in runs.items() if r}
    s, b = best["service"], best["bare"]
    gib = size / GIB
    ratio = s["rate"] / b["rate"]
    print(
        f"  upload, {args.upload_mib} MiB PUT to the answer: service {s['rate'] / MIB:,.0f} "
        f"MiB/s (after the last byte {s['tail'] * 1000:,.0f} ms), bare receiver "
        f"{b['rate'] / MIB:,.0f} MiB/s (after the last byte {b['tail'] * 1000:,.0f} ms, "
        f"{b['o_direct']:.0%} of the bytes written with O_DIRECT); "
        f"hashlib SHA-256 alone {hash_rate / MIB:,.0f} MiB/s (service {s['rate'] / hash_rate:.0%}"
        f" of it, the bare receiver {b['rate'] / hash_rate:.0%})\n    CPU per GiB: service "
        f"{s['service'] / gib:.2f} s, bare receiver {b['bare'] / gib:.2f} s (client "
        f"{s['clients'] / gib:.2f} / {b['clients'] / gib:.2f} s)",
        flush=True,
    )
    lines = [target("upload vs bare receiver", f"{ratio:.0%}", ">= 80%", ratio >= 0.8)]
    if "rgw" in best:
        r = best["rgw"]
        print(
            f"  the same PUT to Ceph RGW (presigned, single-node cluster of the tests): "
            f"{r['rate'] / MIB:,.0f} MiB/s, Ceph's daemons {r['rgw'] / gib:.2f} CPU-s per GiB",
            flush=True,
        )
        x = s["rate"] / r["rate"]
        lines.append(target("upload vs Ceph RGW PUT", f"{x:.2f}x", ">= 2x", x >= 2))
    else:
        print(f"  Ceph RGW: {rgw_error}", flush=True)
    return lines


# -- main ------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, tmp: Path) -> list[str]:
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
            f"baselines bench: {args.evidence:,} evidence, {args.cases:,} cases, "
            f"{args.clients} clients, {args.range_mib} MiB objects, upload "
            f"{args.upload_mib} MiB, {args.rounds} round(s) each, {os.cpu_count()} cores",
            flush=True,
        )
        t = time.perf_counter()
        s = await seed(cfg, args, tmp)
        sealed = await store_sealed_object(cfg, tmp, args.range_mib * MIB)
        await vacuum(dsn)
        print(f"  seeded in {time.perf_counter() - t:.0f} s", flush=True)
        plain: tuple[str, str] = s["object"]  # type: ignore[assignment]
        objects = {"plain": plain, "sealed": sealed}
        lines: list[str] = []
        with serve(data, env, args.parts) as (url, pid):
            await wait_ready(url)
            token = str(s[CS])
            if "range" in args.only:
                lines += await ranges_vs_nginx(args, cfg, dsn, url, pid, token, objects, tmp)
            if "list" in args.only:
                lines += await list_vs_pgbench(args, cfg, dsn, url, pid, token, tmp)
            if "upload" in args.only:
                lines += await upload_vs_bare(args, url, pid, str(s[DOCK_PRINCIPAL]), data, tmp)
        return lines
    finally:
        if server is not None:
            await server.stop()
        if admin_dsn and dbname:
            conn = await asyncpg.connect(admin_dsn)
            try:
                await conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            finally:
                await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--evidence", type=int, default=100_000)
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=15, help="each list load's duration")
    ap.add_argument("--range-mib", type=int, default=256, help="size of each streamed object")
    ap.add_argument("--range-chunk-mib", type=int, default=8)
    ap.add_argument("--range-clients", type=int, default=4)
    ap.add_argument("--range-passes", type=int, default=4)
    ap.add_argument("--upload-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2, help="alternating runs per side (best kept)")
    ap.add_argument("--only", default="range,list,upload", help="comparisons to run")
    ap.add_argument(
        "--rgw",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also PUT to the tests' single-node Ceph RGW (skipped, said so, without Ceph)",
    )
    ap.add_argument("--parts", default="api,ingest", help="evault serve --only")
    ap.add_argument(
        "--dsn", help="use this server (a fresh database in it) instead of an embedded one"
    )
    args = ap.parse_args()
    missing = [
        tool
        for tool, found in (
            ("wrk", shutil.which("wrk")),
            ("nginx", nginx_binary()),
            ("pgbench", pgbench_binary()),
        )
        if not found
    ]
    if missing:
        sys.exit(f"bench/baselines.py needs {', '.join(missing)} (`make bench` installs them)")
    tmp = Path(tempfile.mkdtemp(prefix="evault-bench-baselines-"))
    try:
        lines = asyncio.run(run(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
