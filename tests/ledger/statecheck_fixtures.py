"""Legitimate operations for the fsck --state tests, done through the service's own functions."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from ingest.acquire import Receipt
from tests.ingest.acquire_fixtures import Env, dock, open_acquirer
from tests.vault_fixtures import ADMIN
from vault import evidence as evrows
from vault.access import principals, tokens
from vault.cases import links as cases
from vault.db import Conn
from vault.ledger import make_entry
from vault.ops import disposition
from vault.ops.retention import RetentionPolicy
from vault.policy.decide import Role
from vault.policy.labels import Caveat, Label, Level
from vault.statecheck import Finding, StateReport

__all__ = ["Env", "World", "build", "dock", "named", "open_acquirer"]

SECRET = Label(Level.SECRET)
CONF = Label(Level.CONFIDENTIAL, frozenset({Caveat.PERSONAL_PRIVACY}))


@dataclass
class World:
    """What the operations made, by name."""

    evidence: list[str] = field(default_factory=list)
    renditions: list[str] = field(default_factory=list)
    principals: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)
    assigned: set[tuple[str, str]] = field(default_factory=set)
    unassigned: set[tuple[str, str]] = field(default_factory=set)
    holds: list[int] = field(default_factory=list)


async def acquire(env: Env, n: int) -> list[str]:
    d = dock(env.tmp)
    out = []
    for _ in range(n):
        name = f"DEV01_OFF{os.urandom(2).hex()}_20260101120000.mp4"
        path = d.path / name
        path.write_bytes(os.urandom(2048))
        receipt = await env.acq.acquire_path(d, path)
        assert isinstance(receipt, Receipt)
        out.append(receipt.evidence_id)
    return out


async def add_rendition(env: Env, evidence_id: str, kind: str = "poster") -> str:
    """A rendition recorded with the entry media jobs write (ingest.mediajobs)."""
    row = await env.db.pool.fetchrow(
        "SELECT sha256, label_level, label_caveats FROM evidence WHERE id = $1::uuid", evidence_id
    )
    assert row is not None
    data = os.urandom(500)
    fd = os.open(_scratch(env, data), os.O_RDONLY)
    try:
        blob = env.store.ingest_file(fd)
    finally:
        os.close(fd)
    rid = uuid.uuid4()
    label = Label.from_json(
        {"level": Level(row["label_level"]).slug, "caveats": list(row["label_caveats"])}
    )
    fields = {
        "evidence_id": evidence_id,
        "rendition": kind,
        "rendition_id": str(rid),
        "input_sha256": row["sha256"],
        "output_sha256": blob.sha256,
        "output_size": blob.size,
        "media_type": "image/jpeg",
        "label": str(label),
    }

    new = evrows.NewRendition(
        rid, uuid.UUID(evidence_id), kind, blob.sha256, blob.size, "image/jpeg", label
    )

    async def effect(conn: Conn, indexes: list[int]) -> None:
        await evrows.insert_rendition(conn, env.ledger.mac, new, indexes[0])

    await env.ledger.append([make_entry("derived", fields)], effect=effect)
    return str(rid)


def _scratch(env: Env, data: bytes) -> Path:
    path = env.tmp / f"scratch-{uuid.uuid4()}"
    path.write_bytes(data)
    return path


async def principal(env: Env, pid: str, *, officer: str | None = None) -> str:
    spec = principals.PrincipalSpec(
        id=pid,
        roles=frozenset({Role.REVIEWER}),
        clearance=Level.SECRET,
        caveats=frozenset({Caveat.PERSONAL_PRIVACY}),
        officer_id=officer,
        dock_ids=frozenset({"dock-01"}) if officer else frozenset(),
    )
    await principals.add(env.db.pool, env.ledger, ADMIN, spec)
    return pid


async def build(env: Env) -> World:
    """A small history touching every table fsck --state checks."""
    pool, ledger, w = env.db.pool, env.ledger, World()
    w.evidence = await acquire(env, 3)
    w.renditions.append(await add_rendition(env, w.evidence[0]))
    w.renditions.append(await add_rendition(env, w.evidence[1], "proxy"))
    w.principals = [await principal(env, "alice", officer="OFF1"), await principal(env, "bob")]
    await principals.disable(pool, ledger, ADMIN, "bob")
    await principals.enable(pool, ledger, ADMIN, "bob")
    await principals.disable(pool, ledger, ADMIN, "bob")
    for c, title, label in (("K1", "first", SECRET), ("K2", "second", Label(Level.INTERNAL))):
        await cases.create(pool, ledger, ADMIN, c, title, label)
        w.cases.append(c)
    await cases.retitle(pool, ledger, ADMIN, "K1", "first, renamed")
    await principals.assign(pool, ledger, ADMIN, "alice", "K1")
    await principals.assign(pool, ledger, ADMIN, "alice", "K2")
    await principals.assign(pool, ledger, ADMIN, "alice", "K1")  # again: keeps the first
    await principals.unassign(pool, ledger, ADMIN, "alice", "K2")
    w.assigned, w.unassigned = {("alice", "K1")}, {("alice", "K2")}
    live = await tokens.create(pool, ledger, ADMIN, "alice", timedelta(days=3))
    dead = await tokens.create(pool, ledger, ADMIN, "alice", timedelta(days=1))
    await tokens.revoke(pool, ledger, ADMIN, dead.id)
    await tokens.revoke(pool, ledger, ADMIN, dead.id)  # twice: a recorded no-op
    w.tokens = [live.id, dead.id]
    await cases.link(pool, ledger, ADMIN, "K1", w.evidence[0])
    await cases.unlink(pool, ledger, ADMIN, "K1", w.evidence[0])
    await cases.link(pool, ledger, ADMIN, "K2", w.evidence[1])
    await cases.set_label(pool, ledger, ADMIN, "evidence", w.evidence[0], CONF)  # raises rendition
    await cases.set_label(pool, ledger, ADMIN, "case", "K2", SECRET)
    await disposition.set_category(pool, ledger, ADMIN, w.evidence[1], "important")
    hold = await disposition.place_hold(pool, ledger, ADMIN, case_id="K2", reason="court")
    other = await disposition.place_hold(pool, ledger, ADMIN, evidence_id=w.evidence[2], reason="x")
    await disposition.release_hold(pool, ledger, ADMIN, other)
    w.holds = [hold, other]
    # Dispose of the one item neither linked nor held now (its hold was released).
    result = await disposition.run(
        pool,
        ledger,
        ADMIN,
        RetentionPolicy(ordinary_days=1),
        env.store.remove,
        now=datetime.now(UTC) + timedelta(days=30),
    )
    assert result.disposed and w.evidence[1] not in result.disposed
    return w


def named(report: StateReport, table: str, key: dict[str, str], column: str) -> list[Finding]:
    """The findings naming ``table`` row ``key`` and ``column``."""
    return [
        f for f in report.findings if f.table == table and dict(f.key) == key and f.column == column
    ]


async def superuser(dsn: str) -> Any:
    return await asyncpg.connect(dsn)
