"""Child process for the crash and permission tests: run the Acquirer over dock folders.

Usage: acquire_child.py SPEC.json, where SPEC has dsn, tmp, skey (file), docks ([{id, path,
release}]), optional paths (acquire exactly these, once, for docks[0]) and drop_dac (file work
then runs in threads without the capabilities that let root read other users' files, so the
kernel's "permission denied" is real). Prints
"ready" once the database is open, then one JSON line per outcome. Without ``paths`` it
acquires every file in the docks, pass after pass, until nothing is left to take.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ingest.acquire import Acquirer, Deferred
from ingest.config import DockConfig
from ingest.dockfs import walk
from ingest.quarantine import Quarantine
from ingest.receipts import Receipt
from ingest.watcher import ignored
from vault.config import DatabaseConfig, LedgerConfig
from vault.db import open_database
from vault.keys.hostmac import HostMac
from vault.ledger import Ledger
from vault.storage.blobstore import BlobStore
from verify.note import Signer

TEST_MAC = HostMac(bytes([7]) * 32)  # the test suite's host secret (every process)

ORIGIN = "test.evidence-vault.local/ledger"
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def drop_dac() -> None:
    """Remove CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the calling thread (capset(2))."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    mask = ~((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH)) & 0xFFFFFFFF
    for field in ("effective", "permitted", "inheritable"):
        setattr(data[0], field, getattr(data[0], field) & mask)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def describe(outcome: Any) -> dict[str, Any]:
    if isinstance(outcome, Receipt):
        return {"receipt": outcome.to_json()}
    if isinstance(outcome, Deferred):
        return {"deferred": outcome.reason, "detail": outcome.detail}
    return {"quarantined": outcome.reason, "stored_as": str(outcome.stored_as)}


async def main(spec: dict[str, Any]) -> int:
    tmp = Path(spec["tmp"])
    docks = [
        DockConfig(id=d["id"], path=Path(d["path"]), release=d["release"]) for d in spec["docks"]
    ]
    if spec.get("drop_dac"):
        # Capabilities are per thread: every worker thread (all file work runs in them) drops
        # them when it starts; the main thread keeps them to reach the database's socket.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(initializer=drop_dac))
    async with open_database(DatabaseConfig(dsn=spec["dsn"]), tmp) as db:
        signer = Signer.from_skey(Path(spec["skey"]).read_text())
        cfg = LedgerConfig(origin=ORIGIN, checkpoint_interval=0.0)
        ledger = Ledger(db.pool, signer, cfg, tmp / "checkpoints.log", mac=TEST_MAC)
        store = BlobStore(tmp / "vault", chunk_size=64 << 10)
        store.sweep_tmp()
        acq = Acquirer(store, ledger, Quarantine(tmp / "quarantine", ledger), docks)
        print("ready", flush=True)
        try:
            if "paths" in spec:
                for path in spec["paths"]:
                    outcome = await acq.acquire_path(docks[0], os.fsencode(path))
                    print(json.dumps(describe(outcome)), flush=True)
                return 0
            limit = asyncio.Semaphore(4)

            async def take(dock: DockConfig, path: bytes) -> bool:
                async with limit:
                    return isinstance(await acq.acquire_path(dock, path), Receipt)

            while True:
                work = [
                    (d, p)
                    for d in docks
                    for p in walk(d.path)
                    if not ignored(d, p[len(os.fsencode(d.path)) + 1 :])
                ]
                if not work:
                    return 0
                results = await asyncio.gather(*(take(d, p) for d, p in work))
                if all(results) and all(d.release == "keep" for d, _ in work):
                    return 0
        finally:
            await ledger.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(json.loads(Path(sys.argv[1]).read_text()))))
