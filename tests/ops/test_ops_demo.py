"""`evault demo` end to end against a fresh data directory and a real `evault serve`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.ops.ops_fixtures import evault, running_service
from verify.note import parse_vkey
from verify.package_checks import verify_package

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


def test_demo_runs_twice_and_its_package_verifies(tmp_path: Path, pg_dsn: str) -> None:
    data = tmp_path / "data"
    with running_service(data, pg_dsn) as svc:
        cases = []
        for n in range(2):
            if n == 0:
                run = svc.evault("demo", "--url", svc.url, "--timeout", "120")
            else:  # the README's form: options after the command
                run = subprocess.run(
                    [sys.executable, "-m", "api.cli", "demo", "--data", str(data),
                     "--url", svc.url, "--timeout", "120"],
                    capture_output=True, text=True, env=svc.env, timeout=300,
                )  # fmt: skip
                assert run.returncode == 0, run.stdout + run.stderr
            out = run.stdout
            assert "VERIFIED" in out, out
            package = Path(re.search(r"^  package\s+(\S+)$", out, re.M)[1])  # type: ignore[index]
            assert (package / "report.html").is_file()
            # plaintext of the footage: the owner's only (files 0600, folders 0700)
            for p in [package, *package.rglob("*")]:
                want = 0o700 if p.is_dir() else 0o600
                assert p.stat().st_mode & 0o777 == want, (p, oct(p.stat().st_mode))
            vkey = re.search(r"--vkey '([^']+)'", out)[1]  # type: ignore[index]
            report = verify_package(package, parse_vkey(vkey))
            assert report.verdict == "ok"
            assert report.counts["files"] >= 4
            case = re.search(r"registered case (\S+)", out)[1]  # type: ignore[index]
            cases.append(case)
            assert svc.url in out
            # the console's address and a working token for the demo's legal reviewer
            assert f"  console        {svc.url}/console/   sign in as demo-legal-reviewer" in out
            token = re.search(r"^  token          (\S+)$", out, re.M)[1]  # type: ignore[index]
            assert _get(svc.url + "/console/")[0] == 200
            status, body = _get(f"{svc.url}/v1/cases/{case}", token)
            assert status == 200 and json.loads(body)["evidence_count"] >= 4
        assert cases[0] != cases[1], "each run registers a new case"
        fsck = svc.evault("ledger", "fsck")
        assert fsck.stdout.startswith("ok:")


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return int(r.status), r.read()


def test_demo_without_a_service_says_how_to_start_it(tmp_path: Path, pg_dsn: str) -> None:
    env = {"EVAULT_DATABASE_DSN": pg_dsn}
    data = tmp_path / "data"
    evault(data, "init", env=env)
    proc = evault(data, "demo", "--url", "http://127.0.0.1:9", env=env, check=False)
    assert proc.returncode != 0
    assert "no evidence-vault service answers" in proc.stderr
    assert f"evault --data {data} serve" in proc.stderr
    assert not list((data / "docks" / "dock-01").iterdir()), "nothing dropped without a service"
