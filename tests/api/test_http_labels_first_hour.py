"""Labels and clearance that explain themselves, playback sessions and the log's entry count,
over real HTTP against a running `evault serve` and the real `evault` CLI beside it.

- A link that raises an item's label says so (API ``label_raised``, CLI line) and the ledger
  holds a ``labelled`` entry for it.
- Assigning a case to a principal not cleared for its label is refused naming the gap;
  ``--force`` assigns and warns. A denied read answers "Not found" while its ledger entry
  records the real reason.
- The Range requests of one playback are one ``accessed`` entry; each is still decided.
- ``evault_ledger_entries_total`` is the log's size, appends by other processes included.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from tests.api.http_fixtures import World, seeded_service

INTERNAL = {"level": "internal", "caveats": []}
SECRET = {"level": "secret", "caveats": []}


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("labels")
    with seeded_service(pg_admin_dsn, tmp / "data") as w:
        for name in ("api-raise.mp4", "cli-raise.mp4", "hidden.mp4", "played.mp4", "moved.mp4"):
            data = os.urandom(64_000)
            r = w.upload("dock1", name, data)
            assert r.status == 201, r.body
            w.evidence[name] = r.json()
            w.content[name] = data
        yield w


def eid(w: World, name: str) -> str:
    return str(w.evidence[name]["evidence_id"])


async def _rows(w: World, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(w.svc.env["EVAULT_DATABASE_DSN"])
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def entries(w: World, evidence_id: str, kind: str) -> list[dict[str, Any]]:
    """The ledger entries of ``kind`` indexed under the evidence item, oldest first."""
    found = asyncio.run(
        _rows(
            w,
            "SELECT e.data FROM ledger_entries e JOIN ledger_refs r ON r.ledger_idx = e.idx"
            " WHERE r.ref_kind = 'evidence' AND r.ref_id = $1 AND e.kind = $2 ORDER BY e.idx",
            evidence_id,
            kind,
        )
    )
    return [json.loads(bytes(r["data"])) for r in found]


def link(w: World, case: str, evidence_id: str) -> dict[str, Any]:
    body = json.dumps({"evidence_id": evidence_id}).encode()
    r = w.call("POST", f"/v1/cases/{case}/evidence", who="admin", body=body)
    assert r.status == 201, r.body
    out: dict[str, Any] = r.json()
    return out


# -- a link that raises the label says so ---------------------------------------------------


def test_api_link_that_raises_the_label_says_so(world: World) -> None:
    w = world
    item = eid(w, "api-raise.mp4")
    assert link(w, "C1", item)["label_raised"] is None  # internal into internal: no change
    assert w.call("GET", f"/v1/evidence/{item}", who="reviewer").status == 200
    got = link(w, "CS", item)
    assert got["label_raised"] == {"from": INTERNAL, "to": SECRET}
    # the reviewer (internal, assigned to both cases) lost it, in C1 too
    assert w.call("GET", f"/v1/evidence/{item}", who="reviewer").status == 404
    listed = w.call("GET", "/v1/evidence", who="reviewer", params={"case": "C1"}).json()
    assert item not in {i["id"] for i in listed["items"]}
    # the ledger records the change beside the link
    (raised,) = [e for e in entries(w, item, "labelled") if e.get("cause") == "linked"]
    assert raised["effective"] is True
    assert raised["previous"] == INTERNAL and raised["label"] == SECRET
    # and the served OpenAPI document describes the field
    doc = w.call("GET", "/openapi.json").json()
    props = doc["components"]["schemas"]["LinkResult"]["properties"]
    assert "label_raised" in props


def test_cli_link_that_raises_the_label_says_so(world: World) -> None:
    w = world
    item = eid(w, "cli-raise.mp4")
    out = w.svc.evault("case", "link", "C1", item).stdout
    assert "label raised" not in out
    out = w.svc.evault("case", "link", "CS", item).stdout
    (line,) = [ln for ln in out.splitlines() if ln.startswith("label raised")]
    assert "from internal to secret" in line and "no longer see" in line, out
    assert any(e.get("cause") == "linked" for e in entries(w, item, "labelled"))


# -- clearance below the case's label ------------------------------------------------------


def test_attack_assigning_an_uncleared_reviewer_is_refused_naming_the_gap(world: World) -> None:
    w = world
    w.svc.evault("principal", "add", "r1", "--role", "reviewer")
    w.svc.evault("case", "add", "KP", "--title", "t", "--label", "secret+personal_privacy")
    refused = w.svc.evault("principal", "assign", "r1", "KP", check=False)
    assert refused.returncode != 0
    assert "reviewer r1 is cleared for internal; case KP is secret+personal_privacy" in (
        refused.stderr
    ), refused.stderr
    assert "--clearance secret --caveat personal_privacy" in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    forced = w.svc.evault("principal", "assign", "r1", "KP", "--force")
    assert forced.stdout.strip() == "assigned r1 to KP"
    assert forced.stderr.startswith("warning: forced: reviewer r1 is cleared for internal")
    quiet = w.svc.evault("principal", "assign", "r1", "C1")  # cleared for it: no warning
    assert quiet.stderr == ""
    listed = w.svc.evault("principal", "list").stdout
    (row,) = [ln for ln in listed.splitlines() if ln.startswith("r1\t")]
    assert "cases=C1,KP" in row


def test_denied_entry_records_the_real_reason_and_the_caller_sees_not_found(
    world: World,
) -> None:
    w = world
    item = eid(w, "hidden.mp4")
    link(w, "CS", item)  # secret now; the reviewer is assigned to CS but cleared for internal
    r = w.call("GET", f"/v1/evidence/{item}", who="reviewer")
    assert r.status == 404 and r.problem()["detail"] == "Not found: no such evidence"
    nowhere = w.call("GET", "/v1/evidence/00000000-0000-4000-8000-000000000000", who="reviewer")
    assert nowhere.problem() == r.problem()  # the caller cannot tell them apart
    (denied,) = entries(w, item, "denied")
    assert denied["reason"] == "clearance internal below label secret"
    assert denied["action"] == "read_metadata"


# -- one access per playback session --------------------------------------------------------


def _play(w: World, name: str, who: str, start: int) -> int:
    item = eid(w, name)
    r = w.call(
        "GET",
        f"/v1/evidence/{item}/content",
        who=who,
        headers={"Range": f"bytes={start}-{start + 999}"},
    )
    if r.status == 206:
        assert r.body == w.content[name][start : start + 1000]
    return r.status


def test_range_requests_of_one_playback_are_one_access(world: World) -> None:
    w = world
    item = eid(w, "played.mp4")
    link(w, "C1", item)
    statuses = [_play(w, "played.mp4", "reviewer", 1000 * i) for i in range(12)]
    assert statuses == [206] * 12
    streams = [e for e in entries(w, item, "accessed") if e["action"] == "stream"]
    assert len(streams) == 1, streams
    assert streams[0]["session_seconds"] == 300
    # another principal's playback is its own session
    assert _play(w, "played.mp4", "legal", 0) == 206
    streams = [e for e in entries(w, item, "accessed") if e["action"] == "stream"]
    assert len(streams) == 2
    # downloads are never folded: one entry each
    for _ in range(2):
        r = w.call("GET", f"/v1/evidence/{item}/content", who="legal", params={"download": "true"})
        assert r.status == 200
    downloads = [e for e in entries(w, item, "accessed") if e["action"] == "download"]
    assert len(downloads) == 2


def test_attack_a_session_does_not_outlive_the_access_it_was_opened_with(world: World) -> None:
    w = world
    item = eid(w, "moved.mp4")
    link(w, "C1", item)
    w.svc.evault("principal", "add", "viewer", "--role", "reviewer")
    w.svc.evault("principal", "assign", "viewer", "C1")
    made = w.svc.evault("token", "create", "viewer")
    w.tokens["viewer"] = made.stdout.strip()
    token_id = re.search(r"token id (tok_[0-9a-f]+)", made.stderr)
    assert token_id is not None, made.stderr
    assert [_play(w, "moved.mp4", "viewer", 1000 * i) for i in range(3)] == [206] * 3
    # the item's label goes up mid-playback: the very next request is refused and recorded
    link(w, "CS", item)
    assert _play(w, "moved.mp4", "viewer", 3000) == 404
    denied = [e for e in entries(w, item, "denied") if e["action"] == "stream"]
    assert [d["reason"] for d in denied] == ["clearance internal below label secret"]
    # a revoked token is refused at once too (another item, a fresh session)
    other = eid(w, "played.mp4")
    assert w.call("GET", f"/v1/evidence/{other}/content", who="viewer").status == 200
    w.svc.evault("token", "revoke", token_id[1])
    assert w.call("GET", f"/v1/evidence/{other}/content", who="viewer").status == 401


# -- the log's entry count -------------------------------------------------------------------


def _entries_total(w: World) -> float:
    text = w.call("GET", "/metrics").body.decode()
    m = re.search(r"^evault_ledger_entries_total (\S+)$", text, re.M)
    assert m is not None, "evault_ledger_entries_total is not exported"
    return float(m[1])


def _log_size(w: World) -> int:
    (row,) = asyncio.run(_rows(w, "SELECT size FROM ledger_state"))
    return int(row["size"])


def test_ledger_entries_total_counts_the_log_not_this_process(world: World) -> None:
    w = world
    before = _entries_total(w)
    assert before == _log_size(w)  # seeded mostly from the test process, not the service
    w.svc.evault("principal", "add", "counted", "--role", "reviewer")  # another process
    after = _entries_total(w)
    assert after == _log_size(w) and after == before + 1
