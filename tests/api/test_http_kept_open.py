"""Sealed content kept open between Range requests (``vault.storage.opencache``), over HTTP
(the app in this process): the kept object never stands for a decision. A revoked token, a
relabel and a scrub failure each refuse the requests after them while the object is still kept
open; a playback writes one ``accessed`` entry; a chunk damaged on disk ends the response
short, after only the chunks before it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from tests.api.http_fixtures import AppWorld, app_world
from vault.access import principals, tokens
from vault.access.state import REFRESH_SECONDS
from vault.cases import links as cases
from vault.policy.labels import Label, Level
from vault.storage.reseal import Resealer
from vault.storage.sealing import HEADER_SIZE, TAG_SIZE

pytestmark = pytest.mark.asyncio(loop_scope="module")

C = 65536  # keys.chunk_size of `evault init`


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AppWorld]:
    async with app_world(pg_admin_dsn, tmp_path_factory.mktemp("kept") / "data") as w:
        yield w


async def _sealed_item(w: AppWorld, name: str, size: int) -> tuple[str, str, bytes]:
    """Upload ``name``, link it to C1 (the reviewer's case), store it sealed: (id, sha, data)."""
    data = os.urandom(size)
    r = await w.upload("dock1", name, data)
    assert r.status == 201, r.body
    eid, sha = str(r.json()["evidence_id"]), str(r.json()["sha256"])
    rt = w.rt
    admin = await principals.load(rt.db.pool, "admin")
    await cases.link(rt.db.pool, rt.ledger, admin, "C1", eid)
    assert await Resealer(rt.storage, rt.db.pool, mac=rt.mac, ledger=rt.ledger).seal_object(sha)
    return eid, sha, data


async def _token(w: AppWorld, who: str) -> tuple[str, str]:
    admin = await principals.load(w.rt.db.pool, "admin")
    issued = await tokens.create(w.rt.db.pool, w.rt.ledger, admin, who, timedelta(hours=1))
    return issued.id, issued.token


async def _range(w: AppWorld, token: str, eid: str, start: int, end: int) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}", "Range": f"bytes={start}-{end - 1}"}
    async with w.client.get(f"/v1/evidence/{eid}/content", headers=headers) as r:
        return r.status, await r.read()


async def _accessed(w: AppWorld) -> int:
    conn = await asyncpg.connect(w.dsn)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 'accessed'")
        )
    finally:
        await conn.close()


def _kept(w: AppWorld, sha: str) -> bool:
    return sha in w.rt.storage.content.kept._entries


async def _play(w: AppWorld, token: str, eid: str, data: bytes, n: int = 4) -> None:
    for k in range(n):
        start = k * 3 * C // 2
        end = min(len(data), start + C + 1000)
        assert await _range(w, token, eid, start, end) == (206, data[start:end])


async def test_a_playback_is_one_entry_and_a_revoked_token_is_refused_at_once(
    world: AppWorld,
) -> None:
    w = world
    eid, sha, data = await _sealed_item(w, "kept-a.mp4", 5 * C + 123)
    token_id, token = await _token(w, "reviewer")
    before = await _accessed(w)
    await _play(w, token, eid, data)
    assert _kept(w, sha)
    assert await _accessed(w) == before + 1  # one playback session, one entry
    admin = await principals.load(w.rt.db.pool, "admin")
    await tokens.revoke(w.rt.db.pool, w.rt.ledger, admin, token_id)
    status, body = await _range(w, token, eid, 0, 100)
    assert status == 401 and data[:100] not in body
    assert _kept(w, sha)  # still kept open: it decided nothing


async def test_a_relabel_above_the_clearance_is_refused_at_once(world: AppWorld) -> None:
    w = world
    eid, sha, data = await _sealed_item(w, "kept-b.mp4", 3 * C)
    _, token = await _token(w, "reviewer")  # cleared for internal
    await _play(w, token, eid, data, 2)
    assert _kept(w, sha)
    admin = await principals.load(w.rt.db.pool, "admin")
    await cases.set_label(w.rt.db.pool, w.rt.ledger, admin, "evidence", eid, Label(Level.SECRET))
    status, body = await _range(w, token, eid, 0, 100)
    assert status in (403, 404) and data[:100] not in body


async def test_a_scrub_failure_is_refused_within_the_refresh_bound(world: AppWorld) -> None:
    w = world
    eid, sha, data = await _sealed_item(w, "kept-c.mp4", 3 * C)
    _, token = await _token(w, "reviewer")
    await _play(w, token, eid, data, 2)
    assert _kept(w, sha)
    conn = await asyncpg.connect(w.dsn)
    try:  # what scrub stores when the bytes do not match (a mark with no ledger entry)
        await conn.execute("SET ROLE evault_app")
        await conn.execute("UPDATE evidence SET integrity = 'mismatch' WHERE id = $1::uuid", eid)
    finally:
        await conn.close()
    marked = time.monotonic()
    while True:
        status, body = await _range(w, token, eid, 0, 100)
        if status != 206:
            break
        assert time.monotonic() - marked <= REFRESH_SECONDS + 0.5, "scrub mark not noticed"
        await asyncio.sleep(0.1)
    assert status == 422 and b"mismatch" in body


async def test_a_damaged_chunk_ends_the_response_after_the_chunks_before_it(
    world: AppWorld,
) -> None:
    w = world
    eid, sha, data = await _sealed_item(w, "kept-d.mp4", 6 * C + 7)
    _, token = await _token(w, "reviewer")
    await _play(w, token, eid, data, 2)
    assert _kept(w, sha)
    key = await w.rt.storage.content.key(sha)
    assert key is not None
    path: Path = w.rt.storage.blobs.sealed_path(sha, key.object_id)  # type: ignore[attr-defined]
    path.chmod(0o600)
    with path.open("r+b") as f:  # in place: the kept descriptor reads the damage
        at = HEADER_SIZE + 3 * (C + TAG_SIZE) + 999
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0x01]))
    got = bytearray()
    failed = False
    headers = {"Authorization": f"Bearer {token}", "Range": "bytes=100-"}
    async with w.client.get(f"/v1/evidence/{eid}/content", headers=headers) as r:
        assert r.status == 206
        try:
            while chunk := await r.content.readany():
                got += chunk
        except aiohttp.ClientPayloadError:
            failed = True
    assert failed or len(got) < len(data) - 100  # never a complete response
    assert len(got) <= 3 * C - 100  # nothing of the damaged chunk 3
    assert bytes(got) == data[100 : 100 + len(got)]
