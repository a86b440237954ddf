"""fsck --state: legitimate history replays clean; an edited, rolled-back, deleted or
reinserted row of a table that decides access or points at bytes is named, as the app role and
as a superuser."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from tests.ledger.statecheck_fixtures import World, build, dock, named, open_acquirer
from vault.statecheck import fsck_state


class _Undo(Exception):
    """Rolls the edit back after the check."""


Edit = Callable[[asyncpg.Connection, World], Awaitable[tuple[str, dict[str, str], str]]]


async def _check_edit(dsn: str, world: World, edit: Edit, *, as_app: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        with pytest.raises(_Undo):
            async with conn.transaction():
                if as_app:
                    await conn.execute("SET LOCAL ROLE evault_app")
                table, key, column = await edit(conn, world)
                report = await fsck_state(conn)
                hits = named(report, table, key, column)
                assert hits, f"{table} {key} {column} not named in {report.findings}"
                raise _Undo
    finally:
        await conn.close()


async def test_legitimate_history_replays_clean(pg_dsn: str, tmp_path: Path) -> None:
    async with open_acquirer(pg_dsn, tmp_path, [dock(tmp_path)]) as env:
        await build(env)
        async with env.db.pool.acquire() as conn:
            report = await fsck_state(conn)
        assert report.findings == []
        assert report.rows["evidence"] == 3 and report.rows["renditions"] == 2
        assert report.rows["principal_cases"] == 1 and report.rows["tokens"] == 2
        assert report.rows["case_evidence_history"] == 3 and report.rows["dispositions"] >= 1
        assert not report.unchecked  # every entry written today records every checked column


# -- one edit per bound table: (sql, args from the world) -> expected (table, key, column) --


async def _evidence_sha(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute(
        "UPDATE evidence SET sha256 = repeat('0', 64) WHERE id = $1::uuid", w.evidence[1]
    )
    return "evidence", {"id": w.evidence[1]}, "sha256"


async def _evidence_label_rollback(
    c: asyncpg.Connection, w: World
) -> tuple[str, dict[str, str], str]:
    # back to the arrival label, a genuine earlier value (a row tag of it would verify)
    await c.execute(
        "UPDATE evidence SET label_level = 1, label_caveats = '{}' WHERE id = $1::uuid",
        w.evidence[0],
    )
    return "evidence", {"id": w.evidence[0]}, "label_level"


async def _evidence_officer(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute("UPDATE evidence SET officer_id = 'OFF1' WHERE id = $1::uuid", w.evidence[2])
    return "evidence", {"id": w.evidence[2]}, "officer_id"


async def _rendition_label(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute(
        "UPDATE renditions SET label_caveats = '{}' WHERE id = $1::uuid", w.renditions[0]
    )
    return "renditions", {"id": w.renditions[0]}, "label_caveats"


async def _rendition_bytes(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute("UPDATE renditions SET size = size + 1 WHERE id = $1::uuid", w.renditions[1])
    return "renditions", {"id": w.renditions[1]}, "size"


async def _principal_enabled_again(
    c: asyncpg.Connection, w: World
) -> tuple[str, dict[str, str], str]:
    await c.execute("UPDATE principals SET active = true WHERE id = 'bob'")  # a rollback
    return "principals", {"id": "bob"}, "active"


async def _principal_roles(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute("UPDATE principals SET roles = '{reviewer,admin}' WHERE id = 'alice'")
    return "principals", {"id": "alice"}, "roles"


async def _principal_officer(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute("UPDATE principals SET officer_id = 'OFF9' WHERE id = 'alice'")
    return "principals", {"id": "alice"}, "officer_id"


async def _token_unrevoked(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute("UPDATE tokens SET revoked_at = NULL WHERE id = $1", w.tokens[1])
    return "tokens", {"id": w.tokens[1]}, "revoked_at"


async def _token_hash(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute(
        "UPDATE tokens SET token_hash = sha256('minted'::bytea) WHERE id = $1", w.tokens[0]
    )
    return "tokens", {"id": w.tokens[0]}, "token_hash"


async def _token_deleted(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute("DELETE FROM tokens WHERE id = $1", w.tokens[1])
    return "tokens", {"id": w.tokens[1]}, "*"


async def _assignment_reinserted(
    c: asyncpg.Connection, w: World
) -> tuple[str, dict[str, str], str]:
    idx = await c.fetchval("SELECT min(idx) FROM ledger_entries WHERE kind = 'principal'")
    await c.execute(
        "INSERT INTO principal_cases (principal_id, case_id, ledger_idx) VALUES ('alice', 'K2', $1)",
        idx,
    )
    return "principal_cases", {"principal_id": "alice", "case_id": "K2"}, "*"


async def _assignment_deleted(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute("DELETE FROM principal_cases WHERE principal_id = 'alice'")
    return "principal_cases", {"principal_id": "alice", "case_id": "K1"}, "*"


async def _case_title_rollback(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute("UPDATE cases SET title = 'first' WHERE id = 'K1'")
    return "cases", {"id": "K1"}, "title"


async def _case_label(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute("UPDATE cases SET label_level = 1 WHERE id = 'K2'")
    return "cases", {"id": "K2"}, "label_level"


async def _dispositions_extra(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    idx = await c.fetchval("SELECT max(idx) FROM ledger_entries")
    await c.execute(
        "INSERT INTO dispositions (evidence_id, ledger_idx, sha256)"
        " SELECT id, $2, sha256 FROM evidence WHERE id = $1::uuid",
        w.evidence[1],
        idx,
    )
    return "dispositions", {"evidence_id": w.evidence[1]}, "*"


async def _hold_released(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    row = await c.fetchrow("SELECT placed_idx FROM legal_holds WHERE id = $1", w.holds[0])
    idx = await c.fetchval("SELECT max(idx) FROM ledger_entries")
    await c.execute(
        "UPDATE legal_holds SET released_at = now(), released_idx = $2 WHERE id = $1",
        w.holds[0],
        idx,
    )
    return "legal_holds", {"placed_idx": str(row["placed_idx"])}, "released_idx"


APP_EDITS: list[Edit] = [
    _evidence_sha,
    _evidence_label_rollback,
    _evidence_officer,
    _rendition_label,
    _rendition_bytes,
    _principal_enabled_again,
    _principal_roles,
    _principal_officer,
    _token_unrevoked,
    _token_hash,
    _token_deleted,
    _assignment_reinserted,
    _assignment_deleted,
    _case_title_rollback,
    _case_label,
    _dispositions_extra,
    _hold_released,
]


# Append-only tables: only a superuser who disables their triggers can change them.


async def _unlink_deleted(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute("ALTER TABLE case_evidence_history DISABLE TRIGGER ALL")
    idx = await c.fetchval(
        "DELETE FROM case_evidence_history WHERE action = 'unlinked' RETURNING ledger_idx"
    )
    return "case_evidence_history", {"ledger_idx": str(idx)}, "*"


async def _link_action(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute("ALTER TABLE case_evidence_history DISABLE TRIGGER ALL")
    idx = await c.fetchval(
        "UPDATE case_evidence_history SET action = 'linked' WHERE action = 'unlinked'"
        " RETURNING ledger_idx"
    )
    return "case_evidence_history", {"ledger_idx": str(idx)}, "action"


async def _disposition_deleted(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute("ALTER TABLE dispositions DISABLE TRIGGER ALL")
    eid = await c.fetchval("DELETE FROM dispositions RETURNING evidence_id::text")
    return "dispositions", {"evidence_id": eid}, "*"


async def _opening_swapped(c: asyncpg.Connection, w: World) -> tuple[str, dict[str, str], str]:
    await c.execute("ALTER TABLE ledger_openings DISABLE TRIGGER ALL")
    idx = await c.fetchval(
        "UPDATE ledger_openings SET value = convert_to('\"K2\"', 'UTF8')"
        " WHERE field = 'case' AND value = convert_to('\"K1\"', 'UTF8')"
        " AND idx = (SELECT min(ledger_idx) FROM case_evidence_history) RETURNING idx"
    )
    return "ledger_openings", {"idx": str(idx), "field": "case"}, "value"


SUPERUSER_EDITS: list[Edit] = [
    *APP_EDITS,
    _unlink_deleted,
    _link_action,
    _disposition_deleted,
    _opening_swapped,
]


async def test_attack_edited_rows_are_named_as_app_role(pg_dsn: str, tmp_path: Path) -> None:
    async with open_acquirer(pg_dsn, tmp_path, [dock(tmp_path)]) as env:
        world = await build(env)
        for edit in APP_EDITS:
            await _check_edit(pg_dsn, world, edit, as_app=True)


async def test_attack_edited_rows_are_named_as_superuser(pg_dsn: str, tmp_path: Path) -> None:
    async with open_acquirer(pg_dsn, tmp_path, [dock(tmp_path)]) as env:
        world = await build(env)
        for edit in SUPERUSER_EDITS:
            await _check_edit(pg_dsn, world, edit, as_app=False)
        async with env.db.pool.acquire() as conn:  # every edit was rolled back
            assert (await fsck_state(conn)).ok
