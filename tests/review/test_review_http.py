"""Legal review, publicity and events over real HTTP against a running `evault serve`, with
each role, denials, the no-leak rule, signed reports and HMAC-signed event deliveries."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from api.config import default_toml
from tests.api.http_fixtures import World, seeded_service
from tests.vault_fixtures import retag
from vault.keys.hostmac import load_mac_key
from verify.note import parse_vkey
from verify.report_note import verify_report_response

SECRET = b"hmac-key-for-the-legal-review-module"
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
GOT: list[tuple[dict[str, str], bytes]] = []


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        GOT.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    data = tmp_path_factory.mktemp("review") / "data"
    (data / "keys").mkdir(parents=True, mode=0o700)
    (data / "keys" / "legal.hmac").write_bytes(SECRET + b"\n")
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    (data / "evault.toml").write_text(
        default_toml()
        + f'\n[[subscribers]]\nid = "legal"\nurl = "{url}"\nsecret_file = "keys/legal.hmac"\n'
    )
    env = {"EVAULT_EVENTS_POLL_SECONDS": "0.05", "EVAULT_EVENTS_BACKOFF_SECONDS": "0.05"}
    try:
        with seeded_service(pg_admin_dsn, data, env) as w:
            for name in ("a.mp4", "b.mp4", "c.mp4", "s.mp4"):
                blob = os.urandom(4096)
                r = w.upload("dock1", name, blob)
                assert r.status == 201, r.body
                w.evidence[name], w.content[name] = r.json(), blob
            for case, name in [("C1", "a.mp4"), ("C1", "b.mp4"), ("C1", "c.mp4"), ("CS", "s.mp4")]:
                body = json.dumps({"evidence_id": eid(w, name)}).encode()
                assert (
                    w.call("POST", f"/v1/cases/{case}/evidence", who="admin", body=body).status
                    == 201
                )
            asyncio.run(_place(w))
            yield w
    finally:
        receiver.shutdown()


async def _place(w: World) -> None:
    """What media jobs and station file names would record: start, duration, officer."""
    conn = await asyncpg.connect(w.svc.env["EVAULT_DATABASE_DSN"])
    mac = load_mac_key(w.svc.data / "keys" / "ledger.mac")
    try:
        for name, start, ms, officer in [
            ("a.mp4", 0, 600_000, "OFF1"),
            ("b.mp4", 10, 300_000, "OFF2"),
        ]:
            await conn.execute(
                "UPDATE evidence SET recorded_at = $2, probe = $3::jsonb, officer_id = $4"
                " WHERE id = $1::uuid",
                eid(w, name), T0 + timedelta(minutes=start), json.dumps({"duration_ms": ms}), officer,
            )  # fmt: skip
            await retag(conn, "evidence", eid(w, name), mac)
    finally:
        await conn.close()


def eid(w: World, name: str) -> str:
    return str(w.evidence[name]["evidence_id"])


def iso(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def test_integrity_report_per_role_and_signed(world: World) -> None:
    w = world
    vkey = parse_vkey(w.call("GET", "/ledger/vkey").body.decode().strip())
    c1 = {eid(w, n) for n in ("a.mp4", "b.mp4", "c.mp4")}
    for who in ("legal", "reviewer", "casesys", "auditor", "officer"):
        r = w.call("GET", "/v1/cases/C1/integrity-report", who=who)
        assert r.status == 200, (who, r.body[:300])
        report = verify_report_response(r.body, vkey)  # the archived response verifies as is
        assert report == r.json()["report"]
        assert {i["evidence_id"] for i in report["evidence"]} == c1, who
        assert report["verdict"] == "ok" and report["requested_by"] == who
    scrub = w.call("GET", "/v1/cases/C1/integrity-report", who="legal", params={"mode": "scrub"})
    assert scrub.status == 200 and scrub.json()["report"]["mode"] == "scrub"
    # no-leak: a case above clearance, a case without need-to-know and no case answer alike
    unknown = w.call("GET", "/v1/cases/NOPE/integrity-report", who="reviewer")
    assert unknown.status == 404
    for who, case in [("reviewer", "CS"), ("dock1", "C1"), ("casesys", "CS")]:
        r = w.call("GET", f"/v1/cases/{case}/integrity-report", who=who)
        assert (r.status, r.problem()) == (404, unknown.problem()), (who, case)
    assert w.call("GET", "/v1/cases/C1/integrity-report").status == 401
    assert (
        w.call("GET", "/v1/cases/C1/integrity-report", who="legal", params={"mode": "x"}).status
        == 400
    )
    # a NUL in the path is the client's mistake (400), whatever exists: no oracle either way
    assert w.call("GET", "/v1/cases/%00/integrity-report", who="legal").status == 400


def test_service_artefacts_check_with_evault_verify(world: World, tmp_path: Path) -> None:
    """What the service hands out (the report as the console saves it, a push receipt) is
    recognised and checked by evault-verify as a user runs it."""
    w = world
    vkey = w.call("GET", "/ledger/vkey").body.decode().strip()
    report = tmp_path / "integrity-report.json"
    report.write_bytes(w.call("GET", "/v1/cases/C1/integrity-report", who="legal").body)
    receipt = tmp_path / "a.mp4.evault-receipt.json"
    receipt.write_text(json.dumps(w.evidence["a.mp4"]))
    for f, says in [(report, "3 of 3 items"), (receipt, "a receipt carries no inclusion proof")]:
        proc = subprocess.run(
            [sys.executable, "-m", "verify", str(f), "--vkey", vkey],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert says in proc.stdout and proc.stdout.splitlines()[-1] == "VERIFIED 验证通过"


def test_integrity_report_names_a_changed_file(world: World) -> None:
    w = world
    sha = hashlib.sha256(w.content["c.mp4"]).hexdigest()
    path = w.svc.data / "vault" / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
    path.chmod(0o600)
    original = path.read_bytes()
    path.write_bytes(b"x" + original[1:])
    try:
        r = w.call("GET", "/v1/cases/C1/integrity-report", who="legal")
        report = r.json()["report"]
        assert report["verdict"] == "failed"
        assert report["reasons"] == [f"evidence {eid(w, 'c.mp4')}: content mismatch (now)"]
    finally:
        path.write_bytes(original)
        path.chmod(0o400)


def test_coverage_of_steps(world: World) -> None:
    w = world
    steps = {
        "steps": [
            {"type": "现场检查", "start": iso(0), "end": iso(20), "officer": "OFF1"},
            {"type": "听证", "start": iso(60), "end": iso(90)},
            {"type": "内部讨论", "start": iso(100), "end": iso(110)},
        ]
    }
    body = json.dumps(steps, ensure_ascii=False).encode()
    r = w.call("POST", "/v1/cases/C1/coverage", who="legal", body=body)
    assert r.status == 200, r.body
    out = r.json()
    first = out["steps"][0]
    assert first["status"] == "partial" and first["requires_recording"]
    assert first["covered"] == [{"start": iso(0), "end": iso(15)}]
    assert first["gaps"] == [{"start": iso(15), "end": iso(20)}]
    assert first["covered_ms"] == 15 * 60_000 and first["duration_ms"] == 20 * 60_000
    assert [f["evidence_id"] for f in first["footage"]] == [eid(w, "a.mp4"), eid(w, "b.mp4")]
    assert out["lacking_footage"] == [1] and out["incomplete"] == [0]
    assert not out["steps"][2]["requires_recording"]
    assert out["unplaced_evidence"] == [
        {"evidence_id": eid(w, "c.mp4"), "reason": "recording start unknown"}
    ]
    # matching by officer: only OFF1's footage counts for a step that names OFF1
    strict = json.dumps({**steps, "match_officer": True}).encode()
    first = w.call("POST", "/v1/cases/C1/coverage", who="legal", body=strict).json()["steps"][0]
    assert first["gaps"] == [{"start": iso(10), "end": iso(20)}]
    # the secret case is invisible to the reviewer; malformed steps are 400
    assert w.call("POST", "/v1/cases/CS/coverage", who="reviewer", body=body).status == 404
    for bad in (b"[]", b"{}", b'{"steps": [{"type": "x", "start": "a", "end": "b"}]}'):
        assert w.call("POST", "/v1/cases/C1/coverage", who="legal", body=bad).status == 400


def test_public_statistics_roles(world: World) -> None:
    w = world
    year = "2026"
    for who in ("casesys", "auditor", "admin"):
        r = w.call("GET", "/v1/public/statistics", who=who, params={"year": "2026"})
        assert r.status == 200, (who, r.body)
        stats = r.json()
        assert stats["recordings"] >= 2 and stats["footage_seconds"] >= 900
        assert stats["cases_with_footage"] >= 1
        assert all(isinstance(v, int | float) for v in stats.values())
    for who in ("reviewer", "officer", "legal", "dock1"):
        r = w.call("GET", "/v1/public/statistics", who=who, params={"year": year})
        assert r.status == 403, who
    assert w.call("GET", "/v1/public/statistics", params={"year": year}).status == 401
    for bad in ("", "26", "1999", "x2026"):
        assert (
            w.call("GET", "/v1/public/statistics", who="casesys", params={"year": bad}).status
            == 400
        )


def test_events_are_delivered_signed_and_in_order(world: World) -> None:
    w = world
    want = 4 + 4  # acquired and linked for each upload
    deadline = time.monotonic() + 20
    while len(GOT) < want:
        assert time.monotonic() < deadline, f"{len(GOT)} deliveries arrived"
        time.sleep(0.05)
    bodies = []
    for headers, body in GOT:
        stamp = headers["X-Evault-Timestamp"]
        mac = hmac.new(SECRET, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert headers["X-Evault-Signature"] == f"sha256={mac}"
        bodies.append(json.loads(body))
        assert headers["X-Evault-Event"] == bodies[-1]["type"]
    assert [b["event_id"] for b in bodies] == sorted(b["event_id"] for b in bodies)
    acquired = {b["data"]["evidence_id"] for b in bodies if b["type"] == "evidence.acquired"}
    assert acquired == {eid(w, n) for n in ("a.mp4", "b.mp4", "c.mp4", "s.mp4")}
    r = w.call(
        "GET", "/v1/events/deliveries", who="admin", params={"status": "delivered", "limit": "3"}
    )
    assert r.status == 200
    page = r.json()
    assert len(page["items"]) == 3 and page["next_before"] == page["items"][-1]["id"]
    assert all(i["subscriber"] == "legal" and i["last_status"] == 204 for i in page["items"])
    for who in ("casesys", "auditor", "reviewer"):
        assert w.call("GET", "/v1/events/deliveries", who=who).status == 403, who
    assert w.call("GET", "/v1/events/deliveries", who="admin", params={"status": "x"}).status == 400
    metrics = w.call("GET", "/metrics").body.decode()
    assert 'evault_event_deliveries_pending{subscriber="legal"}' in metrics
    assert 'evault_event_deliveries_delivered_total{subscriber="legal"}' in metrics
