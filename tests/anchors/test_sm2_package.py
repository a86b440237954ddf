"""End to end: `evault serve` with an SM2 cosigning key (anchors.sm2_key / sm2_cert, made by
OpenSSL under a test bureau CA) signs checkpoints with a second, SM2 line; a package exported
over HTTP and a dock receipt verify with `evault-verify --sm2-key` (the certificate or the bare
public key), and fail, naming the reason, with another SM2 key, another user ID, or an edited
checkpoint. report.html shows the cosignature and the key's fingerprint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.anchors.sm2_fixtures import Sm2Pki, make_sm2_key, make_sm2_pki, needs_sm2
from tests.anchors.test_timestamp_package import export
from tests.api.http_fixtures import World, seeded_service
from verify import sm2
from verify.note import parse_note

pytestmark = needs_sm2


@dataclass
class Cosigned:
    w: World
    pki: Sm2Pki
    vkey: str
    package: Path
    receipt: Path
    tmp: Path


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cosigned]:
    tmp = tmp_path_factory.mktemp("sm2")
    pki = make_sm2_pki(tmp / "pki")
    env = {"EVAULT_ANCHORS_SM2_KEY": str(pki.key), "EVAULT_ANCHORS_SM2_CERT": str(pki.cert)}
    with seeded_service(pg_admin_dsn, tmp / "data", env) as w:
        r = w.upload("dock1", "plain.mp4", os.urandom(50_000))
        assert r.status == 201, r.body
        receipt = tmp / "plain.evault-receipt.json"
        receipt.write_bytes(r.body)
        body = json.dumps({"evidence_id": r.json()["evidence_id"]}).encode()
        assert w.call("POST", "/v1/cases/C1/evidence", who="casesys", body=body).status == 201
        vkey = w.call("GET", "/ledger/vkey").body.decode().strip()
        yield Cosigned(w, pki, vkey, export(w, tmp / "pkg"), receipt, tmp)


def evault_verify(c: Cosigned, target: Path, *args: str | Path) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-m", "verify", str(target), "--vkey", c.vkey, *map(str, args)],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])),
    )  # fmt: skip
    return out.returncode, out.stdout + out.stderr


def test_served_checkpoint_carries_the_sm2_line(world: Cosigned) -> None:
    note = world.w.call("GET", "/ledger/checkpoint").body.decode()
    log_line, sm2_line = parse_note(note).signatures
    pub = sm2.load_public_key(world.pki.cert.read_bytes())
    assert sm2_line.name == log_line.name + "/sm2"
    assert sm2_line.key_id == sm2.key_id(sm2_line.name, pub)
    text = parse_note(note).text.encode()
    assert sm2.verify(pub, text, *sm2.decode_signature(sm2_line.signature))


def test_package_verifies_with_the_certificate_or_the_public_key(world: Cosigned) -> None:
    for key in (world.pki.cert, world.pki.pub):
        code, out = evault_verify(world, world.package, "--sm2-key", key)
        assert code == 0, out
        assert "sm2      cosigned by " in out and "checked ✓ against --sm2-key" in out
    code, out = evault_verify(world, world.package, "--sm2-key", world.pki.cert, "--json")
    report = json.loads(out)
    assert report["verdict"] == "ok"
    assert report["sm2"]["fingerprint"] == sm2.fingerprint(
        sm2.load_public_key(world.pki.pub.read_bytes())
    )


def test_report_html_shows_the_sm2_cosignature_and_fingerprint(world: Cosigned) -> None:
    html = (world.package / "report.html").read_text()
    fp = sm2.fingerprint(sm2.load_public_key(world.pki.pub.read_bytes()))
    assert "SM2 联署 SM2 cosignature</th><td>是 Yes" in html and fp in html


def test_attack_another_sm2_key_fails_as_wrong_key(world: Cosigned) -> None:
    impostor = make_sm2_key(world.tmp / "impostor", "impostor")
    code, out = evault_verify(world, world.package, "--sm2-key", impostor.cert)
    assert code == 2, out
    assert "no SM2 cosignature by the key given" in out and "WRONG KEY" in out
    code, out = evault_verify(world, world.receipt, "--sm2-key", impostor.pub)
    assert code == 2 and "no SM2 cosignature by the key given" in out, out


def test_attack_another_user_id_fails_naming_it(world: Cosigned) -> None:
    code, out = evault_verify(world, world.package, "--sm2-key", world.pki.cert, "--sm2-id", "x")
    assert code == 1, out
    assert "does not verify" in out and "user ID 'x'" in out


def test_attack_edited_checkpoint_fails_the_sm2_check(world: Cosigned) -> None:
    p = world.tmp / "edited"
    shutil.copytree(world.package, p)
    note = (p / "checkpoint").read_text()
    lines = note.split("\n")
    lines[1] = str(int(lines[1]) + 1)  # another tree size
    (p / "checkpoint").write_text("\n".join(lines))
    code, out = evault_verify(world, p, "--sm2-key", world.pki.cert, "--json")
    assert code == 1, out
    codes = {f["code"] for f in json.loads(out)["findings"]}
    assert "sm2-signature" in codes, codes


def test_receipt_verifies_with_the_sm2_key(world: Cosigned) -> None:
    code, out = evault_verify(world, world.receipt, "--sm2-key", world.pki.cert)
    assert code == 0, out
    assert "cosigned by the SM2 key" in out


def test_unreadable_sm2_key_is_a_usage_error_in_one_line(world: Cosigned) -> None:
    bogus = world.tmp / "bogus.pem"
    bogus.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    code, out = evault_verify(world, world.package, "--sm2-key", bogus)
    assert code == 4 and out.count("\n") == 1 and "--sm2-key" in out, out
    code, out = evault_verify(world, world.package, "--sm2-key", world.tmp / "absent.pem")
    assert code == 4 and "Traceback" not in out, out


def test_integrity_report_checkpoint_is_checked_for_the_sm2_cosignature(world: Cosigned) -> None:
    r = world.w.call("GET", "/v1/cases/C1/integrity-report", who="legal")
    assert r.status == 200, r.body
    saved = world.tmp / "integrity-report.json"
    saved.write_bytes(r.body)
    code, out = evault_verify(world, saved, "--sm2-key", world.pki.cert)
    assert code == 0 and "cosigned by the SM2 key" in out, out
    impostor = make_sm2_key(world.tmp / "impostor2", "impostor2")
    code, out = evault_verify(world, saved, "--sm2-key", impostor.pub)
    assert code == 2 and "no SM2 cosignature by the key given" in out, out
