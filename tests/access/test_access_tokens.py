"""Tokens: refused the same way whatever is wrong; never in clear in the database or logs."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.access.access_fixtures import ADMIN, open_vault
from vault.access import principals, tokens
from vault.errors import BadRequest, Forbidden, Unauthenticated
from vault.policy.decide import Role
from vault.policy.labels import Level

SPEC = principals.PrincipalSpec("alice", frozenset({Role.REVIEWER}), Level.CONFIDENTIAL)


async def _refusal(pool: asyncpg.Pool[asyncpg.Record], token: str) -> tuple[type, int, str]:
    with pytest.raises(Unauthenticated) as info:
        await tokens.authenticate(pool, token)
    return (type(info.value), info.value.status, str(info.value))


async def _tables_containing(dsn: str, needle: str) -> list[str]:
    """Every table.column (any type, read as its owner) whose text or bytes contain needle."""
    conn = await asyncpg.connect(dsn)
    try:
        cols = await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        )
        hits = []
        for c in cols:
            t, col = c["table_name"], c["column_name"]
            if c["data_type"] == "bytea":
                cond = f'position($1::bytea in "{col}") > 0'
                arg: object = needle.encode()
            else:
                cond = f'position($1 in "{col}"::text) > 0'
                arg = needle
            if await conn.fetchval(f'SELECT count(*) FROM "{t}" WHERE {cond}', arg):
                hits.append(f"{t}.{col}")
        return hits
    finally:
        await conn.close()


async def test_tokens_refused_identically_and_never_stored(
    pg_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await principals.add(pool, ledger, ADMIN, SPEC)
        issued = await tokens.create(pool, ledger, ADMIN, "alice", timedelta(days=1))
        assert issued.token.startswith("evt_") and len(issued.token) == 47
        assert issued.token not in repr(issued)
        assert (await tokens.authenticate(pool, issued.token)).id == "alice"

        unknown = "evt_" + secrets.token_urlsafe(32)
        refusals = {"unknown": await _refusal(pool, unknown)}
        refusals["malformed"] = await _refusal(pool, "hello")
        refusals["prefix-only"] = await _refusal(pool, issued.token[:-1])

        expired = await tokens.create(pool, ledger, ADMIN, "alice", timedelta(minutes=1))
        await pool.execute(
            "UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = $1", expired.id
        )
        refusals["expired"] = await _refusal(pool, expired.token)

        revoked = await tokens.create(pool, ledger, ADMIN, "alice", timedelta(days=1))
        await tokens.revoke(pool, ledger, ADMIN, revoked.id)
        refusals["revoked"] = await _refusal(pool, revoked.token)

        await principals.disable(pool, ledger, ADMIN, "alice")
        refusals["disabled principal"] = await _refusal(pool, issued.token)
        assert len(set(refusals.values())) == 1, refusals
        await principals.enable(pool, ledger, ADMIN, "alice")
        assert (await tokens.authenticate(pool, issued.token)).id == "alice"

        with pytest.raises(BadRequest):
            await tokens.create(pool, ledger, ADMIN, "alice", timedelta(days=10_000))
        with pytest.raises(Forbidden):
            await tokens.create(
                pool, ledger, await principals.load(pool, "alice"), "alice", timedelta(days=1)
            )

        for t in (issued, expired, revoked):
            assert await _tables_containing(db.dsn, t.token) == []
            assert await _tables_containing(db.dsn, t.token[4:]) == []
            assert t.token not in caplog.text
        # the needle search itself works: the public token id is stored
        assert "tokens.id" in await _tables_containing(db.dsn, issued.id)
        for log in tmp_path.rglob("*.log"):
            assert issued.token not in log.read_text()
