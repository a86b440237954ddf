"""Two logs witnessing each other over real HTTP on loopback, each on its own PostgreSQL
database: the C2SP tlog-witness protocol as the witness answers it, the client that collects
cosignatures, a fork refused with the alarm on both sides, a witness state rolled back in the
database refused, and a witness that is down delaying nothing else."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from prometheus_client import REGISTRY

from tests.anchors.witness_fixtures import Log, anchors, open_log, serving_witness
from vault.anchors.cosigners import Cosigners, cosignatures_of, request_body
from vault.ledger.tiles import consistency_proof
from verify.checkpoint import Checkpoint, format_checkpoint, parse_checkpoint
from verify.cosignature import signature_lines, verify_cosignature
from verify.note import Signer, parse_note, sign_note


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def pair(pg_admin_dsn: str, tmp_path: Path) -> AsyncIterator[tuple[Log, Log]]:
    """Logs a and b; b's witness witnesses a and a's witnesses b, both served."""
    async with (
        open_log(pg_admin_dsn, tmp_path / "a", "a") as a,
        open_log(pg_admin_dsn, tmp_path / "b", "b") as b,
        serving_witness(a, b.ledger.verifier),
        serving_witness(b, a.ledger.verifier),
    ):
        yield a, b


async def post(url: str, body: bytes) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as s, s.post(url + "/add-checkpoint", data=body) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


async def wait_until(what: str, probe: object, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not await probe():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def latest_note(log: Log) -> str:
    cp = await log.ledger.latest()
    assert cp is not None
    return cp.note


async def test_two_logs_witness_each_other_within_a_second(pair: tuple[Log, Log]) -> None:
    a, b = pair
    await a.grow()
    await b.grow()
    clients = [
        Cosigners(a.ledger.pool, anchors(b.peer())),
        Cosigners(b.ledger.pool, anchors(a.peer())),
    ]
    for c in clients:
        c.start()
    try:
        for i in range(30):
            await (a if i % 2 else b).grow(1 + i % 3)
            await asyncio.sleep(0.03)
        for log in (a, b):
            size = (await log.ledger.latest()).size  # type: ignore[union-attr]

            async def cosigned(log: Log = log, size: int = size) -> bool:
                return bool(await cosignatures_of(log.ledger.pool, size))

            await wait_until(f"{log.name}'s latest checkpoint cosigned", cosigned)
    finally:
        for c in clients:
            await c.stop()
    delays: list[float] = []
    for log, witness in ((a, b), (b, a)):
        rows = await log.ledger.pool.fetch(
            "SELECT c.size, c.created_at AS cosigned, k.created_at AS signed, c.line, k.note"
            " FROM ledger_cosignatures c JOIN LATERAL (SELECT created_at, note FROM"
            " ledger_checkpoints k WHERE k.size = c.size ORDER BY id LIMIT 1) k ON true"
            " ORDER BY c.size"
        )
        checkpoints = await log.ledger.pool.fetchval(
            "SELECT count(DISTINCT size) FROM ledger_checkpoints"
        )
        assert len(rows) >= checkpoints - 1  # every checkpoint after the first one submitted
        for r in rows:
            body = parse_note(r["note"]).text
            (sig,) = signature_lines(body, r["line"])
            verify_cosignature(sig, body, witness.cosigner.key)
            delays.append((r["cosigned"] - r["signed"]).total_seconds())
    delays.sort()
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    print(
        f"cosignature delay over {len(delays)}: median {statistics.median(delays):.3f} s, p99 {p99:.3f} s"
    )
    assert p99 < 1.0, delays


async def test_protocol_answers_of_the_witness(pair: tuple[Log, Log]) -> None:
    a, b = pair  # b witnesses a
    n = await a.grow(3)
    note = await latest_note(a)
    status, _, text = await post(b.url, request_body(0, [], note))
    assert status == 200 and text.startswith("\u2014 b.test/witness ")
    # old size not the one last cosigned: 409 with that size, as text/x.tlog.size
    m = await a.grow(2)
    status, ctype, text = await post(b.url, request_body(0, [], await latest_note(a)))
    assert (status, ctype.split(";")[0], text) == (409, "text/x.tlog.size", f"{n}\n")
    # a consistency proof that does not verify
    async with a.ledger.pool.acquire() as conn:
        proof = await consistency_proof(conn, n, m)
    bad = [bytes(32), *proof[1:]]
    assert (await post(b.url, request_body(n, bad, await latest_note(a))))[0] == 422
    # old size above the checkpoint's
    assert (await post(b.url, request_body(m + 1, [], await latest_note(a))))[0] == 400
    # a log it does not witness; a checkpoint of a's origin signed by another key
    await b.grow()
    assert (await post(b.url, request_body(0, [], await latest_note(b))))[0] == 404
    impostor = Signer.generate(a.origin)
    body = parse_note(await latest_note(a)).text
    assert (await post(b.url, request_body(n, proof, sign_note(body, impostor))))[0] == 403
    # garbage
    assert (await post(b.url, b"old x\n\nnothing"))[0] == 400
    # the right proof: cosigned
    status, _, text = await post(b.url, request_body(n, proof, await latest_note(a)))
    assert status == 200
    (sig,) = signature_lines(body, text)
    verify_cosignature(sig, body, b.cosigner.key)


async def test_forked_checkpoint_is_refused_by_the_witness_and_alarms(
    pair: tuple[Log, Log], pg_admin_dsn: str, tmp_path: Path
) -> None:
    a, b = pair  # b witnesses a
    client = Cosigners(a.ledger.pool, anchors(b.peer()))
    client.start()
    try:
        size = await a.grow(4)

        async def cosigned() -> bool:
            return bool(await cosignatures_of(a.ledger.pool, size))

        await wait_until("a's checkpoint cosigned", cosigned)
    finally:
        await client.stop()
    # the log key signs a fork by hand: same size, another root
    cp = parse_checkpoint(parse_note(await latest_note(a)).text)
    fork = sign_note(format_checkpoint(Checkpoint(cp.origin, cp.size, bytes(32))), a.ledger.signer)
    before = sample("evault_witness_refusals_total", origin=a.origin, reason="fork")
    status, _, text = await post(b.url, request_body(size, [], fork))
    assert (status, text) == (409, f"{size}\n")
    assert sample("evault_witness_refusals_total", origin=a.origin, reason="fork") == before + 1
    kept = await b.ledger.pool.fetchrow("SELECT reason, request FROM witness_refusals")
    assert kept is not None and kept["reason"] == "fork" and fork in kept["request"]

    # a forked copy of the log (same key, other entries, same size) submitted by its own
    # client: the witness refuses it, and the client raises the alarm
    async with open_log(pg_admin_dsn, tmp_path / "fork", "a", signer=a.ledger.signer) as forked:
        assert await forked.grow(size) == size
        client = Cosigners(forked.ledger.pool, anchors(b.peer(name="b-seen-by-fork")))
        before = sample(
            "evault_anchor_witness_refusals_total", witness="b-seen-by-fork", reason="fork"
        )
        client.start()
        try:

            async def alarmed() -> bool:
                got = sample(
                    "evault_anchor_witness_refusals_total", witness="b-seen-by-fork", reason="fork"
                )
                return got > before

            await wait_until("the fork alarm", alarmed)
        finally:
            await client.stop()
        assert await cosignatures_of(forked.ledger.pool, size) == []


async def test_witness_state_rolled_back_in_the_database_is_refused(pair: tuple[Log, Log]) -> None:
    a, b = pair  # b witnesses a
    n = await a.grow(2)
    assert (await post(b.url, request_body(0, [], await latest_note(a))))[0] == 200
    m = await a.grow(2)
    async with a.ledger.pool.acquire() as conn:
        proof = await consistency_proof(conn, n, m)
    assert (await post(b.url, request_body(n, proof, await latest_note(a))))[0] == 200
    # an insider deletes the newest state row (triggers disabled by a superuser) to make the
    # witness accept size n again, where a fork could follow
    insider = await asyncpg.connect(b.dsn)
    await insider.execute(
        "ALTER TABLE witness_cosigned DISABLE TRIGGER witness_cosigned_append_only"
    )
    await insider.execute("DELETE FROM witness_cosigned WHERE size = $1", m)
    before = sample("evault_witness_state_failures_total")
    status, _, text = await post(b.url, request_body(n, proof, await latest_note(a)))
    assert status == 503 and "rolled back" in text
    assert sample("evault_witness_state_failures_total") == before + 1
    # a row edited to say another size or root no longer carries the witness's cosignature
    await insider.execute("UPDATE witness_cosigned SET size = $1 WHERE size = $2", m, n)
    await insider.close()
    status, _, text = await post(b.url, request_body(m, [], await latest_note(a)))
    assert status == 503 and "not this witness's" in text


async def test_a_witness_that_is_down_delays_nothing_else(pair: tuple[Log, Log]) -> None:
    a, b = pair
    dead = b.peer(name="dead", url=f"http://127.0.0.1:{free_port()}")
    dead = type(dead)(name="dead", url=dead.url, vkey=a.cosigner.key.vkey)  # another key
    client = Cosigners(a.ledger.pool, anchors(b.peer(), dead))
    client.start()
    try:
        t = time.monotonic()
        for _ in range(5):
            size = await a.grow()
        assert time.monotonic() - t < 5.0  # appends and checkpoints never wait for witnesses

        async def cosigned() -> bool:
            return bool(await cosignatures_of(a.ledger.pool, size))

        await wait_until("the live witness's cosignature", cosigned, limit=5.0)
        await asyncio.sleep(0.3)
        assert (
            sample("evault_anchor_witness_failures_total", witness="dead", reason="unavailable") > 0
        )
        assert sample("evault_anchor_witness_lag_seconds", witness="dead") > 0
        assert sample("evault_anchor_witness_lag_seconds", witness="b") == 0
    finally:
        await client.stop()


async def test_client_reproves_from_the_size_a_409_names(pair: tuple[Log, Log]) -> None:
    a, b = pair  # b witnesses a; it cosigned size n before a's client stored anything
    n = await a.grow(3)
    assert (await post(b.url, request_body(0, [], await latest_note(a))))[0] == 200
    assert await b.ledger.pool.fetchval("SELECT max(size) FROM witness_cosigned") == n
    m = await a.grow(4)
    client = Cosigners(a.ledger.pool, anchors(b.peer()))
    client.start()  # submits m with old 0, learns n from the 409, proves n -> m
    try:

        async def cosigned() -> bool:
            return bool(await cosignatures_of(a.ledger.pool, m))

        await wait_until("the cosignature after the 409", cosigned, limit=10.0)
    finally:
        await client.stop()
    assert await b.ledger.pool.fetchval("SELECT max(size) FROM witness_cosigned") == m
    assert sample("evault_anchor_witness_refusals_total", witness="b", reason="fork") == 0
