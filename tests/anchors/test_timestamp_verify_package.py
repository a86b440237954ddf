"""evault-verify on packages carrying timestamp.tsr (built by tests/verify/package_builder, the
token by OpenSSL's TSA): the format's rules for the new member, folder and zip alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.anchors.tsa_fixtures import OpenSslTsa, Pki, make_pki, needs_openssl
from tests.verify.package_builder import Built, build_package, expect, verify_json
from verify import package as pkg
from verify.errors import MalformedError
from verify.timestamp import checkpoint_imprint, timestamp_request

pytestmark = needs_openssl


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tsa(pki: Pki) -> Iterator[OpenSslTsa]:
    t = OpenSslTsa(pki)
    yield t
    t.close()


def with_token(built: Built, token: bytes) -> Built:
    built.write(pkg.TIMESTAMP_PATH, token)
    stamp = (pkg.TIMESTAMP_PATH, hashlib.sha256(token).hexdigest(), len(token))
    built.set_manifest(dataclasses.replace(built.manifest, timestamp=stamp), resign=built.signer)
    return built


@pytest.fixture(scope="module")
def stamped(tsa: OpenSslTsa, tmp_path_factory: pytest.TempPathFactory) -> Built:
    built = build_package(tmp_path_factory.mktemp("stamped") / "pkg", sizes=(5000,))
    note = built.read(pkg.CHECKPOINT_PATH).decode()
    return with_token(built, tsa.reply(timestamp_request(checkpoint_imprint(note), 1)))


def test_manifest_round_trips_the_timestamp_member(stamped: Built) -> None:
    data = stamped.read(pkg.MANIFEST_PATH)
    m = pkg.parse_manifest(data)
    assert m.timestamp is not None and m.timestamp[0] == "timestamp.tsr"
    assert pkg.manifest_bytes(m) == data
    obj = json.loads(data)
    obj["timestamp"]["path"] = "elsewhere.tsr"
    with pytest.raises(MalformedError, match="timestamp path"):
        pkg.parse_manifest(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


def test_folder_and_zip_verify_with_the_attested_time(
    stamped: Built, pki: Pki, tmp_path: Path
) -> None:
    for path in (stamped.path, stamped.zip_to(tmp_path / "p.zip")):
        code, report = verify_json(path, stamped.vkey, "--tsa-ca", str(pki.ca_file))
        assert code == 0, report["findings"]
        t = report["timestamp"]
        assert t["checked"] is True and t["tsa"] == "CN=Test TSA,O=Test Bureau,C=CN"
        assert t["time"].endswith("Z") and t["policy"] == "1.3.6.1.4.1.99999.1"


def test_unchecked_without_tsa_ca_is_information_only(stamped: Built) -> None:
    code, report = verify_json(stamped.path, stamped.vkey)
    assert code == 0 and report["timestamp"]["checked"] is False
    (finding,) = [f for f in report["findings"] if f["code"] == "timestamp-unchecked"]
    assert finding["severity"] == "info" and "--tsa-ca" in finding["message"]


def test_attack_token_dropped_from_manifest_and_kept_is_unlisted(
    stamped: Built, tmp_path: Path
) -> None:
    b = stamped.copy_to(tmp_path / "unlisted")
    b.set_manifest(dataclasses.replace(b.manifest, timestamp=None), resign=b.signer)
    expect(verify_json(b.path, b.vkey), "tampered", "unlisted", "timestamp.tsr")


def test_asking_for_a_time_stamp_the_package_lacks_is_malformed(pki: Pki, tmp_path: Path) -> None:
    plain = build_package(tmp_path / "plain", sizes=(1000,))
    result = verify_json(plain.path, plain.vkey, "--tsa-ca", str(pki.ca_file))
    expect(result, "malformed", "timestamp-missing", "manifest.json", "no time-stamp")


def test_attack_token_for_an_older_checkpoint_of_the_same_log(
    stamped: Built, tsa: OpenSslTsa, pki: Pki, tmp_path: Path
) -> None:
    b = stamped.copy_to(tmp_path / "older")
    older = b.checkpoint_at(b.size - 1)
    with_token(b, tsa.reply(timestamp_request(checkpoint_imprint(older), 2)))
    result = verify_json(b.path, b.vkey, "--tsa-ca", str(pki.ca_file))
    expect(result, "tampered", "timestamp-imprint", "timestamp.tsr", "another checkpoint")


def test_attack_garbage_token_is_malformed(stamped: Built, pki: Pki, tmp_path: Path) -> None:
    b = with_token(stamped.copy_to(tmp_path / "garbage"), b"\x30\x03\x02\x01\x05")
    result = verify_json(b.path, b.vkey, "--tsa-ca", str(pki.ca_file))
    expect(result, "malformed", "timestamp-invalid", "timestamp.tsr", "cannot be read")


def test_bad_tsa_ca_file_is_a_usage_error(stamped: Built, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    from verify.cli import main

    assert main([str(stamped.path), "--vkey", stamped.vkey, "--tsa-ca", str(bad)]) == 4
    assert main([str(stamped.path), "--vkey", stamped.vkey, "--tsa-ca", str(tmp_path / "no")]) == 4
