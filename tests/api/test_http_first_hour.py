"""The API details a first hour runs into, over real HTTP against a running `evault serve`:
misspelt query parameters, request ids on content, clips past the end, what "not found" says,
caches and compression, who the caller is, unlinked footage, and odd arrivals at a dock."""

from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.app import make_app
from api.config import load
from api.openapi import query_names
from tests.api.http_fixtures import World, make_video, seeded_service
from vault.config_events import DEFAULT_RECORDING_REQUIRED
from verify.tiles import entries_path


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("firsthour")
    with seeded_service(pg_admin_dsn, tmp / "data") as w:
        future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
        ahead = base64.b64encode(json.dumps({"recorded_at": future}).encode()).decode()
        for name, data, extra in [
            ("DEV01_OFF1_20260301090000.mp4", make_video(tmp / "v.mp4", 3), {}),
            ("secret.mp4", os.urandom(5000), {}),
            ("loose.mp4", os.urandom(4000), {}),  # not a video, name off-pattern, no case
            ("ahead.mp4", os.urandom(3000), {"X-Evault-Sidecar": ahead}),
        ]:
            r = w.upload("dock1", name, data, **extra)
            assert r.status == 201, r.body
            w.evidence[name] = r.json()
            w.content[name] = data
        for case, name in [("C1", "DEV01_OFF1_20260301090000.mp4"), ("CS", "secret.mp4")]:
            body = json.dumps({"evidence_id": eid(w, name)}).encode()
            assert (
                w.call("POST", f"/v1/cases/{case}/evidence", who="admin", body=body).status == 201
            )
        yield w


VIDEO = "DEV01_OFF1_20260301090000.mp4"


def eid(w: World, name: str) -> str:
    return str(w.evidence[name]["evidence_id"])


def _wait(w: World, name: str, done: Any, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = w.call("GET", f"/v1/evidence/{eid(w, name)}", who="admin").json()
        if done(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.3)


# -- query parameters ----------------------------------------------------------------------


def test_attack_misspelt_filter_is_refused_not_silently_ignored(world: World) -> None:
    w = world
    r = w.call("GET", "/v1/evidence", who="admin", params={"foo": "1"})
    assert r.status == 400
    assert "'foo'" in r.problem()["detail"] and "case" in r.problem()["detail"]
    # a misspelt case filter would have listed everything
    r = w.call("GET", "/v1/evidence", who="admin", params={"cases": "C1"})
    assert r.status == 400 and "'cases'" in r.problem()["detail"]
    assert w.call("GET", "/v1/evidence", who="admin", params={"case": "C1"}).status == 200
    for path in ("/v1/cases", "/v1/cases/C1", f"/v1/evidence/{eid(w, VIDEO)}", "/v1/me"):
        r = w.call("GET", path, who="reviewer", params={"limt": "5"})
        assert r.status == 400 and "'limt'" in r.problem()["detail"], path


def test_every_documented_query_parameter_is_accepted_and_no_other(world: World) -> None:
    """The allowed set is the OpenAPI document's: the two cannot drift apart."""
    w = world
    doc = w.call("GET", "/openapi.json").json()
    app = make_app(load(None, str(w.svc.data), environ=w.svc.env))
    checked = 0
    for route in app.router.routes():
        op = doc["paths"].get(re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.resource.canonical), {})
        spec = op.get(route.method.lower())
        if spec is None:
            continue
        documented = {p["name"] for p in spec.get("parameters", []) if p["in"] == "query"}
        assert query_names(route.handler) == documented, route
        checked += 1
    assert checked >= 25


# -- content, clips, not found, compression ------------------------------------------------


def test_content_responses_keep_the_request_id(world: World) -> None:
    w = world
    path = f"/v1/evidence/{eid(w, VIDEO)}/content"
    for extra, status in (({}, 200), ({"Range": "bytes=0-9"}, 206)):
        r = w.call("GET", path, who="reviewer", headers={"X-Request-Id": "abc-123", **extra})
        assert r.status == status
        assert r.headers.get("x-request-id") == "abc-123", r.headers
    r = w.call("GET", path, who="reviewer")
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers.get("x-request-id", "")), r.headers


def test_attack_clip_past_the_end_is_refused_at_once(world: World) -> None:
    w = world
    body = _wait(w, VIDEO, lambda b: (b.get("probe") or {}).get("duration_ms"))
    duration = body["probe"]["duration_ms"]
    path = f"/v1/evidence/{eid(w, VIDEO)}/clips"
    late = json.dumps({"start_ms": 0, "end_ms": duration + 5000}).encode()
    r = w.call("POST", path, who="reviewer", body=late)
    assert r.status == 400, r.body
    assert f"{duration} ms" in r.problem()["detail"] and "duration" in r.problem()["detail"]
    # the refusal happens after the access decision: the invisible still look missing
    hidden = f"/v1/evidence/{eid(w, 'secret.mp4')}/clips"
    absent = f"/v1/evidence/{uuid.uuid4()}/clips"
    a = w.call("POST", hidden, who="reviewer", body=late)
    b = w.call("POST", absent, who="reviewer", body=late)
    assert (a.status, a.problem()) == (b.status, b.problem()) == (404, b.problem())
    ok = json.dumps({"start_ms": 0, "end_ms": duration}).encode()
    assert w.call("POST", path, who="reviewer", body=ok).status == 202


def test_not_found_names_the_kind_and_leaks_nothing(world: World) -> None:
    w = world
    hidden, absent = eid(w, "secret.mp4"), str(uuid.uuid4())
    for tmpl in ("/v1/evidence/{}", "/v1/evidence/{}/content", "/v1/evidence/{}/proof"):
        a = w.call("GET", tmpl.format(hidden), who="reviewer")
        b = w.call("GET", tmpl.format(absent), who="reviewer")
        assert a.status == b.status == 404 and a.problem() == b.problem(), tmpl
        assert a.problem()["detail"] == "Not found: no such evidence", tmpl
    a = w.call("GET", "/v1/cases/CS", who="reviewer")
    b = w.call("GET", "/v1/cases/NOPE", who="reviewer")
    assert a.problem() == b.problem() and a.problem()["detail"] == "Not found: no such case"
    r = w.call("GET", f"/v1/renditions/{absent}/content", who="reviewer")
    assert r.problem()["detail"] == "Not found: no such rendition"
    for path, kind in (("/v1/jobs/99999", "job"), ("/v1/exports/99999", "export job")):
        assert (
            w.call("GET", path, who="reviewer").problem()["detail"] == f"Not found: no such {kind}"
        )


def test_entry_bundles_vary_by_accept_encoding(world: World) -> None:
    w = world
    size = w.call("GET", "/readyz").json()["ledger_size"]
    path = "/ledger/" + entries_path(0, min(size, 255))
    for enc in ("gzip", "identity"):
        r = w.call("GET", path, who="auditor", headers={"Accept-Encoding": enc})
        assert r.status == 200
        vary = {v.strip().lower() for v in r.headers.get("vary", "").split(",")}
        assert {"accept-encoding", "authorization"} <= vary, r.headers
    gz = w.call("GET", path, who="auditor", headers={"Accept-Encoding": "gzip"})
    assert gz.headers.get("content-encoding") == "gzip"


# -- the caller, step types, case titles, unlinked footage -----------------------------------


def test_me_says_what_the_roles_can_use(world: World) -> None:
    w = world
    admin = w.call("GET", "/v1/me", who="admin").json()
    assert admin["id"] == "admin" and "admin" in admin["roles"]
    assert "stream" not in admin["may"] and "download" not in admin["may"]
    reviewer = w.call("GET", "/v1/me", who="reviewer").json()
    assert {"stream", "verify"} <= set(reviewer["may"]) and "download" not in reviewer["may"]
    assert reviewer["cases"] == ["C1", "CS"] and reviewer["clearance"] == "internal"
    legal = w.call("GET", "/v1/me", who="legal").json()
    assert {"stream", "download", "export"} <= set(legal["may"])
    assert w.call("GET", "/v1/me").status == 401


def test_step_types_are_the_configured_ones(world: World) -> None:
    r = world.call("GET", "/v1/review/step-types", who="reviewer")
    assert r.status == 200
    assert r.json() == {"recording_required": list(DEFAULT_RECORDING_REQUIRED)}
    assert world.call("GET", "/v1/review/step-types").status == 401


def test_case_list_shows_titles(world: World) -> None:
    items = world.call("GET", "/v1/cases", who="reviewer").json()["items"]
    assert {c["id"]: c["title"] for c in items} == {"C1": "Case one"}
    items = world.call("GET", "/v1/cases", who="auditor").json()["items"]
    assert {c["id"]: c["title"] for c in items} == {"C1": "Case one", "CS": "Secret case"}


def test_unlinked_footage_can_be_listed(world: World) -> None:
    w = world
    r = w.call("GET", "/v1/evidence", who="admin", params={"unlinked": "true"})
    assert r.status == 200
    listed = {i["id"] for i in r.json()["items"]}
    assert listed == {eid(w, "loose.mp4"), eid(w, "ahead.mp4")}
    assert all(i["cases"] == [] for i in r.json()["items"])
    everything = w.call("GET", "/v1/evidence", who="admin", params={"unlinked": "false"})
    assert len(everything.json()["items"]) == 4
    assert w.call("GET", "/v1/evidence", who="admin", params={"unlinked": "yes"}).status == 400
    # a reviewer (need-to-know) sees none of them: they are in none of its cases
    r = w.call("GET", "/v1/evidence", who="reviewer", params={"unlinked": "true"})
    assert r.json()["items"] == []


# -- odd arrivals: logged, counted, flagged --------------------------------------------------


def _metric(w: World, name: str, **labels: str) -> float:
    text = w.call("GET", "/metrics").body.decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = ",".join(sorted(line[len(name) + 1 : line.index("}")].split(",")))
            if got == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_odd_arrivals_are_logged_counted_and_flagged(world: World) -> None:
    w = world
    # a recording time after the acquisition: flagged in the evidence, logged and counted
    ahead = w.call("GET", f"/v1/evidence/{eid(w, 'ahead.mp4')}", who="admin").json()
    assert ahead["recorded_after_acquired"] is True
    video = w.call("GET", f"/v1/evidence/{eid(w, VIDEO)}", who="admin").json()
    assert video["recorded_after_acquired"] is False
    assert _metric(w, "evault_dock_recorded_after_acquired_total", dock="dock-01") == 1
    # names off the dock's pattern: every one but the video's
    assert _metric(w, "evault_dock_name_mismatch_total", dock="dock-01") == 3
    # random bytes as .mp4: the probe fails, the item is unprocessable
    _wait(w, "loose.mp4", lambda b: b["media_status"] == "unprocessable")
    deadline = time.monotonic() + 30
    while _metric(w, "evault_dock_unprocessable_total", dock="dock-01", reason="probe") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    log = (w.svc.data / "serve.log").read_text()
    assert f"evidence {eid(w, 'loose.mp4')} is unprocessable (probe)" in log
    assert f"evidence {eid(w, 'loose.mp4')} does not match the dock's pattern" in log
    assert "loose.mp4" not in log  # never a file name in the log
    assert f"evidence {eid(w, 'ahead.mp4')} recorded_at" in log
