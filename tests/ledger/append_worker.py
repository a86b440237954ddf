"""A separate process appending to the same ledger: ``python append_worker.py DSN KEY LOG N``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from vault.config import DatabaseConfig, LedgerConfig
from vault.db import open_database
from vault.keys.hostmac import HostMac
from vault.keys.signing import load_signer
from vault.ledger import Ledger, make_entry

TEST_MAC = HostMac(bytes([7]) * 32)  # the test suite's host secret (every process)


async def main(dsn: str, key: Path, log: Path, count: int) -> None:
    signer = load_signer(key)
    async with open_database(DatabaseConfig(dsn=dsn), log.parent) as db:
        ledger = Ledger(
            db.pool,
            signer,
            LedgerConfig(origin=signer.name, checkpoint_interval=0.01),
            log,
            mac=TEST_MAC,
        )
        ledger.start()
        try:

            async def one(k: int) -> None:
                for i in range(k, count, 8):
                    await ledger.append([make_entry("note", {"text": f"pid-{i}"})])

            await asyncio.gather(*(one(k) for k in range(8)))
            await ledger.checkpoint()
        finally:
            await ledger.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])))
