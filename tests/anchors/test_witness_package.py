"""End to end: two `evault serve` processes witnessing each other ([witness] enabled, each in the
other's [[anchors.witnesses]]), each on its own database; a package exported over HTTP carries
the neighbour's cosignature and `evault-verify --witness` checks it offline.

With the witness's key and threshold 1 the package verifies; with threshold 2 (a second,
unrelated witness given) it is WRONG KEY; an edited cosignature is TAMPERED; without --witness
the cosigner is listed, not checked. report.html names the witness.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api.http_fixtures import World, _create_db, _drop_db, seed_people
from tests.api.service_fixtures import Service, free_port
from verify.cosignature import Cosigner, parse_cosigner_vkey, signature_lines, verify_cosignature
from verify.note import parse_note, parse_vkey, verify_note

ROOT = Path(__file__).resolve().parents[2]


def evault(data: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "api.cli", "--data", str(data), *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@dataclass
class Node:
    name: str
    data: Path
    env: dict[str, str]
    port: int
    log_vkey: str = ""
    witness_vkey: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def prepare(name: str, dsn: str, tmp: Path) -> Node:
    env = dict(os.environ, EVAULT_DATABASE_DSN=dsn, EVAULT_LEDGER_ORIGIN=f"{name}.test/ledger")
    env.update(
        EVAULT_WITNESS_ENABLED="true",
        EVAULT_ANCHORS_WITNESS_RETRY_SECONDS="0.1",
        EVAULT_ANCHORS_WITNESS_RETRY_MAX_SECONDS="0.5",
        EVAULT_LEDGER_CHECKPOINT_INTERVAL="0.1",
    )
    node = Node(name, tmp / name, env, free_port())
    evault(node.data, env, "init")
    node.log_vkey = evault(node.data, env, "ledger", "vkey").strip()
    node.witness_vkey = evault(node.data, env, "witness", "vkey").strip()
    return node


def witness_each_other(x: Node, y: Node) -> None:
    """``x`` submits to ``y``'s witness and witnesses ``y``'s log."""
    with (x.data / "evault.toml").open("a", encoding="utf-8") as f:
        f.write(
            f'\n[[anchors.witnesses]]\nname = "{y.name}"\nurl = "{y.url}"\n'
            f'vkey = "{y.witness_vkey}"\n\n'
            f'[[witness.logs]]\norigin = "{y.name}.test/ledger"\nvkey = "{y.log_vkey}"\n'
        )


@contextmanager
def serving(node: Node) -> Iterator[Service]:
    log = (node.data / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "--data", str(node.data), "serve",
         "--listen", f"127.0.0.1:{node.port}"],
        stdout=log, stderr=subprocess.STDOUT, text=True, env=node.env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (node.data / "serve.log").read_text()
            try:
                with urllib.request.urlopen(node.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (node.data / "serve.log").read_text()
            time.sleep(0.2)
        yield Service(url=node.url, data=node.data, env=node.env, proc=proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@dataclass
class Pair:
    a: World
    b: World
    na: Node
    nb: Node
    package: Path
    tmp: Path


def wait_for(what: str, probe: object, limit: float = 30.0) -> object:
    deadline = time.monotonic() + limit
    while True:
        got = probe()  # type: ignore[operator]
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


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
def pair(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    from vault.db import with_database

    tmp = tmp_path_factory.mktemp("witnessed")
    dbs = [asyncio.run(_create_db(pg_admin_dsn)) for _ in range(2)]
    try:
        na, nb = (
            prepare(n, with_database(pg_admin_dsn, d), tmp) for n, d in zip("ab", dbs, strict=True)
        )
        witness_each_other(na, nb)
        witness_each_other(nb, na)
        with ExitStack() as stack:
            sa, sb = stack.enter_context(serving(na)), stack.enter_context(serving(nb))
            a, b = World(sa), World(sb)
            a.tokens = asyncio.run(seed_people(sa))
            r = a.upload("dock1", "plain.mp4", os.urandom(40_000))
            assert r.status == 201, r.body
            body = json.dumps({"evidence_id": r.json()["evidence_id"]}).encode()
            assert a.call("POST", "/v1/cases/C1/evidence", who="casesys", body=body).status == 201
            yield Pair(a, b, na, nb, export(a, tmp / "pkg"), tmp)
    finally:
        for d in dbs:
            asyncio.run(_drop_db(pg_admin_dsn, d))


def evault_verify(p: Pair, package: Path, *args: str) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-m", "verify", str(package), "--vkey", p.na.log_vkey, *args],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    return out.returncode, out.stdout + out.stderr


def test_package_carries_the_neighbours_cosignature(pair: Pair) -> None:
    manifest = json.loads((pair.package / "manifest.json").read_bytes())
    assert manifest["cosignatures"]["path"] == "cosignatures"
    lines = (pair.package / "cosignatures").read_text()
    body = parse_note((pair.package / "checkpoint").read_text()).text
    (sig,) = signature_lines(body, lines)
    verify_cosignature(sig, body, parse_cosigner_vkey(pair.nb.witness_vkey))
    assert "b.test/ledger/witness" in (pair.package / "report.html").read_text()
    listed = evault(pair.na.data, pair.na.env, "witness", "cosignatures")
    assert f"\tb.test/ledger/witness+{sig.key_id.hex()}\t" in listed


def test_verifies_with_the_witness_and_threshold_1(pair: Pair) -> None:
    code, out = evault_verify(pair, pair.package, "--witness", pair.nb.witness_vkey)
    assert code == 0, out
    assert "witness  b.test/ledger/witness+" in out and "checked" in out
    code, out = evault_verify(
        pair, pair.package, "--witness", pair.nb.witness_vkey, "--witness-threshold", "1", "--json"
    )
    report = json.loads(out)
    assert code == 0 and report["verdict"] == "ok" and report["witnesses"][0]["checked"]


def test_threshold_2_with_one_witness_that_cosigned_is_wrong_key(pair: Pair) -> None:
    stranger = Cosigner.generate("c.test/witness").key.vkey
    code, out = evault_verify(
        pair, pair.package, "--witness", pair.nb.witness_vkey, "--witness", stranger,
        "--witness-threshold", "2",
    )  # fmt: skip
    assert code == 2, out
    assert "1 of the 2 witnesses given cosigned" in out and "requires 2" in out


def test_edited_cosignature_is_tampered(pair: Pair) -> None:
    forged = pair.tmp / "forged-cosignature"
    shutil.copytree(pair.package, forged)
    prefix, b64 = (forged / "cosignatures").read_text().rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    (forged / "cosignatures").write_text(f"{prefix} {base64.b64encode(bytes(raw)).decode()}\n")
    code, out = evault_verify(pair, forged, "--witness", pair.nb.witness_vkey)
    assert code == 1, out
    assert "cosignature-invalid" in out or "does not verify" in out


def test_without_witness_keys_the_cosigner_is_listed_not_checked(pair: Pair) -> None:
    code, out = evault_verify(pair, pair.package)
    assert code == 0, out
    assert "b.test/ledger/witness" in out and "NOT checked" in out


def test_usage_errors_for_witness_flags(pair: Pair) -> None:
    code, out = evault_verify(pair, pair.package, "--witness", pair.na.log_vkey)
    assert code == 4 and "not a cosignature/v1 key" in out
    code, out = evault_verify(pair, pair.package, "--witness-threshold", "1")
    assert code == 4 and "needs at least one --witness" in out
    code, out = evault_verify(
        pair, pair.package, "--witness", pair.nb.witness_vkey, "--witness-threshold", "2"
    )
    assert code == 4 and "between 1 and the 1" in out
    proof = pair.tmp / "entry0.tlog-proof"
    proof.write_text(evault(pair.na.data, pair.na.env, "ledger", "proof", "0"))
    code, out = evault_verify(pair, proof, "--witness", pair.nb.witness_vkey)
    assert code == 4 and "is not a package" in out


def test_the_other_direction_b_is_witnessed_by_a(pair: Pair) -> None:
    def cosigned() -> bytes | None:
        r = pair.b.call("GET", "/ledger/cosigned-checkpoint")
        return r.body if r.status == 200 else None

    note = wait_for("a's cosignature of b's checkpoint", cosigned)
    assert isinstance(note, bytes)
    text = note.decode()
    verify_note(text, parse_vkey(pair.nb.log_vkey))  # still the log's note
    parsed = parse_note(text)
    key = parse_cosigner_vkey(pair.na.witness_vkey)
    mine = [s for s in parsed.signatures if s.name == key.name]
    assert mine and verify_cosignature(mine[0], parsed.text, key) > 0
    size = parsed.text.split("\n")[1]
    r = pair.b.call("GET", f"/ledger/cosignatures/{size}")
    assert r.status == 200 and r.body.decode().startswith("\u2014 a.test/ledger/witness ")
    assert pair.b.call("GET", "/ledger/cosignatures/999999").status == 404
