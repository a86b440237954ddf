"""report.html, read by a clerk next to `evault-verify`'s output: local times with their offset
(the deployment's zone, `export.timezone`) and the checkpoint root exactly as the verifier
prints it. Real CLI against a real `evault serve`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.ops_fixtures import evault, running_service

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")

TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def _verify(package: Path, vkey: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "verify", str(package), "--vkey", vkey],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_attack_clerk_compares_report_root_and_times_with_the_verifier(
    tmp_path: Path, pg_dsn: str
) -> None:
    data = tmp_path / "data"
    with running_service(data, pg_dsn) as svc:
        out = svc.evault("demo", "--url", svc.url, "--timeout", "120").stdout
        package = Path(re.search(r"^  package\s+(\S+)$", out, re.M)[1])  # type: ignore[index]
        vkey = re.search(r"--vkey '([^']+)'", out)[1]  # type: ignore[index]
        case = re.search(r"registered case (\S+)", out)[1]  # type: ignore[index]
        printed = _verify(package, vkey)
        root = re.search(r"root (\S+)", printed)[1]  # type: ignore[index]
        report = (package / "report.html").read_text(encoding="utf-8")
        # the root the verifier prints (base64), not some other encoding of it
        assert f"<code>{root}</code>" in report
        assert "(UTC)" not in report
        # every time in the default zone, Beijing, with its offset
        assert "Asia/Shanghai, UTC+08:00" in report
        times = re.findall(rf"{TIME} [+-]\d\d:\d\d", report)
        assert len(times) >= 4 and all(t.endswith("+08:00") for t in times), times
        assert not re.search(r"\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", report)

        # the zone is configurable (EVAULT_EXPORT_TIMEZONE overrides export.timezone)
        other = tmp_path / "ny"
        env = {**svc.env, "EVAULT_EXPORT_TIMEZONE": "America/New_York"}
        evault(data, "export", case, "--out", str(other), "--as", "demo-legal-reviewer", env=env)
        report = (other / "report.html").read_text(encoding="utf-8")
        assert re.search(r"America/New_York, UTC-0[45]:00", report)
        times = re.findall(rf"{TIME} [+-]\d\d:\d\d", report)
        assert times and all(t[-6:] in ("-05:00", "-04:00") for t in times), times
        assert "root" in _verify(other, vkey)

        # an unknown zone is refused when the configuration loads, naming the key
        env["EVAULT_EXPORT_TIMEZONE"] = "Mars/Olympus_Mons"
        bad = evault(data, "export", case, "--out", str(tmp_path / "x"), env=env, check=False)
        assert bad.returncode != 0 and "export.timezone" in bad.stderr, bad.stderr
        assert not (tmp_path / "x").exists()
