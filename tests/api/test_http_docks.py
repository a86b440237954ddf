"""Dock uploads over real HTTP: receipts, idempotent retries, 422/413/408 with nothing kept,
and who may upload where."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.api.http_fixtures import World, seeded_service

SMALL_DOCK = """
[[docks]]
id = "dock-02"
path = "docks/dock-02"
max_bytes = 1000
"""


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("docks") / "data"
    subprocess.run(
        [sys.executable, "-m", "api.cli", "--data", str(data), "init"],
        check=True,
        capture_output=True,
    )
    with (data / "evault.toml").open("a") as f:
        f.write(SMALL_DOCK)
    env = {"EVAULT_SERVICE_UPLOAD_CHUNK_TIMEOUT_SECONDS": "1"}
    with seeded_service(pg_admin_dsn, data, env) as w:
        yield w


def objects(w: World) -> set[str]:
    root = Path(w.svc.data) / "objects"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def evidence_rows(w: World, sha256: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(w.svc.env["EVAULT_DATABASE_DSN"])
        try:
            return int(
                await conn.fetchval("SELECT count(*) FROM evidence WHERE sha256 = $1", sha256)
            )
        finally:
            await conn.close()

    return asyncio.run(count())


def test_receipt_and_idempotent_retry(world: World) -> None:
    w = world
    data = os.urandom(4096)
    sha = hashlib.sha256(data).hexdigest()
    r = w.upload("dock1", "DEV1_OFF9_20260101120000_0001.mp4", data)
    assert r.status == 201, r.body
    receipt = r.json()
    assert receipt["sha256"] == sha and receipt["size"] == 4096 and receipt["kind"] == "acquired"
    assert (
        receipt["checkpoint"] and r.headers["location"] == f"/v1/evidence/{receipt['evidence_id']}"
    )
    again = w.upload("dock1", "retry.mp4", data)
    assert again.status == 200 and again.json()["kind"] == "reoffered"
    assert again.json()["evidence_id"] == receipt["evidence_id"]
    assert again.json()["ledger_index"] > receipt["ledger_index"]
    assert evidence_rows(w, sha) == 1
    meta = w.call("GET", f"/v1/evidence/{receipt['evidence_id']}", who="casesys").json()
    assert meta["dock_id"] == "dock-01" and meta["size"] == 4096


def test_sidecar_header(world: World) -> None:
    w = world
    side = base64.b64encode(b'{"officer_id": "OFF7", "device_id": "CAM7"}').decode()
    r = w.upload("dock1", "x.mp4", os.urandom(100), **{"X-Evault-Sidecar": side})
    assert r.status == 201
    meta = w.call("GET", f"/v1/evidence/{r.json()['evidence_id']}", who="casesys").json()
    assert (meta["officer_id"], meta["device_id"]) == ("OFF7", "CAM7")
    for bad in ("%%%", base64.b64encode(b"[1]").decode(), base64.b64encode(b"{").decode()):
        assert w.upload("dock1", "y.mp4", b"abc", **{"X-Evault-Sidecar": bad}).status == 400


def test_mismatch_is_422_and_nothing_is_kept(world: World) -> None:
    w = world
    data = os.urandom(2048)
    before = objects(w)
    wrong = hashlib.sha256(b"something else").hexdigest()
    r = w.call(
        "PUT",
        "/v1/docks/dock-01/files/bad.mp4",
        who="dock1",
        body=data,
        headers={"X-Content-SHA256": wrong},
    )
    assert r.status == 422 and r.problem()["status"] == 422
    assert objects(w) == before
    assert evidence_rows(w, hashlib.sha256(data).hexdigest()) == 0
    assert not any((Path(w.svc.data) / "objects").rglob("*.tmp*"))


def test_sha256_header_required(world: World) -> None:
    w = world
    path = "/v1/docks/dock-01/files/a.mp4"
    assert w.call("PUT", path, who="dock1", body=b"abc").status == 400
    r = w.call("PUT", path, who="dock1", body=b"abc", headers={"X-Content-SHA256": "abc"})
    assert r.status == 400
    assert w.upload("dock1", "notes.exe", b"abc").status == 400  # extension not allowed


def test_who_may_upload_where(world: World) -> None:
    w = world
    data = b"dock data"
    assert w.upload("dock1", "a.mp4", data, dock="dock-02").status == 404  # not its dock
    wrong = w.upload("dock2", "a.mp4", data, dock="dock-01")
    unknown = w.upload("dock2", "a.mp4", data, dock="no-such-dock")
    assert wrong.status == unknown.status == 404 and wrong.problem() == unknown.problem()
    # Per access.decide: case-independent listers (admin, case_system, auditor) see the dock
    # and are refused (403); need-to-know roles cannot list a dock at all (404).
    for who in ("admin", "casesys", "auditor"):
        r = w.upload(who, "a.mp4", data)
        assert r.status == 403 and "role dock" in r.problem()["detail"], who
    for who in ("reviewer", "officer", "legal"):
        assert w.upload(who, "a.mp4", data).status == 404, who
    r = w.call("PUT", "/v1/docks/dock-01/files/a.mp4", body=data)
    assert r.status == 401 and "bearer" in r.headers["www-authenticate"].lower()


def _raw(w: World, head: str, body: bytes = b"", wait: float = 10) -> tuple[int, float]:
    """Send a raw request; return (status, seconds until the status line arrived)."""
    parsed = urllib.parse.urlsplit(w.svc.url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=wait) as s:
        start = time.monotonic()
        s.sendall(head.encode() + body)
        line = b""
        while b"\r\n" not in line:
            chunk = s.recv(1024)
            if not chunk:
                break
            line += chunk
        return int(line.split()[1]), time.monotonic() - start


def _head(w: World, dock: str, length: int | None, sha: str, chunked: bool = False) -> str:
    lines = [
        f"PUT /v1/docks/{dock}/files/big.mp4 HTTP/1.1",
        "Host: x",
        f"Authorization: Bearer {w.tokens['dock1' if dock == 'dock-01' else 'dock2']}",
        f"X-Content-SHA256: {sha}",
    ]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
    return "\r\n".join(lines) + "\r\n\r\n"


def test_too_large_early_and_midstream(world: World) -> None:
    w = world
    before = objects(w)
    # Content-Length over the limit: 413 without sending a byte of the body.
    status, took = _raw(w, _head(w, "dock-02", 5000, "0" * 64))
    assert status == 413 and took < 5
    status, _ = _raw(w, _head(w, "dock-01", 1 << 50, "0" * 64))
    assert status == 413
    # Chunked (no length): 413 as soon as the stream passes the limit.
    chunk = b"800\r\n" + b"x" * 0x800 + b"\r\n"
    status, _ = _raw(w, _head(w, "dock-02", None, "0" * 64, chunked=True), chunk)
    assert status == 413
    assert objects(w) == before


def test_stalled_upload_times_out(world: World) -> None:
    w = world
    before = objects(w)
    status, took = _raw(w, _head(w, "dock-01", 100, "0" * 64), b"x" * 10)
    assert status == 408 and 0.5 < took < 8
    assert objects(w) == before
