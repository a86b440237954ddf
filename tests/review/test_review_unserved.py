"""An entry committed though its request was answered with an error travels with its
``unserved`` entry: the integrity report's custody timeline lists it right after the entry it
names, a case package carries both, and evault-verify accepts the package and says so."""

from __future__ import annotations

from pathlib import Path

from tests.review.review_fixtures import ADMIN, add_evidence, open_vault, person
from vault.access import targets
from vault.cases import links as cases
from vault.ledger.indoubt import InDoubt
from vault.policy.decide import Action, Role
from vault.policy.labels import Label, Level
from vault.review.export import export_case
from vault.review.integrity_report import integrity_report
from vault.storage.blobstore import BlobStore
from vault.storage.content import PlainContentStore
from verify import package as pkg
from verify.merkle import leaf_hash
from verify.package_checks import verify_package


async def test_timeline_and_package_carry_the_unserved_entry(pg_dsn: str, tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "vault")
    content = PlainContentStore(store)
    async with open_vault(pg_dsn, tmp_path) as (ledger, db):
        pool = db.pool
        await cases.create(pool, ledger, ADMIN, "C1", "案", Label(Level.INTERNAL))
        eid = await add_evidence(ledger, store, data=b"a recording")
        await cases.link(pool, ledger, ADMIN, "C1", eid)
        reviewer = person("lr", [Role.LEGAL_REVIEWER], Level.INTERNAL, cases=["C1"])
        await targets.authorize(pool, ledger, reviewer, Action.STREAM, "evidence", eid)
        row = await pool.fetchrow(
            "SELECT idx, data FROM ledger_entries WHERE kind = 'accessed' ORDER BY idx DESC"
        )
        # What a lost COMMIT answer leaves: the entry committed, its doubt recorded.
        ledger.doubts.record([InDoubt(row["idx"], leaf_hash(bytes(row["data"])), "accessed")])
        assert await ledger.resolver.resolve_pending() == 1
        unserved = await pool.fetchval("SELECT idx FROM ledger_entries WHERE kind = 'unserved'")

        report = (await integrity_report(ledger, content, reviewer, "C1")).report
        timeline = report["evidence"][0]["timeline"]
        indexes = [t["index"] for t in timeline]
        at = indexes.index(row["idx"])
        assert indexes[at + 1] == unserved and timeline[at + 1]["kind"] == "unserved"
        assert timeline[at + 1]["fields"]["entry"] == row["idx"]

        out = tmp_path / "pkg"
        await export_case(ledger, content, reviewer, "C1", out)
        verifier = ledger.verifier
    manifest = pkg.parse_manifest((out / pkg.MANIFEST_PATH).read_bytes())
    assert {row["idx"], unserved} <= set(manifest.entries)
    result = verify_package(out, verifier)
    assert result.verdict == "ok", result.findings
    notes = [f for f in result.findings if f.code == "unserved"]
    assert [n.where for n in notes] == [pkg.entry_path(row["idx"])]
    assert next(e for e in result.entries if e.index == row["idx"]).unserved_by == unserved
