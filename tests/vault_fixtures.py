"""Fixtures shared by the vault-level tests: a real ledger on a test database, principals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from vault.access import state as access_state
from vault.config import DatabaseConfig, LedgerConfig
from vault.db import Database, Db, open_database
from vault.keys.hostmac import HostMac, load_mac_key
from vault.ledger import Ledger
from vault.policy.decide import Principal, Role
from vault.policy.labels import Caveat, Label, Level
from verify.note import Signer

TEST_MAC = HostMac(bytes([7]) * 32)  # the test suite's host secret (every process)


def install_test_mac(data: Path) -> None:
    """Give an `evault init`-ed data folder the test suite's host secret, so the CLI and the
    in-process fixtures (``TEST_MAC``) tag and verify rows with the same key."""
    (data / "keys" / "ledger.mac").write_text(bytes([7]).hex() * 32 + "\n")


ORIGIN = "test.evidence-vault.local/ledger"
ALL_CAVEATS = frozenset(Caveat)
INTERNAL = Label(Level.INTERNAL)

ADMIN = Principal(
    id="admin",
    clearance=Level.TOP_SECRET,
    caveats=ALL_CAVEATS,
    roles=frozenset({Role.ADMIN, Role.AUDITOR}),
    cases=frozenset(),
)


async def retag(db: Db, table: str, key: object, mac: HostMac = TEST_MAC) -> None:
    """Re-tag an evidence or rendition row (``table``) as it now stands, with the test host key:
    test set-up that stands for the service writing those values (never done by the service)."""
    from vault.evidence.model import evidence_values, rendition_values

    row = await db.fetchrow(f"SELECT * FROM {table} WHERE id = $1::uuid", key)
    assert row is not None
    values = evidence_values(row) if table == "evidence" else rendition_values(row)
    tag = mac.row(table, [row["id"]], values, row["state_idx"])
    await db.execute(f"UPDATE {table} SET tag = $2 WHERE id = $1::uuid", key, tag)


@asynccontextmanager
async def open_vault(
    dsn: str, tmp: Path, *, data: Path | None = None
) -> AsyncIterator[tuple[Ledger, Database]]:
    """A ledger and database with access state verified under ``TEST_MAC``, or under the host
    key of the data directory ``data`` (one made by ``evault init``, shared with CLI runs)."""
    mac = TEST_MAC if data is None else load_mac_key(data / "keys" / "ledger.mac")
    cfg = LedgerConfig(origin=ORIGIN, checkpoint_interval=0.0, batch_wait=0.0)
    async with open_database(DatabaseConfig(dsn=dsn), tmp) as db:
        ledger = Ledger(db.pool, Signer.generate(ORIGIN), cfg, tmp / "checkpoints.log", mac=mac)
        state = access_state.install(access_state.AccessState(mac, db.pool))
        try:
            yield ledger, db
        finally:
            access_state.uninstall(state)
            await ledger.close()


def person(
    pid: str,
    roles: Iterable[Role],
    clearance: Level = Level.TOP_SECRET,
    caveats: Iterable[Caveat] = ALL_CAVEATS,
    cases: Iterable[str] = (),
    officer_id: str | None = None,
    active: bool = True,
) -> Principal:
    return Principal(
        id=pid,
        clearance=clearance,
        caveats=frozenset(caveats),
        roles=frozenset(roles),
        cases=frozenset(cases),
        officer_id=officer_id,
        active=active,
    )
