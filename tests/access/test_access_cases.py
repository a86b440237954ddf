"""Cases, link history, labels and principals: rules, ledger entries and commitments."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.access.access_fixtures import (
    ADMIN,
    add_evidence,
    add_rendition,
    entries,
    open_vault,
    person,
)
from vault.access import principals, targets
from vault.cases import links as cases
from vault.errors import BadRequest, Conflict, Forbidden, NotFound
from vault.policy.decide import Role
from vault.policy.labels import Caveat, Label, Level

CASE = "京市监罚〔2025〕42号"
TITLE = "Smith trading co. — unlicensed sale"
SECRET = Label(Level.SECRET)
CONF = Label(Level.CONFIDENTIAL)


async def test_links_history_and_commitments(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        eid = await add_evidence(ledger)
        await cases.create(pool, ledger, ADMIN, CASE, TITLE, CONF)
        with pytest.raises(Conflict):
            await cases.create(pool, ledger, ADMIN, CASE, TITLE, CONF)
        await cases.link(pool, ledger, ADMIN, CASE, eid)
        with pytest.raises(Conflict):
            await cases.link(pool, ledger, ADMIN, CASE, eid)
        await cases.unlink(pool, ledger, ADMIN, CASE, eid)
        with pytest.raises(Conflict):
            await cases.unlink(pool, ledger, ADMIN, CASE, eid)
        await cases.link(pool, ledger, ADMIN, CASE, eid)
        history = await pool.fetch(
            "SELECT action FROM case_evidence_history WHERE evidence_id = $1::uuid"
            " ORDER BY ledger_idx",
            eid,
        )
        assert [r["action"] for r in history] == ["linked", "unlinked", "linked"]
        detail = await cases.show(pool, ledger, ADMIN, CASE)
        assert detail.title == TITLE and detail.evidence_count == 1
        assert detail.evidence[0].label == CONF  # raised by the case
        kinds = [e["kind"] for e in await entries(db)]
        assert kinds.count("linked") == 2 and kinds.count("unlinked") == 1
        raw = b"".join(
            bytes(r["data"]) for r in await pool.fetch("SELECT data FROM ledger_entries")
        )
        for secret in (CASE, TITLE, "admin"):
            assert secret.encode() not in raw
        assert eid.encode() in raw  # evidence ids and hashes are public
        await cases.retitle(pool, ledger, ADMIN, CASE, "new title")
        assert (await cases.show(pool, ledger, ADMIN, CASE)).title == "new title"
        with pytest.raises(BadRequest):
            await cases.create(pool, ledger, ADMIN, "", TITLE, CONF)
        with pytest.raises(Forbidden):  # may not create a case above one's own clearance
            low = person("low", {Role.CASE_SYSTEM}, Level.INTERNAL, ())
            await cases.create(pool, ledger, low, "K9", TITLE, CONF)
        viewer = person("rv", {Role.REVIEWER}, cases={CASE})
        with pytest.raises(Forbidden):  # a reviewer may see but not unlink
            await cases.unlink(pool, ledger, viewer, CASE, eid)
        with pytest.raises(NotFound):  # and what is outside its cases does not exist for it
            await cases.link(pool, ledger, viewer, CASE, await add_evidence(ledger))


async def test_labels(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        eid = await add_evidence(ledger, label=CONF)
        low_rendition = await add_rendition(ledger, eid, Label(Level.INTERNAL), "poster")
        await cases.create(pool, ledger, ADMIN, "K1", "t", Label(Level.INTERNAL))
        await cases.link(pool, ledger, ADMIN, "K1", eid)
        legal = person("lr", {Role.LEGAL_REVIEWER}, Level.SECRET, (), cases={"K1"})
        reviewer = person("rv", {Role.REVIEWER}, Level.SECRET, (), cases={"K1"})
        outsider = person("lr2", {Role.LEGAL_REVIEWER}, Level.SECRET, (), cases={"K2"})
        with pytest.raises(Forbidden):  # visible, but no role that may label
            await cases.set_label(pool, ledger, reviewer, "evidence", eid, SECRET)
        with pytest.raises(NotFound):  # not assigned: as if it did not exist
            await cases.set_label(pool, ledger, outsider, "evidence", eid, SECRET)
        with pytest.raises(Forbidden):  # above the labeller's own clearance
            await cases.set_label(pool, ledger, legal, "evidence", eid, Label(Level.TOP_SECRET))
        with pytest.raises(BadRequest):
            await cases.set_label(pool, ledger, ADMIN, "ledger", eid, SECRET)
        # raising the evidence raises its renditions in the same transaction
        assert await cases.set_label(pool, ledger, legal, "evidence", eid, SECRET) == SECRET
        r = await targets.rendition_target(pool, low_rendition, mac=ledger.mac)
        assert r is not None and r.label == SECRET
        stored = await pool.fetchval(
            "SELECT label_level FROM renditions WHERE id = $1::uuid", low_rendition
        )
        assert stored == Level.SECRET
        # a rendition is never labelled below its source
        privacy = Label(Level.INTERNAL, frozenset({Caveat.PERSONAL_PRIVACY}))
        got = await cases.set_label(pool, ledger, ADMIN, "rendition", low_rendition, privacy)
        assert got == Label(Level.SECRET, frozenset({Caveat.PERSONAL_PRIVACY}))
        # the case label raises evidence read through it
        await cases.set_label(pool, ledger, ADMIN, "case", "K1", Label(Level.TOP_SECRET))
        t = await targets.evidence_target(pool, eid, mac=ledger.mac)
        assert t is not None and t.label.level == Level.TOP_SECRET
        labelled = await entries(db, "labelled")
        assert [e["target_kind"] for e in labelled] == ["evidence", "rendition", "case", "evidence"]
        # the case's label moved the evidence's effective label: an entry of its own
        moved = labelled[3]
        assert moved["effective"] is True and moved["cause"] == "case-labelled"
        assert moved["evidence"] == eid and moved["label"] == Label(Level.TOP_SECRET).to_json()
        assert moved["previous"] == SECRET.to_json()
        assert (
            labelled[0]["previous"] == CONF.to_json() and labelled[0]["label"] == SECRET.to_json()
        )
        rows = await pool.fetch("SELECT target_kind FROM label_history ORDER BY ledger_idx")
        assert [r["target_kind"] for r in rows] == [
            "case",
            "evidence",
            "rendition",
            "rendition",
            "case",
        ]
        denied = await entries(db, "denied")
        assert [e["action"] for e in denied] == ["label", "label"]


@dataclass(frozen=True)
class Seed:
    id: str
    roles: tuple[str, ...] = ("admin",)
    clearance: str = "secret"
    caveats: tuple[str, ...] = field(default=("personal_privacy",))


async def test_principals(pg_dsn: str, tmp_path: Path) -> None:
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        assert await principals.seed(pool, ledger, [Seed("root")]) == ["root"]
        assert await principals.seed(pool, ledger, [Seed("root", clearance="public")]) == []
        root = await principals.load(pool, "root")
        assert root.clearance == Level.SECRET and root.roles == {Role.ADMIN}
        spec = principals.PrincipalSpec(
            "bob", frozenset({Role.OFFICER}), Level.INTERNAL, officer_id="o7"
        )
        await principals.add(pool, ledger, root, spec)
        with pytest.raises(Conflict):
            await principals.add(pool, ledger, root, spec)
        with pytest.raises(Forbidden):  # cannot grant more than it holds
            await principals.add(
                pool, ledger, root, principals.PrincipalSpec("eve", frozenset(), Level.TOP_SECRET)
            )
        bob = await principals.load(pool, "bob")
        with pytest.raises(Forbidden):
            await principals.add(
                pool, ledger, bob, principals.PrincipalSpec("x", frozenset(), Level.PUBLIC)
            )
        with pytest.raises(BadRequest):
            await principals.add(
                pool, ledger, root, principals.PrincipalSpec("a b", frozenset(), Level.PUBLIC)
            )
        with pytest.raises(BadRequest):
            principals.parse_roles(["wizard"])
        await principals.assign(pool, ledger, root, "bob", "K1")
        assert (await principals.load(pool, "bob")).cases == {"K1"}
        await principals.unassign(pool, ledger, root, "bob", "K1")
        await principals.disable(pool, ledger, root, "bob")
        assert not (await principals.load(pool, "bob")).active
        with pytest.raises(Conflict):
            await principals.disable(pool, ledger, root, "root")
        with pytest.raises(NotFound):
            await principals.load(pool, "nobody")
        listed = await principals.list_principals(pool, ledger, root)
        assert [(r.principal.id, r.principal.active) for r in listed] == [
            ("bob", False),
            ("root", True),
        ]
        ops = [e["op"] for e in await entries(db, "principal")]
        assert ops == ["added", "added", "assigned", "unassigned", "disabled"]
        assert [e["action"] for e in await entries(db, "denied")] == ["administer"]
