"""Property: after any sequence of legitimate operations fsck --state is clean, and one edit of
one column (or the deletion) of any row of any bound table is named by table, key and column.

One database serves every example (history accumulates, as in a real vault); each edit is made
by a superuser with triggers off, inside a transaction that is rolled back after the check.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ledger.statecheck_fixtures import (
    Env,
    acquire,
    add_rendition,
    dock,
    named,
    open_acquirer,
    principal,
)
from tests.vault_fixtures import ADMIN
from vault.access import principals, tokens
from vault.cases import links as cases
from vault.errors import EvaultError
from vault.ops import disposition
from vault.policy.labels import Caveat, Label, Level
from vault.statecheck import fsck_state
from vault.statecheck.replay import TABLE_KEYS

_TOGGLE = "CASE WHEN {v} = ANY({c}) THEN array_remove({c}, {v}) ELSE array_append({c}, {v}) END"
_NOW_OR_NULL = "CASE WHEN {c} IS NULL THEN now() ELSE NULL END"

# For each bound table, an edit per checked column (SQL expression of the new value; each
# always differs from the old one). Key columns are not edited: a changed key is a deletion
# plus an insertion, which the "delete" edit and the extra-row tests cover.
EDITS: dict[str, dict[str, str]] = {
    "evidence": {
        "sha256": "md5(sha256) || md5(sha256)",
        "size": "size + 1",
        "ledger_idx": "ledger_idx + 1000000",
        "label_level": "(label_level + 1) % 5",
        "label_caveats": _TOGGLE.format(v="'commercial_secret'", c="label_caveats"),
        "dock_id": "coalesce(dock_id, '') || 'x'",
        "device_id": "coalesce(device_id, '') || 'x'",
        "officer_id": "coalesce(officer_id, '') || 'x'",
        "recorded_at": "coalesce(recorded_at + interval '1 second', now())",
        "category": "CASE category WHEN 'ordinary' THEN 'important' ELSE 'ordinary' END",
    },
    "renditions": {
        "evidence_id": "gen_random_uuid()",
        "kind": "CASE kind WHEN 'clip' THEN 'fingerprint' ELSE 'clip' END",
        "sha256": "md5(sha256) || md5(sha256)",
        "size": "size + 1",
        "media_type": "media_type || 'x'",
        "ledger_idx": "ledger_idx + 1000000",
        "label_level": "(label_level + 1) % 5",
        "label_caveats": _TOGGLE.format(v="'commercial_secret'", c="label_caveats"),
    },
    "principals": {
        "roles": _TOGGLE.format(v="'admin'", c="roles"),
        "clearance": "(clearance + 1) % 5",
        "caveats": _TOGGLE.format(v="'commercial_secret'", c="caveats"),
        "active": "NOT active",
        "ledger_idx": "ledger_idx + 1000000",
        "officer_id": "coalesce(officer_id, '') || 'x'",
        "dock_ids": "array_append(dock_ids, 'x')",
    },
    "tokens": {
        "principal_id": "principal_id || 'x'",
        "expires_at": "expires_at + interval '1 day'",
        "revoked_at": _NOW_OR_NULL.format(c="revoked_at"),
        "token_hash": "sha256(token_hash)",
    },
    "principal_cases": {"ledger_idx": "ledger_idx + 1000000"},
    "cases": {
        "title": "title || 'x'",
        "label_level": "(label_level + 1) % 5",
        "label_caveats": _TOGGLE.format(v="'commercial_secret'", c="label_caveats"),
        "ledger_idx": "ledger_idx + 1000000",
    },
    "case_evidence_history": {
        "case_id": "case_id || 'x'",
        "evidence_id": "gen_random_uuid()",
        "action": "CASE action WHEN 'linked' THEN 'unlinked' ELSE 'linked' END",
        "principal_id": "principal_id || 'x'",
    },
    "dispositions": {"ledger_idx": "ledger_idx + 1000000", "sha256": "sha256 || 'x'"},
    "legal_holds": {"reason": "reason || 'x'", "placed_by": "placed_by || 'x'"},
}
_EXTRA_SET = {  # columns edited together to keep a CHECK constraint
    ("legal_holds", "released_idx"): "released_idx = CASE WHEN released_idx IS NULL THEN"
    " placed_idx ELSE NULL END, released_at = CASE WHEN released_idx IS NULL THEN now() END",
}

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "acquire",
                "rendition",
                "principal",
                "assign",
                "unassign",
                "disable",
                "enable",
                "token",
                "revoke",
                "case",
                "retitle",
                "link",
                "unlink",
                "label-evidence",
                "label-case",
                "category",
                "hold",
                "release",
            ]
        ),
        st.integers(0, 50),
        st.integers(0, 50),
    ),
    min_size=1,
    max_size=8,
)
_counter = itertools.count()
EDITED: list[tuple[str, str]] = []  # the edits made (a table may still be empty)
EXAMPLES = int(os.environ.get("EVAULT_FSCK_STATE_EXAMPLES", "15"))


def _pick(items: list[Any], i: int) -> Any:
    return items[i % len(items)] if items else None


async def _ids(env: Env, sql: str) -> list[Any]:
    return [r[0] for r in await env.db.pool.fetch(sql)]


async def _operate(env: Env, op: str, i: int, j: int) -> None:
    """One legitimate operation; refusals (Conflict, NotFound…) are part of legitimate use."""
    pool, ledger, n = env.db.pool, env.ledger, next(_counter)
    ev = await _ids(env, "SELECT id::text FROM evidence ORDER BY id")
    ps = await _ids(env, "SELECT id FROM principals ORDER BY id")
    cs = await _ids(env, "SELECT id FROM cases ORDER BY id")
    toks = await _ids(env, "SELECT id FROM tokens ORDER BY id")
    holds = await _ids(env, "SELECT id FROM legal_holds ORDER BY id")
    label = Label(Level(i % 5), frozenset({Caveat.PERSONAL_PRIVACY}) if j % 2 else frozenset())
    try:
        if op == "acquire" or (not ev and op in ("rendition", "link", "unlink", "label-evidence")):
            await acquire(env, 1)
        elif op == "rendition":
            await add_rendition(env, _pick(ev, i), ("poster", "proxy", "clip")[j % 3])
        elif op == "principal" or not ps:
            await principal(env, f"p{n}", officer=f"O{n}" if i % 2 else None)
        elif op in ("assign", "unassign"):
            if op == "assign":  # forced: any principal, whatever the case's label
                await principals.assign(pool, ledger, ADMIN, _pick(ps, i), f"K{j % 4}", force=True)
            else:
                await principals.unassign(pool, ledger, ADMIN, _pick(ps, i), f"K{j % 4}")
        elif op in ("disable", "enable"):
            f = principals.disable if op == "disable" else principals.enable
            await f(pool, ledger, ADMIN, _pick(ps, i))
        elif op == "token":
            await tokens.create(pool, ledger, ADMIN, _pick(ps, i), timedelta(hours=1 + j))
        elif op == "revoke" and toks:
            await tokens.revoke(pool, ledger, ADMIN, _pick(toks, i))
        elif op == "case" or not cs:
            await cases.create(pool, ledger, ADMIN, f"K{n % 6}", f"title {n}", label)
        elif op == "retitle":
            await cases.retitle(pool, ledger, ADMIN, _pick(cs, i), f"title {n}")
        elif op in ("link", "unlink"):
            f = cases.link if op == "link" else cases.unlink
            await f(pool, ledger, ADMIN, _pick(cs, j), _pick(ev, i))
        elif op == "label-evidence":
            await cases.set_label(pool, ledger, ADMIN, "evidence", _pick(ev, j), label)
        elif op == "label-case":
            await cases.set_label(pool, ledger, ADMIN, "case", _pick(cs, j), label)
        elif op == "category" and ev:
            cat = ("ordinary", "important")[j % 2]
            await disposition.set_category(pool, ledger, ADMIN, _pick(ev, i), cat)
        elif op == "hold":
            where = {"case_id": _pick(cs, i)} if j % 2 or not ev else {"evidence_id": _pick(ev, i)}
            await disposition.place_hold(pool, ledger, ADMIN, reason=f"r{n}", **where)
        elif op == "release" and holds:
            await disposition.release_hold(pool, ledger, ADMIN, _pick(holds, i))
    except (EvaultError, asyncpg.UniqueViolationError):
        pass  # refused, or (a second poster or proxy) rolled back with its entry


async def _edit_and_check(dsn: str, table: str, column: str, pick: int) -> None:
    keys = TABLE_KEYS[table]
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT {', '.join(k + '::text' for k in keys)} FROM {table} ORDER BY 1, {len(keys)}"
        )
        if not rows:
            return
        EDITED.append((table, column))
        key = dict(zip(keys, rows[pick % len(rows)], strict=True))
        where = " AND ".join(f"{k}::text = ${n}" for n, k in enumerate(keys, 1))
        tr = conn.transaction()
        await tr.start()
        try:
            await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
            if column == "*":
                await conn.execute(f"DELETE FROM {table} WHERE {where}", *key.values())
            else:
                assignment = _EXTRA_SET.get((table, column)) or (
                    f"{column} = {EDITS[table][column]}"
                )
                await conn.execute(
                    f"UPDATE {table} SET {assignment} WHERE {where}",
                    *key.values(),
                )
            report = await fsck_state(conn)
            assert named(report, table, key, column), (
                f"edit of {table} {key} {column} not named: {[f.line() for f in report.findings]}"
            )
        finally:
            await tr.rollback()
    finally:
        await conn.close()


async def _example(dsn: str, tmp: Path, ops: list[tuple[str, int, int]], edit: Any) -> None:
    async with open_acquirer(dsn, tmp, [dock(tmp)]) as env:
        for op, i, j in ops:
            await _operate(env, op, i, j)
        async with env.db.pool.acquire() as conn:
            clean = await fsck_state(conn)
        assert clean.findings == [], [f.line() for f in clean.findings]
    table, column, pick = edit
    await _edit_and_check(dsn, table, column, pick)


_COLUMNS = [(t, c) for t, cols in EDITS.items() for c in cols] + [
    *_EXTRA_SET,
    *((t, "*") for t in TABLE_KEYS),
]
EDIT = st.tuples(st.sampled_from(_COLUMNS), st.integers(0, 1000)).map(
    lambda x: (x[0][0], x[0][1], x[1])
)


def test_property_any_edit_of_any_bound_row_is_named(pg_dsn: str, tmp_path: Path) -> None:
    tmp = tmp_path / f"v{os.getpid()}"
    tmp.mkdir()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(ops=OPS, edit=EDIT)
    def prop(ops: list[tuple[str, int, int]], edit: tuple[str, str, int]) -> None:
        asyncio.run(_example(pg_dsn, tmp, ops, edit))

    EDITED.clear()
    prop()
    assert len(EDITED) >= EXAMPLES // 3, f"too few edits were possible: {EDITED}"
