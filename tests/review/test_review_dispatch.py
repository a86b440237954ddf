"""Event delivery against a real HTTP receiver on 127.0.0.1: down, up, failing, concurrent."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client import REGISTRY

from tests.review.review_fixtures import open_vault
from vault.config_events import EventsConfig, SubscriberConfig
from vault.dispatch import Dispatcher, delivery_history
from vault.events import emit

FAST = EventsConfig(
    max_attempts=1000,
    backoff_seconds=0.02,
    backoff_cap_seconds=0.1,
    timeout_seconds=2.0,
    poll_seconds=0.02,
)
SECRETS = {"legal": b"legal-secret", "public": b"publicity-secret"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Receiver:
    """Records every POST; answers ``status_for(body)`` (200 unless told otherwise)."""

    port: int
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_events: set[int] = field(default_factory=set)
    delay: float = 0.0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        if json.loads(body)["event_id"] in self.fail_events:
            return web.Response(status=500)
        self.got.append(({**request.headers, "path": request.path}, body))
        return web.Response(status=204)

    def bodies(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(b) for h, b in self.got if h["path"] == f"/{name}"]


@asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[None]:
    app = web.Application()
    app.router.add_post("/{name}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    try:
        yield
    finally:
        await runner.cleanup()


def subscribers(receiver: Receiver) -> list[SubscriberConfig]:
    return [
        SubscriberConfig(id="legal", url=receiver.url("legal"), secret="x"),
        SubscriberConfig(
            id="public", url=receiver.url("public"), secret="x", events=("evidence.linked",)
        ),
    ]


async def emit_some(pool: asyncpg.Pool[Any], n: int, start: int = 0) -> list[int]:
    ids = []
    for i in range(start, start + n):
        kind = "evidence.linked" if i % 2 else "evidence.acquired"
        ids.append(await emit(pool, kind, {"evidence_id": f"e{i}", "n": i}))
    return ids


async def until(pool: asyncpg.Pool[Any], sql: str, want: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (value := await pool.fetchval(sql)) != want:
        assert time.monotonic() < deadline, f"{sql}: {value!r}, want {want!r}"
        await asyncio.sleep(0.02)


def check_signatures(receiver: Receiver) -> None:
    for headers, body in receiver.got:
        name = headers["path"].strip("/")
        stamp = headers["X-Evault-Timestamp"]
        mac = hmac.new(SECRETS[name], stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Evault-Signature"], f"sha256={mac}")
        assert abs(int(stamp) - time.time()) < 60
        doc = json.loads(body)
        assert headers["X-Evault-Event"] == doc["type"]
        assert headers["X-Evault-Delivery"] == str(doc["delivery_id"])


async def test_a_receiver_that_is_down_loses_nothing(pg_dsn: str, tmp_path: Path) -> None:
    receiver = Receiver(free_port())
    async with open_vault(pg_dsn, tmp_path) as (_, db):
        pool = db.pool
        early = await emit_some(pool, 6)
        dispatcher = Dispatcher(pool, subscribers(receiver), SECRETS, FAST)
        dispatcher.start()
        try:
            # down: the head of each subscriber is retried, nothing behind it is attempted
            await until(pool, "SELECT min(attempts) >= 3 FROM event_deliveries d WHERE event_id"
                        " = (SELECT min(event_id) FROM event_deliveries WHERE subscriber = d.subscriber)", True)  # fmt: skip
            row = await pool.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'pending') AS pending,"
                " count(*) FILTER (WHERE attempts > 0) AS tried FROM event_deliveries"
            )
            assert row["pending"] == 6 + 3 and row["tried"] == 2
            async with serving(receiver):
                late = await emit_some(pool, 4, start=6)
                await until(
                    pool, "SELECT count(*) FROM event_deliveries WHERE status = 'delivered'", 10 + 5
                )
        finally:
            await dispatcher.stop()
        assert [b["event_id"] for b in receiver.bodies("legal")] == early + late
        odd = [e for i, e in enumerate(early + late) if i % 2]
        assert [b["event_id"] for b in receiver.bodies("public")] == odd
        assert {b["type"] for b in receiver.bodies("public")} == {"evidence.linked"}
        assert receiver.bodies("legal")[1]["data"] == {"evidence_id": "e1", "n": 1}
        check_signatures(receiver)
        history = await delivery_history(pool, subscriber="legal", limit=3)
        assert [h["event_id"] for h in history] == (early + late)[::-1][:3]
        first = (await delivery_history(pool, subscriber="legal", before=history[-1]["id"]))[-1]
        assert first["attempts"] >= 3 and first["status"] == "delivered"
        assert first["last_status"] == 204 and first["delivered_at"] is not None
        assert "payload" not in first and "data" not in first


async def test_failed_after_max_attempts_then_the_next_proceeds(
    pg_dsn: str, tmp_path: Path
) -> None:
    receiver = Receiver(free_port())
    cfg = EventsConfig(max_attempts=3, backoff_seconds=0.01, backoff_cap_seconds=0.01)
    subs = [SubscriberConfig(id="legal", url=receiver.url("legal"), secret="x")]
    before = (
        REGISTRY.get_sample_value("evault_event_deliveries_failed_total", {"subscriber": "legal"})
        or 0.0
    )
    async with open_vault(pg_dsn, tmp_path) as (_, db), serving(receiver):
        pool = db.pool
        ids = await emit_some(pool, 3)
        receiver.fail_events = {ids[0]}
        dispatcher = Dispatcher(pool, subs, SECRETS, cfg)
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                await dispatcher.run_once(session)
                if (
                    await pool.fetchval(
                        "SELECT count(*) FROM event_deliveries WHERE status <> 'pending'"
                    )
                    == 3
                ):
                    break
                await asyncio.sleep(0.01)
        rows = await pool.fetch(
            "SELECT event_id, status, attempts, last_status, last_error FROM event_deliveries ORDER BY event_id"
        )
        assert [(r["status"], r["attempts"]) for r in rows] == [
            ("failed", 3),
            ("delivered", 1),
            ("delivered", 1),
        ]
        assert rows[0]["last_status"] == 500 and rows[0]["last_error"] == "HTTP 500"
        assert [b["event_id"] for b in receiver.bodies("legal")] == ids[1:]
    after = REGISTRY.get_sample_value(
        "evault_event_deliveries_failed_total", {"subscriber": "legal"}
    )
    assert after == before + 1
    assert (
        REGISTRY.get_sample_value("evault_event_deliveries_pending", {"subscriber": "legal"}) == 0
    )


async def test_concurrent_dispatchers_deliver_each_once_in_order(
    pg_dsn: str, tmp_path: Path
) -> None:
    receiver = Receiver(free_port(), delay=0.005)
    async with open_vault(pg_dsn, tmp_path) as (_, db), serving(receiver):
        pool = db.pool
        ids = await emit_some(pool, 40)
        dispatchers = [Dispatcher(pool, subscribers(receiver), SECRETS, FAST) for _ in range(3)]
        for d in dispatchers:
            d.start()
        try:
            more = await emit_some(pool, 10, start=40)
            await until(
                pool, "SELECT count(*) FROM event_deliveries WHERE status = 'delivered'", 50 + 25
            )
        finally:
            for d in dispatchers:
                await d.stop()
        assert [b["event_id"] for b in receiver.bodies("legal")] == ids + more
        assert len(receiver.bodies("public")) == 25
        check_signatures(receiver)


async def test_an_event_committed_late_is_still_delivered(pg_dsn: str, tmp_path: Path) -> None:
    receiver = Receiver(free_port())
    subs = [SubscriberConfig(id="legal", url=receiver.url("legal"), secret="x")]
    async with open_vault(pg_dsn, tmp_path) as (_, db), serving(receiver):
        pool = db.pool
        dispatcher = Dispatcher(pool, subs, SECRETS, FAST)
        async with pool.acquire() as slow, aiohttp.ClientSession() as session:
            tx = slow.transaction()
            await tx.start()
            late = await emit(slow, "evidence.acquired", {"n": "late"})  # lower id, not committed
            (early,) = await emit_some(pool, 1)
            assert late < early
            while await dispatcher.run_once(session):
                pass
            await tx.commit()
            while await dispatcher.run_once(session):
                pass
        assert [b["event_id"] for b in receiver.bodies("legal")] == [early, late]
