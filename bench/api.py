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

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg

from api.cmd_setup import cmd_init
from api.config import Config, load
from api.runtime import open_runtime
from vault import principals, tokens
from vault.access import Role
from vault.blobstore import BlobStore
from vault.db import Conn, EmbeddedServer, with_database
from vault.labels import Caveat, Label, Level
from vault.ledger import Ledger, Opening, PreparedEntry
from vault.ledger.entry import ENTRY_VERSION, rfc3339
from vault.visibility import _COLUMNS, Args, EvidenceQuery, _where
from verify.canonical import COMMITMENT_DOMAIN, check_opening, parse_canonical

MIB = 1 << 20
CHUNK = 20_000  # entries per ledger append while seeding
DOCK = "dock-01"
CS, REVIEWER, DOCK_PRINCIPAL = "bench-case-system", "bench-reviewer", "bench-dock"
INTERNAL = Label(Level.INTERNAL)
PRIVATE = Label(Level.INTERNAL, frozenset({Caveat.PERSONAL_PRIVACY}))
CONFIDENTIAL = Label(Level.CONFIDENTIAL)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


# -- seeding ---------------------------------------------------------------------------------


def _canon(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry(kind: str, when: str, fields: dict[str, object], sealed: dict[str, str]) -> PreparedEntry:
    """``make_entry`` for the plain values seeded here (ASCII strings), without its generic
    validation (several times faster); ``check_entry`` proves the output canonical and the
    openings valid."""
    commits, openings = {}, []
    for name in sorted(sealed):
        value, salt = _canon(sealed[name]), secrets.token_bytes(32)
        h = hashlib.sha256(COMMITMENT_DOMAIN + name.encode() + b"\x00" + salt + value)
        commits[name] = h.hexdigest()
        openings.append(Opening(name, salt, value))
    body = {"v": ENTRY_VERSION, "kind": kind, "time": when, **fields, "commitments": commits}
    return PreparedEntry(kind, _canon(body), tuple(openings))


def check_entry(e: PreparedEntry) -> None:
    body = parse_canonical(e.data)
    for o in e.openings:
        check_opening(o.field, json.loads(o.value), o.salt, body["commitments"][o.field])


def evidence_of(seed: bytes, i: int, n_cases: int) -> tuple[uuid.UUID, str, list[int], bool]:
    """Evidence ``i``: id, SHA-256, linked cases (1, or 2 for 5%), first link undone (1%)."""
    d = hashlib.sha256(seed + i.to_bytes(8, "big")).digest()
    cases = [int.from_bytes(d[16:20], "big") % n_cases]
    second = int.from_bytes(d[21:25], "big") % n_cases
    if d[20] < 13 and second != cases[0]:
        cases.append(second)
    return uuid.UUID(bytes=d[:16], version=4), d.hex(), cases, d[25] < 3


def case_id(c: int) -> str:
    return f"BENCH-{c:07d}"


def case_label(c: int) -> Label:
    return CONFIDENTIAL if c % 20 == 7 else INTERNAL


Copies = list[tuple[str, list[str], list[tuple]]]
Chunk = tuple[list[PreparedEntry], Copies]


async def append_bulk(ledger: Ledger, entries: list[PreparedEntry], copies: Copies) -> None:
    """Append ``entries`` in one call; its effect COPYs ``copies`` (table, columns, rows whose
    first element is an offset into the entries, replaced by the ledger index)."""

    async def effect(conn: Conn, indexes: list[int]) -> None:
        for table, columns, rows in copies:
            records = [(indexes[r[0]], *r[1:]) for r in rows]
            await conn.copy_records_to_table(table, records=records, columns=columns)

    check_entry(entries[0])
    check_entry(entries[-1])
    await ledger.append(entries, effect=effect)


async def pump(ledger: Ledger, chunks: Iterator[Chunk]) -> int:
    """Append every chunk, building the next one (in a thread) while one is committed."""
    done = 0
    pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
    while (chunk := await pending) is not None:
        pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
        await append_bulk(ledger, *chunk)
        done += len(chunk[0])
    return done


CASE_COLUMNS = [
    "ledger_idx",
    "id",
    "title",
    "label_level",
    "label_caveats",
    "created_at",
    "updated_at",
]
LABEL_COLUMNS = [
    "ledger_idx",
    "target_kind",
    "target_id",
    "label_level",
    "label_caveats",
    "principal_id",
    "at",
]
REF_COLUMNS = ["ledger_idx", "ref_kind", "ref_id"]


def case_chunks(n: int, base: datetime) -> Iterator[Chunk]:
    """``case`` entries (as ``vault.cases.create`` writes them) with their rows."""
    for start in range(0, n, CHUNK):
        entries, cases, labels, refs = [], [], [], []
        for k, c in enumerate(range(start, min(n, start + CHUNK))):
            cid, lab, title = case_id(c), case_label(c), f"Bench case {c}"
            when = base + timedelta(seconds=c)
            caveats = [v.value for v in lab.sorted_caveats]
            entries.append(
                entry(
                    "case",
                    rfc3339(when),
                    {"op": "created", "label": lab.to_json()},
                    {"case": cid, "title": title, "by": CS},
                )
            )
            cases.append((k, cid, title, int(lab.level), caveats, when, when))
            labels.append((k, "case", cid, int(lab.level), caveats, CS, when))
            refs.append((k, "case", cid))
        yield (
            entries,
            [
                ("cases", CASE_COLUMNS, cases),
                ("label_history", LABEL_COLUMNS, labels),
                ("ledger_refs", REF_COLUMNS, refs),
            ],
        )


EVIDENCE_COLUMNS = [
    "ledger_idx",
    "id",
    "sha256",
    "size",
    "dock_id",
    "device_id",
    "officer_id",
    "recorded_at",
    "file_name",
    "extension",
    "metadata",
    "acquired_at",
    "label_level",
    "label_caveats",
    "media_status",
]
OFFER_COLUMNS = ["ledger_idx", "evidence_id", "dock_id", "source_name", "reoffer", "offered_at"]
HISTORY_COLUMNS = ["ledger_idx", "case_id", "evidence_id", "action", "principal_id", "at"]


def acquisition(
    k: int, eid: uuid.UUID, sha: str, size: int, i: int, when: datetime, label: Label
) -> tuple[PreparedEntry, tuple, tuple]:
    """The ``acquired`` entry (as ``ingest.record`` writes it), evidence row and offer row."""
    device, officer = f"DSJ-{i % 5000:05d}", f"OFF{i % 3000:05d}"
    recorded = when - timedelta(minutes=30)
    name = f"{device}_{officer}_{recorded:%Y%m%d%H%M%S}.mp4"
    e = entry(
        "acquired",
        rfc3339(when),
        {"evidence_id": str(eid), "sha256": sha, "size": size, "label": str(label)},
        {
            "file_name": name,
            "dock_id": DOCK,
            "device_id": device,
            "officer_id": officer,
            "recorded_at": recorded.isoformat(),
        },
    )
    caveats = [c.value for c in label.sorted_caveats]
    meta = json.dumps({"via": "bench", "source_path": name})
    row = (k, eid, sha, size, DOCK, device, officer, recorded, name, "mp4", meta, when)
    row += (int(label.level), caveats, "ready")
    return e, row, (k, eid, DOCK, name, False, when)


def evidence_chunks(
    seed: bytes, n: int, n_cases: int, base: datetime, span: timedelta
) -> Iterator[Chunk]:
    step = span / max(n, 1)
    for start in range(0, n, CHUNK):
        entries, rows, offers = [], [], []
        for k, i in enumerate(range(start, min(n, start + CHUNK))):
            eid, sha, _, _ = evidence_of(seed, i, n_cases)
            label = PRIVATE if i % 20 == 3 else INTERNAL
            size = 50 * MIB + (i % 997) * 4096
            e, row, offer = acquisition(k, eid, sha, size, i, base + step * i, label)
            entries.append(e)
            rows.append(row)
            offers.append(offer)
        yield (
            entries,
            [("evidence", EVIDENCE_COLUMNS, rows), ("evidence_offers", OFFER_COLUMNS, offers)],
        )


Link = tuple[int, str, uuid.UUID, str, datetime]


def link_chunks(
    seed: bytes, n: int, n_cases: int, base: datetime, span: timedelta
) -> Iterator[Chunk]:
    """Link every evidence item to its cases (``linked``, as ``vault.cases.link`` writes it),
    then undo 1% of the first links (``unlinked``)."""
    step = span / max(n, 1)
    pending: list[Link] = []
    undo: list[Link] = []
    for i in range(n):
        eid, sha, cases, unlink = evidence_of(seed, i, n_cases)
        when = base + step * i + timedelta(hours=1)
        pending.extend((c, "linked", eid, sha, when) for c in cases)
        if unlink:
            undo.append((cases[0], "unlinked", eid, sha, when + timedelta(days=1)))
        if len(pending) >= CHUNK or i == n - 1:
            yield _link_chunk(pending)
            pending = []
    for start in range(0, len(undo), CHUNK):
        yield _link_chunk(undo[start : start + CHUNK])


def _link_chunk(links: list[Link]) -> Chunk:
    entries, history, refs = [], [], []
    for k, (c, action, eid, sha, when) in enumerate(links):
        cid = case_id(c)
        fields: dict[str, object] = {"evidence_id": str(eid), "sha256": sha}
        entries.append(entry(action, rfc3339(when), fields, {"case": cid, "by": CS}))
        history.append((k, cid, eid, action, CS, when))
        refs.extend([(k, "case", cid), (k, "evidence", str(eid))])
    return entries, [
        ("case_evidence_history", HISTORY_COLUMNS, history),
        ("ledger_refs", REF_COLUMNS, refs),
    ]


def write_random_file(path: Path, size: int) -> None:
    block = os.urandom(16 * MIB)
    with path.open("wb") as f:
        written = 0
        while written < size:
            n = min(len(block), size - written)
            # vary each block so the file does not repeat (cheap: a counter in front)
            f.write(written.to_bytes(8, "big") + block[8:n])
            written += n


async def store_object(cfg: Config, ledger: Ledger, tmp: Path, size: int) -> tuple[str, str]:
    """A ``size``-byte object in the blob store, recorded as evidence; (evidence id, path)."""
    source = tmp / "range-source.mp4"
    await asyncio.to_thread(write_random_file, source, size)
    store = BlobStore(cfg.path(cfg.store.root))
    fd = os.open(source, os.O_RDONLY)
    try:
        blob = await asyncio.to_thread(store.ingest_file, fd)
    finally:
        os.close(fd)
    source.unlink()
    eid = uuid.uuid4()
    e, row, offer = acquisition(0, eid, blob.sha256, blob.size, 1, datetime.now(UTC), INTERNAL)
    await append_bulk(
        ledger,
        [e],
        [("evidence", EVIDENCE_COLUMNS, [row]), ("evidence_offers", OFFER_COLUMNS, [offer])],
    )
    return str(eid), str(blob.path)


async def seed(cfg: Config, args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """Everything the measurements need; returns tokens, the object and timings."""
    out: dict[str, object] = {}
    seed_bytes = secrets.token_bytes(16)
    now = datetime.now(UTC).replace(microsecond=0)
    span = timedelta(days=730)
    base = now - span - timedelta(days=1)
    async with open_runtime(cfg) as rt:
        db, ledger = rt.db.pool, rt.ledger
        admin = await principals.load(db, "admin")
        people = {
            CS: principals.PrincipalSpec(CS, frozenset({Role.CASE_SYSTEM}), Level.CONFIDENTIAL),
            REVIEWER: principals.PrincipalSpec(
                REVIEWER, frozenset({Role.REVIEWER}), Level.INTERNAL
            ),
            DOCK_PRINCIPAL: principals.PrincipalSpec(
                DOCK_PRINCIPAL, frozenset({Role.DOCK}), Level.INTERNAL, dock_ids=frozenset({DOCK})
            ),
        }
        for spec in people.values():
            await principals.add(db, ledger, admin, spec)
        for pid in people:
            issued = await tokens.create(db, ledger, admin, pid, timedelta(days=1), comment="bench")
            out[pid] = issued.token
        t = time.perf_counter()
        await pump(ledger, case_chunks(args.cases, base - timedelta(days=30)))
        out["t_cases"] = time.perf_counter() - t
        t = time.perf_counter()
        await pump(ledger, evidence_chunks(seed_bytes, args.evidence, args.cases, base, span))
        out["t_evidence"] = time.perf_counter() - t
        t = time.perf_counter()
        links = link_chunks(seed_bytes, args.evidence, args.cases, base, span)
        out["links"] = await pump(ledger, links)
        out["t_links"] = time.perf_counter() - t
        assigned = sorted({secrets.randbelow(args.cases) for _ in range(50)})
        for c in assigned:
            await principals.assign(db, ledger, admin, REVIEWER, case_id(c))
        out["reviewer_cases"] = [case_id(c) for c in assigned]
        t = time.perf_counter()
        out["object"] = await store_object(cfg, ledger, tmp, args.range_mib * MIB)
        out["t_object"] = time.perf_counter() - t
        out["ledger_size"] = await ledger.size()
        await ledger.checkpoint()
    return out


async def vacuum(dsn: str) -> float:
    t = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        for table in (
            "ledger_entries",
            "ledger_openings",
            "ledger_refs",
            "cases",
            "label_history",
            "evidence",
            "evidence_offers",
            "case_evidence_history",
            "principals",
            "principal_cases",
            "tokens",
        ):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        # let the seeding's writes reach the disk now, not during the measurements
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    await asyncio.to_thread(os.sync)
    return time.perf_counter() - t


async def explain(cfg: Config, dsn: str, case: str) -> None:
    """EXPLAIN ANALYZE of the list query exactly as ``visibility.list_evidence`` builds it, for
    the case system, with the planner's custom and generic plans (asyncpg prepares statements;
    PostgreSQL may switch to the generic plan after five executions)."""
    conn = await asyncpg.connect(dsn, server_settings={"role": cfg.database.app_role})
    try:
        who = await principals.load(conn, CS)
        args = Args()
        where = _where(who, EvidenceQuery(case_id=case), args)
        sql = (
            f"SELECT {_COLUMNS} FROM evidence e WHERE {where}"
            f" ORDER BY e.acquired_at, e.id LIMIT {args(101)}"
        )
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            stmt = await conn.prepare(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            rows = await stmt.fetch(*args.values)
            print(f"\n-- list query, case {case}, {mode}:")
            for r in rows:
                print("   " + r[0])
    finally:
        await conn.close()


# -- the service -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(data: Path, env: dict[str, str], parts: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    log = (data / "serve.log").open("w")
    command = [sys.executable, "-m", "api.cli", "--data", str(data), "serve"]
    proc = subprocess.Popen(
        [*command, "--listen", f"127.0.0.1:{port}", "--only", parts],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=_HERE.parent,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError("evault serve exited: " + (data / "serve.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("evault serve not listening in 120 s")
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def memory(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS of ``pid`` in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(stat: str) -> float:
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


class Cpu:
    """CPU seconds spent by the service process, by PostgreSQL's processes and by this
    process (the clients) between ``start`` and ``stop``: where a phase's time goes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._t0: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def _now(self) -> tuple[float, float, float, float]:
        service = _cpu_of(Path(f"/proc/{self.pid}/stat").read_text())
        pg = 0.0
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError, ValueError):
                    stat = (proc / "stat").read_text()
                    if stat[stat.index("(") + 1 : stat.rindex(")")] == "postgres":
                        pg += _cpu_of(stat)
        me = os.times()
        return time.perf_counter(), service, pg, me.user + me.system

    def start(self) -> None:
        self._t0 = self._now()

    def stop(self, per: float = 1.0, unit: str = "") -> str:
        now = self._now()
        wall, service, pg, client = (b - a for a, b in zip(self._t0, now, strict=True))
        scale = 1000 / per if unit else 1.0
        sfx = f" ms/{unit}" if unit else " s"
        return (
            f"cpu: service {service * scale:.2f}{sfx}, postgres {pg * scale:.2f}{sfx}, "
            f"clients {client * scale:.2f}{sfx} ({wall:.1f} s wall, 2 cores = "
            f"{2 * wall * scale:.2f}{sfx})"
        )


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(600):
            with contextlib.suppress(aiohttp.ClientError):
                async with s.get(url + "/readyz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError("service not ready")


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
