"""A write error or full disk during acquisition: the source stays, nothing is half-recorded,
and a later attempt succeeds."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ingest.acquire import Deferred
from ingest.receipts import Receipt
from tests.ingest.acquire_fixtures import NAME, dock, objects, open_acquirer, sha


class DiskFull:
    """WriteFault: ENOSPC at the first write at or past ``offset`` while ``armed``."""

    def __init__(self, offset: int) -> None:
        self.offset, self.armed, self.hits = offset, True, 0

    def before_write(self, offset: int) -> None:
        if self.armed and offset >= self.offset:
            self.hits += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def test_full_disk_then_retry(pg_dsn: str, tmp_path: Path) -> None:
    d = dock(tmp_path, release="delete")
    src = d.path / NAME
    data = os.urandom(300_000)
    src.write_bytes(data)
    fault = DiskFull(offset=128 << 10)
    async with open_acquirer(pg_dsn, tmp_path, [d], fault=fault) as env:
        out = await env.acq.acquire_path(d, src)
        assert isinstance(out, Deferred) and out.reason == "store", out
        assert "No space left" in out.detail and fault.hits == 1
        assert src.read_bytes() == data  # the source stays
        assert not (d.path / (NAME + ".evault-receipt.json")).exists()
        assert objects(env.store) == {}
        assert list((env.store.root / "tmp").iterdir()) == []
        assert await env.rows("SELECT 1 FROM evidence") == []
        assert await env.rows("SELECT 1 FROM evidence_offers") == []
        assert await env.ledger.size() == 0

        fault.armed = False
        again = await env.acq.acquire_path(d, src)
        assert isinstance(again, Receipt) and again.kind == "acquired"
        assert again.sha256 == sha(data) and objects(env.store) == {sha(data): data}
        assert not src.exists()  # released (delete) only now, after the receipt
        assert len(await env.rows("SELECT 1 FROM evidence")) == 1


async def test_database_down_leaves_the_source(pg_dsn: str, tmp_path: Path) -> None:
    d = dock(tmp_path, release="move")
    src = d.path / NAME
    src.write_bytes(b"footage")
    async with open_acquirer(pg_dsn, tmp_path, [d]) as env:
        await env.db.pool.close()
        out = await env.acq.acquire_path(d, src)
        assert isinstance(out, Deferred) and out.reason == "ledger"
        assert src.read_bytes() == b"footage"
        assert not (d.path / ".released").exists()
