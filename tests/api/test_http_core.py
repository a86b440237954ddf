"""The case-system and reviewer routes over real HTTP, with every role, denials and no-leak."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from api.config import load
from api.runtime import open_runtime
from tests.api.http_fixtures import World, make_video, seeded_service
from vault.access import principals, tokens
from verify.checkpoint import open_checkpoint
from verify.note import parse_vkey


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("core")
    with seeded_service(pg_admin_dsn, tmp / "data") as w:
        plain = os.urandom(300_000)
        secret = os.urandom(5000)
        own = os.urandom(1234)
        video = make_video(tmp / "v.mp4")
        sidecar = base64.b64encode(json.dumps({"officer_id": "OFF1"}).encode()).decode()
        for name, data, extra in [
            ("plain.mp4", plain, {}),
            ("secret.mp4", secret, {}),
            ("own.mp4", own, {"X-Evault-Sidecar": sidecar}),
            ("video.mp4", video, {}),
        ]:
            r = w.upload("dock1", name, data, **extra)
            assert r.status == 201, r.body
            w.evidence[name] = r.json()
            w.content[name] = data
        for case, name, who in [
            ("C1", "plain.mp4", "casesys"),
            ("C1", "video.mp4", "casesys"),
            ("CS", "secret.mp4", "admin"),
        ]:
            body = json.dumps({"evidence_id": w.evidence[name]["evidence_id"]}).encode()
            r = w.call("POST", f"/v1/cases/{case}/evidence", who=who, body=body)
            assert r.status == 201, r.body
        yield w


def eid(w: World, name: str) -> str:
    return str(w.evidence[name]["evidence_id"])


def ids(items: list[dict[str, object]]) -> set[str]:
    return {str(i["id"]) for i in items}


# -- listing and metadata ----------------------------------------------------------------


def test_list_is_filtered_per_role(world: World) -> None:
    w = world
    everything = {eid(w, n) for n in ("plain.mp4", "secret.mp4", "own.mp4", "video.mp4")}
    expect = {
        "casesys": everything - {eid(w, "secret.mp4")},  # confidential < secret
        "auditor": everything,
        "admin": everything,
        "legal": {eid(w, "plain.mp4"), eid(w, "video.mp4"), eid(w, "secret.mp4")},
        "reviewer": {eid(w, "plain.mp4"), eid(w, "video.mp4")},
        "officer": {eid(w, "plain.mp4"), eid(w, "video.mp4"), eid(w, "own.mp4")},
        "dock1": set(),
    }
    for who, want in expect.items():
        r = w.call("GET", "/v1/evidence", who=who)
        assert r.status == 200, (who, r.body)
        assert ids(r.json()["items"]) == want, who


def test_list_filters_and_keyset_pages(world: World) -> None:
    w = world
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        page = w.call("GET", "/v1/evidence", who="auditor", params=params).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 4
    c1 = w.call("GET", "/v1/evidence", who="auditor", params={"case": "C1"}).json()
    assert ids(c1["items"]) == {eid(w, "plain.mp4"), eid(w, "video.mp4")}
    # Filtering by a case the caller may not see is like an unknown case: empty.
    for case in ("CS", "NOPE"):
        r = w.call("GET", "/v1/evidence", who="reviewer", params={"case": case})
        assert r.json() == {"items": [], "next_cursor": None}
    by_officer = w.call("GET", "/v1/evidence", who="auditor", params={"officer": "OFF1"}).json()
    assert ids(by_officer["items"]) == {eid(w, "own.mp4")}
    secret = w.call("GET", "/v1/evidence", who="auditor", params={"level": "secret"}).json()
    assert ids(secret["items"]) == {eid(w, "secret.mp4")}
    future = w.call(
        "GET", "/v1/evidence", who="auditor", params={"acquired_from": "2999-01-01T00:00:00Z"}
    )
    assert future.json()["items"] == []
    for bad in ({"limit": "0"}, {"limit": "x"}, {"cursor": "!!"}, {"level": "x"},
                {"acquired_to": "yesterday"}, {"caveat": "nope"}):  # fmt: skip
        r = w.call("GET", "/v1/evidence", who="auditor", params=bad)
        assert r.status == 400, bad
        assert r.problem()["status"] == 400


def test_one_item_with_renditions_and_media_status(world: World) -> None:
    w = world
    r = w.call("GET", f"/v1/evidence/{eid(w, 'video.mp4')}", who="casesys")
    assert r.status == 200
    body = r.json()
    assert body["sha256"] == hashlib.sha256(w.content["video.mp4"]).hexdigest()
    assert (
        body["cases"] == ["C1"] and body["ledger_index"] == w.evidence["video.mp4"]["ledger_index"]
    )
    assert body["media_status"] in ("pending", "ready", "processing", "unprocessable")
    assert isinstance(body["renditions"], list)


def test_no_leak_invisible_is_nonexistent(world: World) -> None:
    """Above clearance (CS-linked evidence, case CS) answers exactly like a random id."""
    w = world
    hidden, absent = eid(w, "secret.mp4"), str(uuid.uuid4())
    for who in ("reviewer", "officer", "casesys"):
        for tmpl in ("/v1/evidence/{}", "/v1/evidence/{}/content", "/v1/evidence/{}/proof"):
            a = w.call("GET", tmpl.format(hidden), who=who)
            b = w.call("GET", tmpl.format(absent), who=who)
            assert a.status == b.status == 404, (who, tmpl)
            assert a.problem() == b.problem(), (who, tmpl)
        clip = json.dumps({"start_ms": 0, "end_ms": 10}).encode()
        a = w.call("POST", f"/v1/evidence/{hidden}/clips", who=who, body=clip)
        b = w.call("POST", f"/v1/evidence/{absent}/clips", who=who, body=clip)
        assert (a.status, a.problem()) == (b.status, b.problem()) == (404, b.problem())
        a = w.call("GET", "/v1/cases/CS", who=who)
        b = w.call("GET", "/v1/cases/NOPE", who=who)
        assert (a.status, a.problem()) == (b.status, b.problem())
        cases = w.call("GET", "/v1/cases", who=who).json()["items"]
        assert "CS" not in {c["id"] for c in cases}
    # verify: a held-but-invisible hash is reported exactly like an unknown one
    held = hashlib.sha256(w.content["secret.mp4"]).hexdigest()
    a = w.call("POST", "/v1/verify", who="reviewer", params={"sha256": held}).json()
    b = w.call("POST", "/v1/verify", who="reviewer", params={"sha256": "0" * 64}).json()
    assert a["held"] is b["held"] is False and a["matches"] == b["matches"] == []
    a = w.call("POST", "/v1/verify", who="reviewer", body=w.content["secret.mp4"]).json()
    assert a["held"] is False and a["sha256"] == held


def test_case_routes_per_role(world: World) -> None:
    w = world
    body = json.dumps({"title": "Case two"}).encode()
    # no role of the reviewer may link: 403 before the id is even looked up
    assert w.call("PUT", "/v1/cases/C2", who="reviewer", body=body).status == 403
    r = w.call("PUT", "/v1/cases/C2", who="casesys", body=body)
    assert r.status == 201 and r.json()["label"] == {"level": "internal", "caveats": []}
    r = w.call("PUT", "/v1/cases/C2", who="casesys", body=body)
    assert r.status == 200 and r.json()["title"] == "Case two"
    retitle = json.dumps({"title": "Case 2"}).encode()
    assert w.call("PUT", "/v1/cases/C2", who="casesys", body=retitle).json()["title"] == "Case 2"
    relabel = json.dumps({"title": "Case 2", "label": {"level": "confidential", "caveats": []}})
    r = w.call("PUT", "/v1/cases/C2", who="casesys", body=relabel.encode())
    assert r.status == 403  # case_system may link, not label
    r = w.call("PUT", "/v1/cases/C2", who="admin", body=relabel.encode())
    assert r.status == 200 and r.json()["label"]["level"] == "confidential"
    link = json.dumps({"evidence_id": eid(w, "own.mp4")}).encode()
    assert w.call("POST", "/v1/cases/C2/evidence", who="reviewer", body=link).status == 404
    r = w.call("POST", "/v1/cases/C2/evidence", who="casesys", body=link)
    assert r.status == 201 and r.json()["linked"] is True
    assert w.call("POST", "/v1/cases/C2/evidence", who="casesys", body=link).status == 409
    detail = w.call("GET", "/v1/cases/C2", who="casesys").json()
    assert detail["evidence_count"] == 1 and detail["evidence"][0]["id"] == eid(w, "own.mp4")
    path = f"/v1/cases/C2/evidence/{eid(w, 'own.mp4')}"
    assert w.call("DELETE", path, who="officer").status == 404
    r = w.call("DELETE", path, who="casesys")
    assert r.status == 200 and r.json()["linked"] is False
    assert w.call("DELETE", path, who="casesys").status == 409
    assert w.call("GET", "/v1/cases/C2", who="casesys").json()["evidence_count"] == 0
    assert {c["id"] for c in w.call("GET", "/v1/cases", who="legal").json()["items"]} == {
        "C1",
        "CS",
    }
    for bad in (
        b"",
        b"[]",
        b'{"title": 5}',
        b'{"title": "t", "label": "secret+"}',
        b'{"title": "t", "label": null}',  # not in the schema: no silent default
        b'{"title": "t", "label": "secret+personal_privacy+personal_privacy"}',
    ):
        assert w.call("PUT", "/v1/cases/C3", who="casesys", body=bad).status == 400, bad


def test_case_label_as_short_form_or_object(world: World) -> None:
    """One label syntax: the CLI's ``secret+personal_privacy`` and the object both work."""
    w = world
    secret_pp = {"level": "secret", "caveats": ["personal_privacy"]}
    body = json.dumps({"title": "t", "label": "secret+personal_privacy"}).encode()
    r = w.call("PUT", "/v1/cases/LBL1", who="admin", body=body)
    assert r.status == 201 and r.json()["label"] == secret_pp
    body = json.dumps({"title": "t", "label": secret_pp}).encode()
    r = w.call("PUT", "/v1/cases/LBL2", who="admin", body=body)
    assert r.status == 201 and r.json()["label"] == secret_pp
    # the same label in the other form changes nothing; a raise in the short form does
    same = json.dumps({"title": "t", "label": "secret+personal_privacy"}).encode()
    r = w.call("PUT", "/v1/cases/LBL2", who="admin", body=same)
    assert r.status == 200 and r.json()["label"] == secret_pp
    body = json.dumps({"title": "t", "label": "top_secret+personal_privacy"}).encode()
    r = w.call("PUT", "/v1/cases/LBL2", who="admin", body=body)
    assert r.status == 200 and r.json()["label"]["level"] == "top_secret"
    # above the caller's clearance in either form: refused, not created
    r = w.call("PUT", "/v1/cases/LBL3", who="casesys", body=b'{"title": "t", "label": "secret"}')
    assert r.status == 403


@pytest.mark.parametrize(
    ("label", "detail"),
    [
        ('"internal+nda"', "label: unknown caveat 'nda'"),
        ('"Internal"', "label: unknown level 'Internal'"),
        ('"secret+personal_privacy+personal_privacy"', "label: caveat personal_privacy given"),
        ("5", "label: a label is a string such as 'secret+personal_privacy'"),
        ('["secret"]', "label: a label is a string such as"),
        ('{"level": "secret"}', 'label: label must be an object with exactly "level"'),
        ('{"level": "ultra", "caveats": []}', "label: unknown level 'ultra'"),
    ],
)
def test_bad_case_label_is_a_400_naming_the_field(world: World, label: str, detail: str) -> None:
    body = ('{"title": "t", "label": ' + label + "}").encode()
    r = world.call("PUT", "/v1/cases/LBLBAD", who="admin", body=body)
    assert r.status == 400 and r.problem()["detail"].startswith(detail), r.problem()
    assert world.call("GET", "/v1/cases/LBLBAD", who="admin").status == 404


# -- content ------------------------------------------------------------------------------


def test_content_range_etag_and_roles(world: World) -> None:
    w = world
    data = w.content["plain.mp4"]
    path = f"/v1/evidence/{eid(w, 'plain.mp4')}/content"
    etag = '"' + hashlib.sha256(data).hexdigest() + '"'
    r = w.call("GET", path, who="reviewer")
    assert r.status == 200 and r.body == data
    assert r.headers["etag"] == etag and r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-type"] == "video/mp4"
    assert r.headers["content-disposition"].startswith("inline;")
    cases = {
        "bytes=0-0": (206, data[:1], "bytes 0-0/300000"),
        "bytes=-500": (206, data[-500:], "bytes 299500-299999/300000"),
        "bytes=299990-": (206, data[299990:], "bytes 299990-299999/300000"),
        "bytes=100-99999999": (206, data[100:], "bytes 100-299999/300000"),
        "bytes=0-1,5-9": (200, data, None),  # several ranges: the whole content
        "bytes=9-1": (200, data, None),  # invalid: ignored
        "items=0-1": (200, data, None),
    }
    for rng, (status, body, cr) in cases.items():
        r = w.call("GET", path, who="reviewer", headers={"Range": rng})
        assert (r.status, r.body, r.headers.get("content-range")) == (status, body, cr), rng
    for rng in ("bytes=300000-", "bytes=999999-1000000", "bytes=-0"):
        r = w.call("GET", path, who="reviewer", headers={"Range": rng})
        assert r.status == 416 and r.headers["content-range"] == "bytes */300000", rng
        assert r.problem()["status"] == 416
    r = w.call("GET", path, who="reviewer", headers={"If-None-Match": etag})
    assert r.status == 304 and r.body == b"" and r.headers["etag"] == etag
    r = w.call("GET", path, who="reviewer", headers={"If-None-Match": '"x", W/' + etag})
    assert r.status == 304
    r = w.call("GET", path, who="reviewer", headers={"Range": "bytes=0-9", "If-Range": '"x"'})
    assert r.status == 200 and r.body == data
    r = w.call("GET", path, who="reviewer", headers={"Range": "bytes=0-9", "If-Range": etag})
    assert r.status == 206 and r.body == data[:10]
    r = w.call("HEAD", path, who="reviewer")
    assert r.status == 200 and r.body == b"" and r.headers["content-length"] == "300000"
    # Roles: admin sees metadata but never content; a reviewer may not download; dock nothing.
    r = w.call("GET", path, who="admin")
    assert r.status == 403
    detail = r.problem()["detail"]  # says how to delegate, not just "no"
    assert "admin manages principals and does not view footage" in detail
    assert "`evault principal add ID --role reviewer`" in detail
    assert "`evault token create ID`" in detail
    assert w.call("GET", path, who="dock1").status == 404
    assert w.call("GET", path, who="reviewer", params={"download": "true"}).status == 403
    r = w.call("GET", path, who="legal", params={"download": "true"})
    assert r.status == 200 and r.headers["content-disposition"].startswith("attachment;")
    own = f"/v1/evidence/{eid(w, 'own.mp4')}/content"
    assert w.call("GET", own, who="officer", params={"download": "true"}).status == 200
    assert w.call("GET", path, who="officer", params={"download": "true"}).status == 403
    assert w.call("GET", path, who="casesys", params={"download": "1"}).status == 200
    assert w.call("GET", path).status == 401
    assert w.call("GET", path, who=None, headers={"Authorization": "Bearer evt_x"}).status == 401


def test_empty_content_ranges(world: World) -> None:
    w = world
    r = w.upload("dock1", "empty.mp4", b"")
    assert r.status == 201
    path = f"/v1/evidence/{r.json()['evidence_id']}/content"
    assert w.call("GET", path, who="auditor").status == 403  # auditor: metadata, not content
    assert w.call("GET", path, who="casesys").body == b""
    for rng in ("bytes=0-0", "bytes=-1"):
        r = w.call("GET", path, who="casesys", headers={"Range": rng})
        assert r.status == 416 and r.headers["content-range"] == "bytes */0"


def test_content_decisions_are_in_the_ledger(world: World) -> None:
    w = world
    path = f"/v1/evidence/{eid(w, 'plain.mp4')}/content"
    before = w.svc.evault("audit", "--evidence", eid(w, "plain.mp4")).stdout
    assert w.call("GET", path, who="admin").status == 403
    assert w.call("GET", path, who="reviewer", headers={"Range": "bytes=0-0"}).status == 206
    after = w.svc.evault("audit", "--evidence", eid(w, "plain.mp4")).stdout
    new = after[len(before) :] if after.startswith(before) else after
    assert "denied" in new and "stream" in new and "accessed" in new


def _wait_job(w: World, location: str, who: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        job = w.call("GET", location, who=who).json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return dict(job)
        time.sleep(0.3)


def test_clip_job_and_rendition_content(world: World) -> None:
    w = world
    ev = eid(w, "video.mp4")
    body = json.dumps({"start_ms": 0, "end_ms": 1000}).encode()
    assert w.call("POST", f"/v1/evidence/{ev}/clips", who="admin", body=body).status == 403
    for bad in (b"{}", b'{"start_ms": 5, "end_ms": 5}', b'{"start_ms": -1, "end_ms": 5}', b"x"):
        assert w.call("POST", f"/v1/evidence/{ev}/clips", who="casesys", body=bad).status == 400
    r = w.call("POST", f"/v1/evidence/{ev}/clips", who="reviewer", body=body)
    assert r.status == 202, r.body
    location = r.headers["location"]
    assert location == f"/v1/jobs/{r.json()['id']}" and r.json()["status"] == "queued"
    job = _wait_job(w, location, "reviewer")
    assert job["status"] == "done", job
    # Visible to others who may read the evidence, not to those who may not.
    assert w.call("GET", location, who="casesys").status == 200
    assert w.call("GET", location, who="dock1").status == 404
    assert w.call("GET", "/v1/jobs/999999", who="reviewer").status == 404
    assert w.call("GET", "/v1/jobs/abc", who="reviewer").status == 404
    rendition = str(job["rendition"])
    r = w.call("GET", rendition, who="reviewer", headers={"Range": "bytes=0-9"})
    assert r.status == 206 and len(r.body) == 10 and r.headers["content-type"] == "video/mp4"
    assert w.call("GET", rendition, who="dock1").status == 404
    assert w.call("GET", rendition, who="admin").status == 403
    detail = w.call("GET", f"/v1/evidence/{ev}", who="reviewer").json()
    assert str(job["rendition_id"]) in {x["id"] for x in detail["renditions"]}


def test_export_job_and_package_download(world: World, tmp_path: Path) -> None:
    w = world
    body = json.dumps({"renditions": ["proxy"]}).encode()
    assert w.call("POST", "/v1/cases/C1/exports", who="admin", body=body).status == 403
    assert w.call("POST", "/v1/cases/C1/exports", who="reviewer", body=body).status == 403
    assert w.call("POST", "/v1/cases/NOPE/exports", who="legal", body=body).status == 404
    bad = json.dumps({"renditions": ["everything"]}).encode()
    assert w.call("POST", "/v1/cases/C1/exports", who="legal", body=bad).status == 400
    r = w.call("POST", "/v1/cases/C1/exports", who="legal", body=body)
    assert r.status == 202, r.body
    location = r.headers["location"]
    job = _wait_job(w, location, "legal")
    assert job["status"] == "done", job
    assert w.call("GET", location, who="auditor").status == 404  # only the requester
    package = str(job["package"])
    assert w.call("GET", package, who="reviewer").status == 404
    r = w.call("GET", package, who="legal")
    assert r.status == 200 and r.headers["content-type"] == "application/zip"
    zipped = tmp_path / "case.zip"
    zipped.write_bytes(r.body)
    assert hashlib.sha256(r.body).hexdigest() != job["manifest_sha256"]  # the zip, not the manifest
    from verify.package_checks import verify_package

    vkey = w.call("GET", "/ledger/vkey", who="legal").body.decode().strip()
    report = verify_package(zipped, parse_vkey(vkey))
    assert report.verdict == "ok", [f.message for f in report.findings]
    assert len(r.body) == job["size"]


# -- verify and proofs --------------------------------------------------------------------


def test_verify_body_and_hash_with_proofs(world: World) -> None:
    w = world
    vkey = parse_vkey(w.svc.evault("ledger", "vkey").stdout.strip())
    data = w.content["plain.mp4"]
    r = w.call("POST", "/v1/verify", who="reviewer", body=data)
    assert r.status == 200
    body = r.json()
    assert body["held"] is True and body["size"] == len(data)
    (match,) = body["matches"]
    assert match["evidence_id"] == eid(w, "plain.mp4")
    assert match["ledger_index"] == w.evidence["plain.mp4"]["ledger_index"]
    assert match["tlog_proof"].startswith("c2sp.org/tlog-proof@v1")
    by_hash = w.call(
        "POST", "/v1/verify", who="auditor", params={"sha256": hashlib.sha256(data).hexdigest()}
    ).json()
    assert by_hash["held"] is True and by_hash["size"] is None
    assert w.call("POST", "/v1/verify", who="casesys", body=data).status == 403
    assert w.call("POST", "/v1/verify", who="officer", body=data).status == 403
    assert w.call("POST", "/v1/verify", who="reviewer", params={"sha256": "xyz"}).status == 400
    r = w.call("POST", "/v1/verify", who="reviewer", params={"sha256": "0" * 64}, body=b"x")
    assert r.status == 400
    assert w.call("POST", "/v1/verify", body=data).status == 401
    # proof of an evidence item: a tlog-proof whose checkpoint the log key signed
    r = w.call("GET", f"/v1/evidence/{eid(w, 'plain.mp4')}/proof", who="reviewer")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.body.decode()
    assert text.startswith("c2sp.org/tlog-proof@v1")
    note = text.split("\n\n", 1)[1] if "\n\n" in text else text
    assert note
    assert w.call("GET", f"/v1/evidence/{eid(w, 'plain.mp4')}/proof", who="casesys").status == 403
    cp = w.call("GET", "/ledger/checkpoint").body.decode()
    size = open_checkpoint(cp, vkey).size
    r = w.call("GET", "/v1/ledger/consistency", params={"old": "1", "new": str(size)})
    assert r.status == 200 and r.json()["old"] == 1 and r.json()["new"] == size
    assert all(len(base64.b64decode(h)) == 32 for h in r.json()["proof"])
    for params in ({"old": "1", "new": str(10**9)}, {"old": "2", "new": str(10**9)}):
        assert w.call("GET", "/v1/ledger/consistency", params=params).status == 404
    # a request that no tree size could satisfy is the caller's error (400), not "not found"
    for params in ({"old": "a", "new": "2"}, {"new": "2"}, {"old": "5", "new": "2"}):
        assert w.call("GET", "/v1/ledger/consistency", params=params).status == 400
    zero = w.call("GET", "/v1/ledger/consistency", params={"old": "0", "new": str(size)})
    assert zero.status == 400 and "empty tree" in zero.problem()["detail"]


def test_unauthenticated_challenge_and_request_ids(world: World) -> None:
    w = world
    r = w.call("GET", "/v1/evidence")
    assert r.status == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.problem()["status"] == 401
    bad = w.call("GET", "/v1/evidence", headers={"Authorization": "Basic abc"})
    assert bad.status == 401 and bad.problem() == r.problem()
    r = w.call("GET", "/v1/cases", who="reviewer", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    log = (Path(w.svc.data) / "serve.log").read_text()
    lines = [json.loads(x) for x in log.splitlines() if '"evault.access"' in x]
    mine = [x for x in lines if x.get("request_id") == "abc-123"]
    assert mine and mine[0]["route"] == "/v1/cases" and mine[0]["principal"] == "reviewer"
    assert mine[0]["status"] == 200 and mine[0]["bytes"] > 0
    for token in w.tokens.values():
        assert token not in log
    assert "sha256=" not in log and "secret.mp4" not in log


def test_revoked_or_disabled_refused_by_the_running_service_at_once(world: World) -> None:
    """The service caches authenticated tokens (``vault.access.tokens.TokenCache``); a revocation or
    a disabled principal committed by ANOTHER process (here: this test) is refused by the very
    next request, well within any cache TTL (the NOTIFY from the changing transaction)."""
    w = world
    cfg = load(None, str(w.svc.data), environ=w.svc.env)

    async def issue() -> tokens.IssuedToken:
        async with open_runtime(cfg) as rt:
            admin = await principals.load(rt.db.pool, "admin")
            return await tokens.create(rt.db.pool, rt.ledger, admin, "legal", timedelta(days=1))

    async def revoke(token_id: str) -> None:
        async with open_runtime(cfg) as rt:
            admin = await principals.load(rt.db.pool, "admin")
            await tokens.revoke(rt.db.pool, rt.ledger, admin, token_id)

    async def set_active(on: bool) -> None:
        async with open_runtime(cfg) as rt:
            admin = await principals.load(rt.db.pool, "admin")
            await (principals.enable if on else principals.disable)(
                rt.db.pool, rt.ledger, admin, "legal"
            )

    issued = asyncio.run(issue())
    auth = {"Authorization": f"Bearer {issued.token}"}
    for _ in range(3):  # now cached by the service
        assert w.call("GET", "/v1/cases", who=None, headers=auth).status == 200
    asyncio.run(revoke(issued.id))
    assert w.call("GET", "/v1/cases", who=None, headers=auth).status == 401
    # a principal disabled elsewhere: its cached (still unrevoked) token is refused at once
    assert w.call("GET", "/v1/cases", who="legal").status == 200
    asyncio.run(set_active(False))
    try:
        assert w.call("GET", "/v1/cases", who="legal").status == 401
    finally:
        asyncio.run(set_active(True))
    assert w.call("GET", "/v1/cases", who="legal").status == 200
