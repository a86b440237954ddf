"""Entry bundles are not public: anyone may follow the checkpoints and hash tiles, but the
entries (evidence ids, labels, hashes, sizes, times of every item) need a token of a principal
who may read the whole ledger. The app runs in this process behind aiohttp's test client."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.api.http_fixtures import AppWorld, app_world
from verify.merkle import leaf_hash
from verify.tiles import decode_entry_bundle, entries_path, tile_path

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AppWorld]:
    async with app_world(pg_admin_dsn, tmp_path_factory.mktemp("entries") / "data") as w:
        assert (await w.upload("dock1", "one.mp4", os.urandom(2000))).status == 201
        yield w


async def size_of(world: AppWorld) -> int:
    """The stored tree's size now (tiles are served up to it; a checkpoint may lag)."""
    r = await world.call("GET", "/readyz")
    assert r.status == 200
    size: int = r.json()["ledger_size"]
    return size


async def bundle_path(world: AppWorld) -> str:
    """The first entry bundle, partial (fewer than 256 entries are logged here)."""
    size = await size_of(world)
    assert 0 < size < 256
    return "/ledger/" + entries_path(0, size)


async def test_attack_anonymous_reader_counts_items_per_label_from_entry_bundles(
    world: AppWorld,
) -> None:
    assert (await world.call("GET", "/ledger/checkpoint")).status == 200  # public
    size = await size_of(world)
    hashes = await world.call("GET", "/ledger/" + tile_path(0, 0, size))
    assert hashes.status == 200 and len(hashes.body) == 32 * size  # hash tiles stay public
    assert "public" in hashes.headers["cache-control"]
    for path in (await bundle_path(world), "/ledger/tile/entries/000", "/ledger/tile/entries/x"):
        r = await world.call("GET", path)
        assert r.status == 401, (path, r.status)
        assert r.problem()["status"] == 401 and b"top_secret" not in r.body
        assert r.headers["www-authenticate"].startswith("Bearer")
    bad = await world.call(
        "GET", await bundle_path(world), headers={"Authorization": "Bearer evt_nope"}
    )
    assert bad.status == 401


@pytest.mark.parametrize("who", ["reviewer", "legal", "officer", "casesys", "dock1"])
async def test_attack_reviewer_without_ledger_clearance_reads_entry_bundles(
    world: AppWorld, who: str
) -> None:
    r = await world.call("GET", await bundle_path(world), who=who)
    assert r.status == 403, (who, r.status, r.body[:200])
    problem = r.problem()
    assert problem["status"] == 403 and "reading ledger entries requires" in problem["detail"]
    assert b"entries" not in r.body.split(b"detail")[0]  # a problem, not a bundle


@pytest.mark.parametrize("who", ["auditor", "admin"])
async def test_auditor_and_admin_read_entry_bundles_that_match_the_public_tiles(
    world: AppWorld, who: str
) -> None:
    await world.call("GET", await bundle_path(world), who="reviewer")  # a refusal, recorded
    path = await bundle_path(world)
    r = await world.call("GET", path, who=who)
    assert r.status == 200, r.body[:300]
    assert r.headers["cache-control"].startswith("private")
    entries = decode_entry_bundle(r.body)
    size = len(entries)
    tile = (await world.call("GET", "/ledger/" + tile_path(0, 0, size))).body
    assert [leaf_hash(e) for e in entries] == [tile[i : i + 32] for i in range(0, len(tile), 32)]
    kinds = [json.loads(e)["kind"] for e in entries]
    assert "acquired" in kinds
    denied = [json.loads(e) for e in entries if json.loads(e)["kind"] == "denied"]
    assert any(d["target_kind"] == "ledger" and d["action"] == "read_metadata" for d in denied), (
        "a refused bundle read is recorded"
    )


async def test_evidence_proof_stays_with_its_evidence(world: AppWorld) -> None:
    """The one route that returns an entry besides the bundles: the proof of an item, an
    audited verify decision on that item (the reviewer may not verify what it cannot see)."""
    listing = (await world.call("GET", "/v1/evidence", who="auditor")).json()
    eid = listing["items"][0]["id"] if "items" in listing else listing[0]["id"]
    assert (await world.call("GET", f"/v1/evidence/{eid}/proof")).status == 401
    assert (await world.call("GET", f"/v1/evidence/{eid}/proof", who="auditor")).status == 200
    proof = await world.call("GET", f"/v1/evidence/{eid}/proof", who="dock1")
    assert proof.status in (403, 404)
