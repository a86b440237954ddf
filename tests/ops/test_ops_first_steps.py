"""The README's "First steps", run as written: parsed from README.md (so the test fails when the
README drifts from what works), from a fresh data directory, against a real `evault serve`.

The shell blocks of the section run line by line with bash in a folder that holds the data
directory (`./data`, as `make run` makes it) and a `.venv/bin/` whose `evault` and
`evault-verify` run this checkout. Two substitutions, both visible here: `EVIDENCE_ID` becomes
the evidence id of the receipt `evault ingest` printed, and the service's default address
`127.0.0.1:8420` the free port the test's service listens on. Then the console is opened in the
system's Chromium and the principal the README names signs in with the token it printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.console.console_fixtures import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS
from tests.ops.ops_fixtures import running_service

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ADDRESS = "127.0.0.1:8420"
pytestmark = [
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
    pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed"),
]


def first_steps(readme: str) -> tuple[str, list[str]]:
    """The section's text and its shell commands (comment and blank lines left out)."""
    found = re.search(r"^## First steps\n(.*?)(?=^## )", readme, re.M | re.S)
    assert found, "README.md has no '## First steps' section"
    text = found[1]
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S)
    assert blocks, "no ```sh block in First steps"
    lines = [ln for b in blocks for ln in b.splitlines() if ln.strip() and not ln.startswith("#")]
    return text, lines


def _venv(folder: Path) -> None:
    """`.venv/bin/evault` and `.venv/bin/evault-verify` running this checkout's code."""
    bin_ = folder / ".venv" / "bin"
    bin_.mkdir(parents=True)
    for name, module in (("evault", "api.cli"), ("evault-verify", "verify.cli")):
        script = bin_ / name
        script.write_text(
            f"#!/bin/sh\nexport PYTHONPATH={ROOT}\n"
            f"exec {sys.executable} -c 'import sys; from {module} import main; "
            f'sys.exit(main())\' "$@"\n'
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)


def _sign_in(url: str, token: str, case_id: str, evidence_id: str, profile: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page: Any = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(20_000)
            page.goto(url)
            page.fill("#token", token)
            page.click("form.signin button[type=submit]")
            page.wait_for_selector("#signout:not([hidden])")
            page.click(f"tr[data-case='{case_id}'] a")
            page.wait_for_selector(f"tr[data-evidence='{evidence_id}']")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "first-steps.png"), full_page=True)
        finally:
            context.close()


def test_readme_first_steps_as_written(tmp_path: Path, pg_dsn: str) -> None:
    if CHROMIUM is None:
        pytest.skip("no system Chromium (make test installs it)")
    text, lines = first_steps((ROOT / "README.md").read_text(encoding="utf-8"))
    assert all(ln.split()[0] in (".venv/bin/evault", ".venv/bin/evault-verify", "ffmpeg")
               for ln in lines), lines  # fmt: skip
    console = re.search(r"<(http://\S+/console/)> and sign in with (\w+)'s token", text)
    assert console, "First steps: no console address and principal to sign in as"
    _venv(tmp_path)
    with running_service(tmp_path / "data", pg_dsn) as svc:
        env = {**svc.env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.pop("EVAULT_DATA", None)
        env.pop("EVAULT_CONFIG", None)
        tokens: dict[str, str] = {}
        evidence_id = None
        last = None
        for line in lines:
            if "EVIDENCE_ID" in line:
                assert evidence_id, "EVIDENCE_ID used before `evault ingest` printed a receipt"
                line = line.replace("EVIDENCE_ID", evidence_id)
            last = subprocess.run(
                ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=120,
            )  # fmt: skip
            assert last.returncode == 0, f"{line}\n{last.stdout}\n{last.stderr}"
            if made := re.match(r"\.venv/bin/evault token create (\S+)", line):
                tokens[made[1]] = last.stdout.strip()
            if " ingest " in line:
                evidence_id = json.loads(last.stdout.splitlines()[0])["receipt"]["evidence_id"]
        assert last is not None and lines[-1].startswith(".venv/bin/evault-verify")
        assert "VERIFIED" in last.stdout, last.stdout  # the package verified offline (exit 0)
        case_id = re.search(r"evault case add (\S+)", text)[1]  # type: ignore[index]
        url = console[1].replace(DEFAULT_ADDRESS, svc.url.removeprefix("http://"))
        assert url != console[1], f"the README's console address is not {DEFAULT_ADDRESS}"
        assert evidence_id is not None
        _sign_in(url, tokens[console[2]], case_id, evidence_id, tmp_path / "profile")
