"""Every label change is a ledger entry: the effective label a link, an unlink or a case's new
label moves is recorded for the evidence, in its trail and in its custody timeline."""

from __future__ import annotations

from pathlib import Path

from tests.review.review_fixtures import ADMIN, add_evidence, open_vault
from vault.access import trails
from vault.cases import links as cases
from vault.policy.labels import Label, Level
from vault.review.integrity_report import integrity_report
from vault.storage.blobstore import BlobStore
from vault.storage.content import PlainContentStore

INTERNAL, CONFIDENTIAL, SECRET = (
    Label(lv) for lv in (Level.INTERNAL, Level.CONFIDENTIAL, Level.SECRET)
)


def moves(entries: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [
        (e["cause"], e["previous"], e["label"])
        for e in entries
        if e.get("effective") is True and e.get("target_kind") == "evidence"
    ]


async def test_attack_label_change_without_entry_is_recorded(pg_dsn: str, tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "vault")
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "C", "t", CONFIDENTIAL)
        await cases.create(pool, ledger, ADMIN, "D", "t", INTERNAL)
        eid = await add_evidence(ledger, store, data=b"recording")  # acquired internal
        await cases.link(pool, ledger, ADMIN, "D", eid)  # no change: no label entry
        await cases.link(pool, ledger, ADMIN, "C", eid)  # internal -> confidential
        await cases.set_label(pool, ledger, ADMIN, "case", "C", SECRET)  # -> secret
        await cases.unlink(pool, ledger, ADMIN, "C", eid)  # -> internal again
        expected = [
            ("linked", INTERNAL.to_json(), CONFIDENTIAL.to_json()),
            ("case-labelled", CONFIDENTIAL.to_json(), SECRET.to_json()),
            ("unlinked", SECRET.to_json(), INTERNAL.to_json()),
        ]
        # the trail `evault audit --evidence` prints
        trail = await trails.trail(pool, ledger, ADMIN, evidence=eid)
        assert moves([{"kind": e.kind, **e.fields} for e in trail if e.kind == "labelled"]) == (
            expected
        )
        assert all(e.opened.get("by") == "admin" for e in trail if e.kind == "labelled")
        # the custody timeline of the integrity report (and the console, which renders it)
        await cases.link(pool, ledger, ADMIN, "C", eid)  # the report is about case C
        report = (await integrity_report(ledger, PlainContentStore(store), ADMIN, "C")).report
        (item,) = report["evidence"]
        labelled = [t["fields"] for t in item["timeline"] if t["kind"] == "labelled"]
        assert moves(labelled) == [*expected, ("linked", INTERNAL.to_json(), SECRET.to_json())]
