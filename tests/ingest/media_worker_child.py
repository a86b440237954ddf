"""A media worker in its own process (killed by the test): python media_worker_child.py DSN STORE SCRATCH."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from ingest.config import MediaConfig
from ingest.mediajobs import MediaJobs
from vault.config import DatabaseConfig, LedgerConfig
from vault.db import open_database
from vault.jobs import JobRunner, claim
from vault.keys.hostmac import HostMac
from vault.ledger import Ledger
from vault.storage.blobstore import BlobStore
from verify.note import Signer

TEST_MAC = HostMac(bytes([7]) * 32)  # the test suite's host secret (every process)


async def main(dsn: str, store_root: Path, scratch: Path) -> None:
    scratch.mkdir(parents=True, exist_ok=True)
    async with open_database(DatabaseConfig(dsn=dsn), scratch) as db:
        ledger = Ledger(
            db.pool,
            Signer.generate("child"),
            LedgerConfig(origin="child"),
            scratch / "cp.log",
            mac=TEST_MAC,
        )
        media = MediaJobs(ledger, BlobStore(store_root), MediaConfig(), scratch)
        handlers = media.handlers()
        job = await claim(db.pool, list(handlers), "child", 2.0)
        assert job is not None
        print("claimed", flush=True)
        runner = JobRunner(db.pool, handlers, worker="child", concurrency=1, lease=2.0)
        del runner  # the job is run directly below, without heartbeats: its lease will lapse
        await handlers[job.kind](job)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))
