"""The time-stamper (vault.anchors.timestamps) on real PostgreSQL against OpenSSL's TSA on loopback.

Every signed checkpoint gets a verified token; a TSA that is down or hangs delays nothing else
and its tokens catch up; a token that does not verify is never stored; the table is
append-only for the app role and the superuser, and a token moved by a superuser no longer
verifies for the checkpoint it is served with.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import REGISTRY

from tests.anchors.tsa_fixtures import OpenSslTsa, Pki, make_pki, needs_openssl
from tests.vault_fixtures import open_vault
from vault.anchors.config import AnchorsConfig
from vault.anchors.timestamps import Timestamper, anchored_checkpoint, timestamp_of
from vault.ledger import Ledger, make_entry
from verify.errors import VerificationError
from verify.timestamp import ImprintMismatch, load_tsa_certs, verify_timestamp

pytestmark = needs_openssl


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tsa(pki: Pki) -> Iterator[OpenSslTsa]:
    t = OpenSslTsa(pki)
    yield t
    t.close()


@pytest.fixture
async def vault(pg_dsn: str, tmp_path: Path) -> AsyncIterator[Ledger]:
    async with open_vault(pg_dsn, tmp_path) as (ledger, _db):
        yield ledger


def config(tsa: OpenSslTsa, **kw: float) -> AnchorsConfig:
    base: dict[str, float] = {"tsa_retry_seconds": 0.05, "tsa_retry_max_seconds": 0.2}
    return AnchorsConfig(tsa_url=tsa.url, tsa_ca_file="ca.pem", tsa_timeout=0.5, **(base | kw))


async def grow(ledger: Ledger, n: int = 1) -> float:
    """Append ``n`` entries, wait for a checkpoint covering them; seconds it took."""
    t = time.perf_counter()
    await ledger.append([make_entry("accessed", {"n": i}) for i in range(n)], wait_checkpoint=True)
    return time.perf_counter() - t


async def sizes(ledger: Ledger) -> tuple[list[int], list[int]]:
    """(checkpoint sizes, sizes with a time-stamp)."""
    cps = [
        r["size"]
        for r in await ledger.pool.fetch("SELECT size FROM ledger_checkpoints ORDER BY id")
    ]
    ts = [
        r["size"]
        for r in await ledger.pool.fetch("SELECT size FROM ledger_timestamps ORDER BY size")
    ]
    return cps, ts


async def wait_stamped(ledger: Ledger, want: int, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        cps, ts = await sizes(ledger)
        if set(cps[want:]) <= set(ts) and ts:
            return
        assert time.monotonic() < deadline, f"not stamped in time: checkpoints {cps}, stamped {ts}"
        await asyncio.sleep(0.05)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_each_signed_checkpoint_gets_a_verified_token(
    vault: Ledger, tsa: OpenSslTsa, pki: Pki
) -> None:
    cas = load_tsa_certs(pki.ca_file.read_bytes())
    stamper = Timestamper(vault.pool, config(tsa), cas, poll=0.05)
    await grow(vault, 1)
    stamper.start()  # on a ledger with checkpoints: from its latest one on
    try:
        await wait_stamped(vault, 0)
        for n in (2, 3):
            await grow(vault, n)
        await wait_stamped(vault, 0)
    finally:
        await stamper.stop()
    cps, ts = await sizes(vault)
    assert cps == ts == [1, 3, 6]
    for size in ts:
        note = await vault.pool.fetchval(
            "SELECT note FROM ledger_checkpoints WHERE size = $1", size
        )
        token = await timestamp_of(vault.pool, size)
        assert token is not None
        verify_timestamp(token, note, cas)
    stamped = await anchored_checkpoint(vault.pool, 2)
    assert stamped is not None and stamped.checkpoint.size == 6
    assert sample("evault_anchor_timestamp_lag_seconds") == 0.0


async def test_tsa_down_delays_nothing_else_and_tokens_catch_up(
    vault: Ledger, tsa: OpenSslTsa, pki: Pki
) -> None:
    cas = load_tsa_certs(pki.ca_file.read_bytes())
    stamper = Timestamper(vault.pool, config(tsa), cas, poll=0.05)
    stamper.start()
    try:
        await grow(vault)
        await wait_stamped(vault, 0)
        failed = sample("evault_anchor_timestamp_failures_total", reason="unavailable")
        tsa.down = True
        slowest = max([await grow(vault) for _ in range(4)])
        await asyncio.sleep(0.3)
        tsa.down, tsa.hang = False, 3.0  # then a TSA that hangs past tsa_timeout
        slowest = max(slowest, *[await grow(vault) for _ in range(4)])
        await asyncio.sleep(1.2)
        cps, ts = await sizes(vault)
        assert ts == [1], "nothing is stamped while the TSA is down"
        assert slowest < 0.5, f"an append waited {slowest:.2f} s for a checkpoint"
        assert sample("evault_anchor_timestamp_failures_total", reason="unavailable") > failed
        assert sample("evault_anchor_timestamp_lag_seconds") > 0.5  # the alarm's input
        assert stamper.failures >= 2 and stamper.backoff() > 0.05
        tsa.hang = 0.0
        await wait_stamped(vault, 0)  # every checkpoint signed meanwhile, oldest first
        cps, ts = await sizes(vault)
        assert cps == ts == list(range(1, 10))
        await asyncio.sleep(0.2)
        assert sample("evault_anchor_timestamp_lag_seconds") == 0.0
        assert stamper.failures == 0
    finally:
        tsa.down, tsa.hang = False, 0.0
        await stamper.stop()


async def test_interval_stamps_only_the_latest_checkpoint(
    vault: Ledger, tsa: OpenSslTsa, pki: Pki
) -> None:
    cas = load_tsa_certs(pki.ca_file.read_bytes())
    stamper = Timestamper(vault.pool, config(tsa, tsa_interval=30.0), cas, poll=0.05)
    await grow(vault)
    stamper.start()
    try:
        await wait_stamped(vault, 0)
        for _ in range(3):
            await grow(vault)
        await asyncio.sleep(0.5)
    finally:
        await stamper.stop()
    cps, ts = await sizes(vault)
    assert cps == [1, 2, 3, 4] and ts == [1], "the next token only after tsa_interval"
    assert sample("evault_anchor_timestamp_lag_seconds") > 0


async def test_attack_token_that_does_not_verify_is_never_stored(
    vault: Ledger, tsa: OpenSslTsa, tmp_path: Path
) -> None:
    foreign = make_pki(tmp_path / "foreign", name="Foreign TSA")
    cas = load_tsa_certs(foreign.ca_file.read_bytes())  # the TSA's tokens do not chain to it
    before = sample("evault_anchor_timestamp_failures_total", reason="invalid")
    stamper = Timestamper(vault.pool, config(tsa), cas, poll=0.05)
    stamper.start()
    try:
        await grow(vault)
        deadline = time.monotonic() + 10
        while sample("evault_anchor_timestamp_failures_total", reason="invalid") == before:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await stamper.stop()
    assert tsa.requests >= 1
    assert (await sizes(vault))[1] == []


async def test_attack_timestamps_are_append_only(
    vault: Ledger, tsa: OpenSslTsa, pki: Pki, pg_dsn: str
) -> None:
    cas = load_tsa_certs(pki.ca_file.read_bytes())
    stamper = Timestamper(vault.pool, config(tsa), cas, poll=0.05)
    await grow(vault)
    stamper.start()
    try:
        await wait_stamped(vault, 0)
        await grow(vault)
        await wait_stamped(vault, 0)
    finally:
        await stamper.stop()
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("SET ROLE evault_app")
        for sql in (
            "UPDATE ledger_timestamps SET token = token WHERE size = 1",
            "DELETE FROM ledger_timestamps",
            "TRUNCATE ledger_timestamps",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
        await conn.execute("RESET ROLE")  # the superuser: refused by the ENABLE ALWAYS triggers
        for sql in ("UPDATE ledger_timestamps SET size = size", "DELETE FROM ledger_timestamps"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(sql)
        # A superuser who bypasses the triggers and serves size 1's token as size 2's:
        await conn.execute("ALTER TABLE ledger_timestamps DISABLE TRIGGER ALL")
        await conn.execute("DELETE FROM ledger_timestamps WHERE size = 2")
        await conn.execute(
            "INSERT INTO ledger_timestamps (size, imprint, token, gen_time, tsa)"
            " SELECT 2, imprint, token, gen_time, tsa FROM ledger_timestamps WHERE size = 1"
        )
    finally:
        await conn.close()
    note = await vault.pool.fetchval("SELECT note FROM ledger_checkpoints WHERE size = 2")
    token = await timestamp_of(vault.pool, 2)
    assert token is not None
    with pytest.raises(ImprintMismatch):
        verify_timestamp(token, note, cas)
    assert issubclass(ImprintMismatch, VerificationError)


async def test_two_processes_stamp_each_checkpoint_once(
    vault: Ledger, tsa: OpenSslTsa, pki: Pki
) -> None:
    """Every serve process may run a time-stamper: the advisory lock lets one ask at a time,
    so each checkpoint costs one request to the TSA."""
    cas = load_tsa_certs(pki.ca_file.read_bytes())
    await grow(vault)
    stampers = [Timestamper(vault.pool, config(tsa), cas, poll=0.01) for _ in range(2)]
    for s in stampers:
        s.start()
    try:
        await wait_stamped(vault, 0)
        for _ in range(5):
            await grow(vault)
            await asyncio.sleep(0.05)
        await wait_stamped(vault, 0)
        await asyncio.sleep(0.2)
    finally:
        for s in stampers:
            await s.stop()
    cps, ts = await sizes(vault)
    assert cps == ts == [1, 2, 3, 4, 5, 6]
    assert tsa.requests == len(ts)
