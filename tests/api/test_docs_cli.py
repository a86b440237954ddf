"""Every CLI command is documented in the README (a new command without docs fails here)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from api.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _commands(parser: argparse.ArgumentParser, prefix: str = "evault") -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _commands(sub, f"{prefix} {name}")
                out.extend(nested or [f"{prefix} {name}"])
    return out


def test_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = _commands(build_parser())
    assert "evault ledger fsck" in commands
    missing = [c for c in commands if f"`{c}" not in readme]
    assert not missing, f"commands missing from README.md: {missing}"


def _subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def test_fsck_state_is_an_option_and_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    fsck = _subparser(build_parser(), "ledger", "fsck")
    options = {o for a in fsck._actions for o in a.option_strings}
    assert {"--state", "--json"} <= options
    assert "`evault ledger fsck --state [--json]`" in readme


def test_every_evault_verify_option_is_documented() -> None:
    from verify.cli import _parser

    docs = (ROOT / "README.md").read_text(encoding="utf-8") + "".join(
        p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))
    )
    options = {o for a in _parser()._actions for o in a.option_strings if o.startswith("--")}
    assert {"--sm2-key", "--sm2-id", "--tsa-ca"} <= options
    fences = re.findall(r"```.*?```", docs, re.S)  # options are written as code
    spans = fences + re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", docs, flags=re.S))
    missing = sorted(
        o for o in options - {"--help"} if not any(re.search(rf"{o}\b(?!-)", c) for c in spans)
    )
    assert not missing, f"evault-verify options missing from README.md and docs/: {missing}"
