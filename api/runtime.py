"""What every command and the service open: configuration, database, signing key, ledger."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import asyncpg

from api.config import Config
from vault.access import principals
from vault.access import state as access_state
from vault.anchors.sm2 import Sm2Cosigner, load_cosigner
from vault.db import Database, open_database
from vault.errors import EvaultError
from vault.keys.hostmac import HostMac, load_mac_key
from vault.keys.signing import load_signer
from vault.ledger import Ledger
from vault.ops import objectlock
from vault.storage.backend import ObjectStore
from vault.storage.storage import Storage, open_objects, open_storage
from verify.note import Signer

log = logging.getLogger("evault.storage")


@dataclass
class Runtime:
    """The open parts of one process."""

    cfg: Config
    db: Database
    signer: Signer
    mac: HostMac
    ledger: Ledger
    objects: ObjectStore | None = None  # the S3 store, connected at start (None: file store)

    @cached_property
    def storage(self) -> Storage:
        """The process's one storage (blob store, sealed reads, sealer), opened on first use:
        every part of the process shares it."""
        return open_storage(self.cfg, self.db.pool, self.objects)

    async def extend_locks(self, evidence_id: str) -> None:
        """After a link committed: extend the item's Object Locks (``vault.ops.objectlock``;
        nothing on the file store). A failure is logged: the next retention run repairs it."""
        try:
            await objectlock.extend_item(self.storage.blobs, self.db.pool, self.mac, evidence_id)
        except EvaultError as exc:
            log.warning("Object Lock of %s not extended (the next retention run will): %s",
                        evidence_id, exc)  # fmt: skip


def sm2_cosigners(cfg: Config) -> tuple[Sm2Cosigner, ...]:
    """The SM2 cosigner of ``[anchors]``, if ``sm2_key`` is set (ConfigError if unusable)."""
    a = cfg.anchors
    if not a.sm2_key:
        return ()
    cert = cfg.path(Path(a.sm2_cert)) if a.sm2_cert else None
    return (load_cosigner(a, cfg.path(Path(a.sm2_key)), cert, cfg.ledger.origin),)


@asynccontextmanager
async def open_runtime(
    cfg: Config, *, background: bool = False, follow: bool = False
) -> AsyncIterator[Runtime]:
    """Open the database and ledger, create the configured principals that are missing; with
    ``background``, also sign checkpoints as the tree grows (with ``follow``, only learn the
    checkpoints another process signs: an API worker of ``evault serve --workers``). With
    ``store.backend = "s3"`` the bucket is connected and checked first: one without Object
    Lock stops everything here."""
    signer = load_signer(cfg.path(cfg.ledger.key_file))
    mac = load_mac_key(cfg.path(cfg.ledger.mac_key_file))
    cosigners = sm2_cosigners(cfg)
    async with open_objects(cfg) as objects, open_database(cfg.database, cfg.data) as db:
        ledger = Ledger(
            db.pool,
            signer,
            cfg.ledger,
            cfg.path(cfg.ledger.checkpoints_log),
            mac=mac,
            cosigners=cosigners,
            connect=lambda: asyncpg.connect(db.dsn, server_settings={"role": db.app_role}),
            follow=follow,
            doubt_dir=cfg.data / "ledger-in-doubt",
        )
        # Access state is verified with the host key against a mirror of the ledger.
        state = access_state.install(access_state.AccessState(mac, db.pool))
        try:
            await principals.seed(db.pool, ledger, cfg.principals)
            if background:
                ledger.start()
            yield Runtime(cfg=cfg, db=db, signer=signer, mac=mac, ledger=ledger, objects=objects)
        finally:
            access_state.uninstall(state)
            await ledger.close()
