"""[anchors]: off by default; a TSA needs an http(s) URL and the CA file its tokens must chain to."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.config import load
from vault.errors import ConfigError


def write(tmp: Path, text: str) -> Path:
    p = tmp / "evault.toml"
    p.write_text(text)
    return p


def test_off_by_default_and_exports_do_not_wait(tmp_path: Path) -> None:
    cfg = load(str(write(tmp_path, "")), environ={})
    assert not cfg.anchors.tsa_enabled and cfg.anchors.export_wait == 0.0


def test_tsa_from_the_environment(tmp_path: Path) -> None:
    env = {
        "EVAULT_ANCHORS_TSA_URL": "https://tsa.example/tsr",
        "EVAULT_ANCHORS_TSA_CA_FILE": "tsa.pem",
    }
    cfg = load(str(write(tmp_path, "")), environ=env)
    assert cfg.anchors.tsa_enabled and cfg.anchors.export_wait == 10.0
    assert cfg.anchors.tsa_interval == 0.0  # every checkpoint


def test_tsa_without_its_ca_file_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "[anchors]\ntsa_url = 'https://tsa.example/tsr'\n")
    with pytest.raises(ConfigError, match=r"anchors\.tsa_ca_file is required"):
        load(str(p), environ={})


def test_tsa_url_must_be_http(tmp_path: Path) -> None:
    p = write(tmp_path, "[anchors]\ntsa_url = 'ftp://tsa.example'\ntsa_ca_file = 'x.pem'\n")
    with pytest.raises(ConfigError, match=r"anchors\.tsa_url: 'ftp://tsa.example' is not"):
        load(str(p), environ={})


def test_sm2_off_by_default_with_gmt_0009_user_id(tmp_path: Path) -> None:
    cfg = load(str(write(tmp_path, "")), environ={})
    assert not cfg.anchors.sm2_enabled and cfg.anchors.sm2_user_id == "1234567812345678"
    env = {"EVAULT_ANCHORS_SM2_KEY": "sm2.key", "EVAULT_ANCHORS_SM2_CERT": "sm2.pem"}
    assert load(str(write(tmp_path, "")), environ=env).anchors.sm2_enabled


def test_sm2_cert_without_key_name_with_space_or_empty_id_are_refused(tmp_path: Path) -> None:
    for text, match in (
        ("sm2_cert = 'c.pem'", r"anchors\.sm2_cert is set but anchors\.sm2_key is not"),
        ("sm2_key = 'k'\nsm2_key_name = 'a b'", r"anchors\.sm2_key_name 'a b' is not"),
        ("sm2_key = 'k'\nsm2_user_id = ''", r"anchors\.sm2_user_id must be 1 to 8191 bytes"),
    ):
        with pytest.raises(ConfigError, match=match):
            load(str(write(tmp_path, f"[anchors]\n{text}\n")), environ={})
