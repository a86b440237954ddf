"""What an operator installs from deploy/: it must load, and agree with the code."""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path

import pytest

from api.config import Config, default_toml
from vault.settings import build

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_example_config_is_the_generated_default() -> None:
    text = (DEPLOY / "evault.example.toml").read_text(encoding="utf-8")
    assert text == default_toml(), (
        "deploy/evault.example.toml is stale: regenerate it from api.config.default_toml()"
    )
    cfg = build(Config, tomllib.loads(text), source="evault.example.toml")
    assert cfg.docks[0].id == "dock-01"


def test_example_config_documents_every_key() -> None:
    from vault.settings import describe

    text = (DEPLOY / "evault.example.toml").read_text(encoding="utf-8")
    for doc in describe(Config):
        key = doc.key.rsplit(".", 1)[-1]
        if doc.type.startswith("list of tables") or doc.type == "table":
            continue
        # keys of a list of tables that is empty by default ([[subscribers]]) may be a commented
        # example
        commented = "[]." in doc.key and f"\n# {key} = " in text
        assert f"\n{key} = " in text or commented, (
            f"{doc.key} missing from the example configuration"
        )


UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "User": "evault",
}


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_systemd_units_are_hardened(unit: Path) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(unit)
    service = parser["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == value, f"{unit.name}: {key} should be {value}"
    assert "/var/lib/evidence-vault" in service["ReadWritePaths"]
    assert "LimitNOFILE" in service and "MemoryMax" in service
    part = unit.stem.removeprefix("evidence-vault").removeprefix("-")
    exec_start = service["ExecStart"]
    assert exec_start.split()[1] == "serve"
    if part:
        assert exec_start.endswith(f"--only {part}"), unit.name
    else:
        assert "--only" not in exec_start


def test_a_unit_per_part() -> None:
    assert {u.name for u in UNITS} == {
        "evidence-vault.service",
        "evidence-vault-api.service",
        "evidence-vault-ingest.service",
        "evidence-vault-media.service",
    }
