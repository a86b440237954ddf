"""Ledger throughput, checkpoint latency, proof latency and memory, against a COPY baseline.

Runs on the embedded PostgreSQL (pgserver) in a temporary directory:

1. baseline: a plain COPY of the same rows into an unindexed table, in 4,096-row chunks;
   each phase starts on a quiet server: the phase before has dropped its database (so no
   autovacuum of it runs on) and a CHECKPOINT has flushed its writes, so none pays for another's
   background work;
2. the ledger: N appenders (coroutines, as in the service) each appending one entry at a time
   until the total is reached, with checkpoints signed in the background; then the same with
   4,096 entries per call, built before the clock starts as the baseline's rows are, and, as a
   service's long-lived objects would be, frozen out of the cyclic garbage collector
   (``gc.freeze``): otherwise every full collection during the run walks the bench's own
   million prebuilt entries, which no service holds;
3. time from each append call to the first checkpoint that includes it (p50/p99);
4. inclusion-proof latency from the tiles at the final size (p50/p99);
5. peak RSS of this process (the service side; PostgreSQL's own processes are not counted)
   over the one-entry-per-call run; for the bulk run, its peak above the RSS it starts with
   (which holds the bench's million prebuilt entries), where Linux lets the peak be reset.

The bulk run and the baseline take seconds each: both are repeated (``--repeat``, in turn)
and their medians compared.

Usage: python bench/ledger.py [--entries 1000000] [--appenders 64] [--repeat 3] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Run as ``python bench/ledger.py``, Python puts bench/ first on sys.path, where bench/verify.py
# would shadow the verify package: look the packages up from the project root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import asyncpg  # noqa: E402

from vault.config import DatabaseConfig, LedgerConfig  # noqa: E402
from vault.db import EmbeddedServer, open_database, with_database  # noqa: E402
from vault.keys.hostmac import HostMac  # noqa: E402
from vault.ledger import Ledger, PreparedEntry, make_entry  # noqa: E402
from vault.ledger.tiles import inclusion_proof  # noqa: E402
from verify.note import Signer  # noqa: E402

TEST_MAC = HostMac(bytes([7]) * 32)  # the test suite's host secret (every process)

ORIGIN = "bench.evidence-vault.local/ledger"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


TIME = make_entry("note").data.split(b'"time":"')[1][:24].decode()


def payload(i: int) -> bytes:
    """A canonical note entry, encoded directly (as the baseline's rows are pre-built)."""
    return b'{"kind":"note","n":%d,"text":"bench entry %09d","time":"%s","v":1}' % (
        i,
        i,
        TIME.encode(),
    )


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (-1 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def _reset_peak_rss() -> int:
    """Reset this process's peak RSS to its current RSS (Linux: ``clear_refs`` 5); return the
    current RSS in KiB, or -1 where the peak cannot be reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return -1
    return _status_kib("VmRSS")


async def baseline_copy(dsn: str, n: int) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_copy")
        await conn.execute("CREATE UNLOGGED TABLE bench_copy (idx bigint, kind text, data bytea)")
        await conn.execute("ALTER TABLE bench_copy SET LOGGED")
        rows = [(i, "note", payload(i)) for i in range(n)]
        await conn.execute("CHECKPOINT")  # as before each ledger run
        t0 = time.perf_counter()
        for start in range(0, n, 4096):
            await conn.copy_records_to_table(
                "bench_copy", records=rows[start : start + 4096], columns=["idx", "kind", "data"]
            )
        elapsed = time.perf_counter() - t0
        await conn.execute("DROP TABLE bench_copy")
        return n / elapsed
    finally:
        await conn.close()


async def run_ledger(
    dsn: str, tmp: Path, n: int, appenders: int, per_call: int
) -> dict[str, float]:
    cfg = LedgerConfig(origin=ORIGIN, checkpoint_interval=0.25)
    tmp.mkdir(parents=True, exist_ok=True)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS bench_{tmp.name}")
        await conn.execute(f"CREATE DATABASE bench_{tmp.name}")
        await conn.execute("CHECKPOINT")  # the phase before is not flushed during this one
    finally:
        await conn.close()
    bench_dsn = with_database(dsn, f"bench_{tmp.name}")
    async with open_database(DatabaseConfig(dsn=bench_dsn, pool_size=8), tmp) as db:
        ledger = Ledger(
            db.pool, Signer.generate(ORIGIN), cfg, tmp / "checkpoints.log", mac=TEST_MAC
        )
        signed: list[tuple[float, int]] = []
        original = ledger.checkpointer.checkpoint

        async def recording_checkpoint():  # type: ignore[no-untyped-def]
            cp = await original()
            signed.append((time.perf_counter(), cp.size))
            return cp

        ledger.checkpointer.checkpoint = recording_checkpoint  # type: ignore[method-assign]
        ledger.start()
        if per_call > 1:
            # As the baseline's rows, the bulk run's entries are built before the clock starts.
            built = [
                [PreparedEntry("note", payload(i)) for i in range(first, min(n, first + per_call))]
                for first in range(0, n, per_call)
            ]
            batches = iter(built)
            gc.freeze()  # long-lived: see the module docstring
        else:
            batches = ([PreparedEntry("note", payload(i))] for i in range(n))
        starts: dict[int, float] = {}

        async def appender() -> None:
            for batch in batches:
                t = time.perf_counter()
                indexes = await ledger.append(batch)
                if indexes[0] % 50 == 0 or per_call > 1:
                    starts[indexes[-1]] = t

        rss_before = _reset_peak_rss()
        t0 = time.perf_counter()
        await asyncio.gather(*(appender() for _ in range(appenders)))
        elapsed = time.perf_counter() - t0
        rss_growth = _status_kib("VmHWM") - rss_before if rss_before >= 0 else -1
        final = await ledger.checkpointer.wait_for(n, limit=60)
        await ledger.close()
        latencies = []
        for idx, t in starts.items():
            done = next(ts for ts, size in signed if size > idx)
            latencies.append(done - t)
        proof_times = []
        rng = random.Random(7)
        async with db.pool.acquire() as conn:
            for _ in range(2000):
                i = rng.randrange(final.size)
                t = time.perf_counter()
                await inclusion_proof(conn, i, final.size)
                proof_times.append(time.perf_counter() - t)
    if per_call > 1:
        gc.unfreeze()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP DATABASE bench_{tmp.name}")  # no background work left behind
    finally:
        await conn.close()
    return {
        "rate": n / elapsed,
        "elapsed": elapsed,
        "cp_p50": pct(latencies, 50),
        "cp_p99": pct(latencies, 99),
        "proof_p50": pct(proof_times, 50),
        "proof_p99": pct(proof_times, 99),
        "checkpoints": float(len(signed)),
        "rss_growth_mb": rss_growth / 1024 if rss_growth >= 0 else -1.0,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--appenders", type=int, default=64)
    ap.add_argument("--dsn", help="use this server instead of an embedded one")
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs of the bulk phase and of the baseline"
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="evault-bench-"))
    server = None
    try:
        if args.dsn:
            dsn = args.dsn
        else:
            server = EmbeddedServer(tmp / "pg")
            dsn = await server.start()
        print(f"ledger bench: {args.entries:,} entries, {args.appenders} appenders", flush=True)
        r = await run_ledger(dsn, tmp / "single", args.entries, args.appenders, 1)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        # The bulk run and the baseline are short (seconds): each is run --repeat times, in
        # turn, and the medians compared, so one noisy second on a shared machine does not
        # decide the ratio.
        bulks: list[dict[str, float]] = []
        copies: list[float] = []
        for rep in range(args.repeat):
            bulks.append(
                await run_ledger(dsn, tmp / f"bulk{rep}", args.entries, args.appenders, 4096)
            )
            copies.append(await baseline_copy(dsn, args.entries))
        bulk = sorted(bulks, key=lambda b: b["rate"])[len(bulks) // 2]
        copy_rate = sorted(copies)[len(copies) // 2]
        print(
            f"  baseline COPY into an unindexed table: {copy_rate:,.0f} rows/s (median of "
            + ", ".join(f"{c:,.0f}" for c in copies)
            + ")",
            flush=True,
        )
        print(f"  ledger, 1 entry per call: {r['rate']:,.0f} entries/s over {r['elapsed']:.1f} s")
        print(
            f"  ledger, 4096 per call:    {bulk['rate']:,.0f} entries/s over "
            f"{bulk['elapsed']:.1f} s (median of "
            + ", ".join(f"{b['rate']:,.0f}" for b in bulks)
            + ")"
        )
        print(
            f"  ratio to COPY: {r['rate'] / copy_rate:.2f} (1 per call), "
            f"{bulk['rate'] / copy_rate:.2f} (4096 per call)  (target >= 0.40)"
        )
        print(
            f"  append -> covering checkpoint: p50 {r['cp_p50'] * 1000:.0f} ms, "
            f"p99 {r['cp_p99'] * 1000:.0f} ms  (target p99 <= 1000 ms; "
            f"{int(r['checkpoints'])} checkpoints)"
        )
        print(
            f"  inclusion proof at {args.entries:,}: p50 {r['proof_p50'] * 1000:.2f} ms, "
            f"p99 {r['proof_p99'] * 1000:.2f} ms  (target p99 <= 5 ms)"
        )
        print(f"  peak RSS of the service process: {rss_mb:.0f} MB  (target <= 300 MB)")
        growth = bulk["rss_growth_mb"]
        print(
            f"  bulk run: checkpoint p99 {bulk['cp_p99'] * 1000:.0f} ms, "
            f"proof p99 {bulk['proof_p99'] * 1000:.2f} ms, peak RSS "
            + (f"{growth:.0f} MB above its start" if growth >= 0 else "growth not measurable")
        )
        print(f"  target >= 10,000 entries/s: {'met' if r['rate'] >= 10_000 else 'NOT met'}")
    finally:
        if server is not None:
            await server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
