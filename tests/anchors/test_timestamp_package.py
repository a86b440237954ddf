"""End to end: `evault serve` with [anchors] against OpenSSL's TSA on loopback, packages
exported over HTTP, and `evault-verify --tsa-ca` on them.

A token verifies and its time is printed; a token for another checkpoint, a foreign or an
expired TSA certificate and an edited token are each refused, naming the reason; while the
TSA is down uploads and checkpoints go on, the lag metric rises, and tokens catch up after.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.anchors.tsa_fixtures import OpenSslTsa, Pki, make_pki, needs_openssl
from tests.api.http_fixtures import World, seeded_service
from vault.keys.signing import load_signer
from verify import package as pkg
from verify.timestamp import (
    checkpoint_imprint,
    load_tsa_certs,
    timestamp_request,
    verify_timestamp,
)

pytestmark = needs_openssl


@dataclass
class Anchored:
    w: World
    tsa: OpenSslTsa
    pki: Pki
    vkey: str
    package: Path  # an exported package (folder) carrying timestamp.tsr
    tmp: Path


def wait_for(what: str, probe: object, limit: float = 30.0) -> object:
    deadline = time.monotonic() + limit
    while True:
        got = probe()  # type: ignore[operator]
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def checkpoint_size(w: World) -> int:
    return int(w.call("GET", "/ledger/checkpoint").body.decode().split("\n")[1])


def stamped_size(w: World) -> int:
    r = w.call("GET", "/ledger/checkpoint.tsr")
    return int(r.headers["evault-checkpoint-size"]) if r.status == 200 else -1


def export(w: World, dest: Path) -> Path:
    r = w.call("POST", "/v1/cases/C1/exports", who="legal", body=b"{}")
    assert r.status == 202, r.body
    location = r.headers["location"]

    def finished() -> dict[str, object] | None:
        job: dict[str, object] = w.call("GET", location, who="legal").json()
        return job if job["status"] in ("done", "failed") else None

    job = wait_for("the export", finished)
    assert isinstance(job, dict) and job["status"] == "done", job
    r = w.call("GET", str(job["package"]), who="legal")
    assert r.status == 200
    with zipfile.ZipFile(io.BytesIO(r.body)) as zf:
        zf.extractall(dest)
    return dest


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Anchored]:
    tmp = tmp_path_factory.mktemp("anchored")
    pki = make_pki(tmp / "pki")
    tsa = OpenSslTsa(pki)
    env = {
        "EVAULT_ANCHORS_TSA_URL": tsa.url,
        "EVAULT_ANCHORS_TSA_CA_FILE": str(pki.ca_file),
        "EVAULT_ANCHORS_TSA_RETRY_SECONDS": "0.1",
        "EVAULT_ANCHORS_TSA_RETRY_MAX_SECONDS": "0.5",
        "EVAULT_ANCHORS_TSA_TIMEOUT": "2",
    }
    try:
        with seeded_service(pg_admin_dsn, tmp / "data", env) as w:
            r = w.upload("dock1", "plain.mp4", os.urandom(50_000))
            assert r.status == 201, r.body
            body = json.dumps({"evidence_id": r.json()["evidence_id"]}).encode()
            assert w.call("POST", "/v1/cases/C1/evidence", who="casesys", body=body).status == 201
            size = checkpoint_size(w)
            wait_for("a time-stamp of the case's entries", lambda: stamped_size(w) >= size)
            vkey = w.call("GET", "/ledger/vkey").body.decode().strip()
            yield Anchored(w, tsa, pki, vkey, export(w, tmp / "pkg"), tmp)
    finally:
        tsa.close()


def evault_verify(a: Anchored, package: Path, *args: str) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-m", "verify", str(package), "--vkey", a.vkey, *args],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])),
    )  # fmt: skip
    return out.returncode, out.stdout + out.stderr


def copy(a: Anchored, name: str) -> Path:
    dest = a.tmp / name
    shutil.copytree(a.package, dest)
    return dest


def replace_token(a: Anchored, package: Path, token: bytes) -> None:
    """Put ``token`` in as timestamp.tsr and re-sign the manifest with the log's own key, so
    the time-stamp check is the only one that can object."""
    (package / pkg.TIMESTAMP_PATH).write_bytes(token)
    m = pkg.parse_manifest((package / pkg.MANIFEST_PATH).read_bytes())
    stamp = (pkg.TIMESTAMP_PATH, hashlib.sha256(token).hexdigest(), len(token))
    data = pkg.manifest_bytes(m.__class__(**{**m.__dict__, "timestamp": stamp}))
    (package / pkg.MANIFEST_PATH).write_bytes(data)
    signer = load_signer(a.w.svc.data / "keys" / "ledger.skey")
    (package / pkg.MANIFEST_SIG_PATH).write_text(pkg.sign_manifest(data, signer))


def test_served_time_stamp_verifies_for_the_served_checkpoint(world: Anchored) -> None:
    w = world.w
    wait_for("the latest checkpoint's time-stamp", lambda: stamped_size(w) == checkpoint_size(w))
    r = w.call("GET", "/ledger/checkpoint.tsr")
    assert r.status == 200 and r.headers["content-type"] == "application/timestamp-reply"
    size = int(r.headers["evault-checkpoint-size"])
    again = w.call("GET", f"/ledger/timestamp/{size}")
    assert again.body == r.body and "immutable" in again.headers["cache-control"]
    note = w.call("GET", "/ledger/checkpoint").body.decode()
    if checkpoint_size(w) == size:
        ts = verify_timestamp(r.body, note, load_tsa_certs(world.pki.ca_file.read_bytes()))
        assert ts.nonce is not None
    assert w.call("GET", "/ledger/timestamp/99999999").status == 404
    assert w.call("GET", "/ledger/timestamp/x").status == 404


def test_package_time_stamp_verifies_and_prints_the_attested_time(world: Anchored) -> None:
    assert (world.package / "timestamp.tsr").exists()
    manifest = json.loads((world.package / "manifest.json").read_bytes())
    assert manifest["timestamp"]["path"] == "timestamp.tsr"
    code, out = evault_verify(world, world.package, "--tsa-ca", str(world.pki.ca_file))
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.startswith("time "))
    assert re.search(r"time     20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ by CN=Test TSA", line), line
    assert "checked ✓" in line
    code, out = evault_verify(world, world.package, "--tsa-ca", str(world.pki.ca_file), "--json")
    report = json.loads(out)
    assert report["timestamp"]["checked"] is True and report["verdict"] == "ok"
    html = (world.package / "report.html").read_text()
    assert f"{report['timestamp']['time']} — CN=Test TSA,O=Test Bureau,C=CN" in html


def test_without_tsa_ca_the_time_stamp_is_shown_as_not_checked(world: Anchored) -> None:
    code, out = evault_verify(world, world.package)
    assert code == 0, out
    assert "NOT checked (no --tsa-ca)" in out


def test_attack_edited_token_is_refused(world: Anchored) -> None:
    p = copy(world, "edited")
    token = bytearray((p / "timestamp.tsr").read_bytes())
    token[-20] ^= 0x01  # inside the TSA's signature
    (p / "timestamp.tsr").write_bytes(bytes(token))
    code, out = evault_verify(world, p, "--tsa-ca", str(world.pki.ca_file))
    assert code == 1, out
    assert "timestamp.tsr: the time-stamp was altered" in out
    replace_token(world, p, bytes(token))  # even with the manifest re-signed to match it
    code, out = evault_verify(world, p, "--tsa-ca", str(world.pki.ca_file))
    assert code == 1 and "the time-stamp was altered" in out, out


def test_attack_token_for_another_checkpoint_is_refused(world: Anchored) -> None:
    w = world.w
    size = json.loads((world.package / "manifest.json").read_bytes())["checkpoint_size"]
    assert w.call("GET", f"/ledger/timestamp/{size}").status == 200
    w.upload("dock1", "later.mp4", os.urandom(1000))  # a later checkpoint, stamped by the service
    later = wait_for("a later time-stamp", lambda: stamped_size(w) > size and stamped_size(w))
    p = copy(world, "other")
    replace_token(world, p, w.call("GET", f"/ledger/timestamp/{later}").body)
    code, out = evault_verify(world, p, "--tsa-ca", str(world.pki.ca_file))
    assert code == 1, out
    assert "the time-stamp is for another checkpoint" in out


def test_attack_foreign_tsa_is_refused(world: Anchored) -> None:
    foreign = make_pki(world.tmp / "foreign", name="Foreign TSA")
    code, out = evault_verify(world, world.package, "--tsa-ca", str(foreign.ca_file))
    assert code == 2, out
    assert "the time-stamp is not by the TSA given" in out and "WRONG KEY" in out


def test_attack_expired_tsa_certificate_is_refused(world: Anchored) -> None:
    expired = make_pki(world.tmp / "expired", expired=True)
    tsa = OpenSslTsa(expired)
    try:
        note = (world.package / "checkpoint").read_text()
        token = tsa.reply(timestamp_request(checkpoint_imprint(note), 1))
    finally:
        tsa.close()
    p = copy(world, "expired-pkg")
    replace_token(world, p, token)
    code, out = evault_verify(world, p, "--tsa-ca", str(expired.ca_file))
    assert code == 2, out
    assert "the time-stamp is not by the TSA given" in out and "(expired)" in out


def test_attack_stripped_token_is_noticed_when_asked_for(world: Anchored) -> None:
    p = copy(world, "stripped")
    (p / "timestamp.tsr").unlink()
    code, out = evault_verify(world, p, "--tsa-ca", str(world.pki.ca_file))
    assert code == 1 and "timestamp.tsr is missing" in out, out


def test_tsa_down_stalls_nothing_else_and_tokens_catch_up(world: Anchored) -> None:
    w, tsa = world.w, world.tsa
    tsa.down = True
    try:
        before = checkpoint_size(w)
        t = time.monotonic()
        r = w.upload("dock1", "during-outage.mp4", os.urandom(20_000))
        assert r.status == 201, r.body
        assert time.monotonic() - t < 5
        wait_for("a checkpoint of the new entries", lambda: checkpoint_size(w) > before)
        time.sleep(1.0)
        assert stamped_size(w) < checkpoint_size(w)  # the latest has no token yet
        metrics = w.call("GET", "/metrics").body.decode()
        lag = re.search(r"^evault_anchor_timestamp_lag_seconds (\S+)$", metrics, re.M)
        assert lag is not None and float(lag.group(1)) > 0.5, metrics[-2000:]
        assert re.search(
            r'evault_anchor_timestamp_failures_total\{reason="unavailable"\} [1-9]', metrics
        )
        assert w.call("GET", "/readyz").status == 200
    finally:
        tsa.down = False
    want = checkpoint_size(w)
    wait_for("tokens to catch up", lambda: stamped_size(w) >= want)
    for s in range(before + 1, want + 1):
        r = w.call("GET", f"/ledger/timestamp/{s}")
        assert r.status in (200, 404)  # only sizes that were checkpointed have one
    assert w.call("GET", f"/ledger/timestamp/{want}").status == 200


# -- the single-file verifier, in a venv that has only cryptography ------------------------

from tests.verify.test_verify_cli_pyz import fresh_python  # noqa: E402, F401 - a fixture
from tools import build_verifier  # noqa: E402


def test_single_file_verifier_checks_the_time_stamp_with_cryptography_alone(
    world: Anchored,
    fresh_python: Path,  # noqa: F811
) -> None:
    pyz = build_verifier.build(world.tmp / "evault-verify.pyz")
    for ca, want in ((world.pki.ca_file, 0), (make_pki(world.tmp / "f2", name="F2").ca_file, 2)):
        out = subprocess.run(
            [str(fresh_python), str(pyz), str(world.package), "--vkey", world.vkey,
             "--tsa-ca", str(ca)],
            capture_output=True, text=True, timeout=120, cwd=world.tmp,
        )  # fmt: skip
        assert out.returncode == want, out.stdout + out.stderr
        if want == 0:
            assert "RFC 3161 time-stamp checked ✓" in out.stdout
        else:
            assert "the time-stamp is not by the TSA given" in out.stdout


# -- last: tampers with the database of the shared service ----------------------------------


def test_cli_lists_and_checks_stored_tokens_then_names_a_moved_one(world: Anchored) -> None:
    import asyncio

    import asyncpg

    svc = world.w.svc
    listed = svc.evault("timestamps", "--limit", "3").stdout.splitlines()
    assert len(listed) == 3 and all(
        line.endswith("CN=Test TSA,O=Test Bureau,C=CN") for line in listed
    )
    out = svc.evault("timestamps", "--check")
    assert re.fullmatch(r"(\d+) time-stamps checked, 0 failed\n", out.stdout), out.stdout
    newest, older = (int(line.split("\t")[0]) for line in listed[:2])

    async def move() -> None:  # a superuser serves an older token as the newest one's
        conn = await asyncpg.connect(svc.env["EVAULT_DATABASE_DSN"])
        try:
            await conn.execute("ALTER TABLE ledger_timestamps DISABLE TRIGGER ALL")
            await conn.execute(
                "UPDATE ledger_timestamps SET token = (SELECT token FROM ledger_timestamps"
                " WHERE size = $1) WHERE size = $2",
                older,
                newest,
            )
            for trigger in ("append_only", "no_truncate"):
                await conn.execute(
                    f"ALTER TABLE ledger_timestamps ENABLE ALWAYS TRIGGER ledger_timestamps_{trigger}"
                )
        finally:
            await conn.close()

    asyncio.run(move())
    out = svc.evault("timestamps", "--check", check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"FAIL: time-stamp of size {newest}: the token time-stamps" in out.stdout
    assert "1 failed" in out.stdout
    foreign = make_pki(world.tmp / "f3", name="F3")
    out = svc.evault("timestamps", "--check", "--tsa-ca", str(foreign.ca_file), check=False)
    assert out.returncode == 1 and "is not a time-stamping certificate issued under" in out.stdout
