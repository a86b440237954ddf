"""Docs that must not drift from the code."""

from __future__ import annotations

from pathlib import Path

from api.configdoc import config_reference

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_matches_the_model() -> None:
    doc = ROOT / "docs" / "configuration.md"
    assert doc.read_text(encoding="utf-8") == config_reference(), (
        "docs/configuration.md is stale: regenerate it with "
        "`evault config-reference > docs/configuration.md`"
    )
