"""Shared by tests/ops: the real-service fixture from tests/api, and cheap evidence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.api.service_fixtures import Service, running_service

__all__ = ["Service", "evault", "running_service"]


def evault(
    data: Path, *args: str, env: dict[str, str], check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run `evault --data DATA ARGS…` as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "api.cli", "--data", str(data), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"evault {' '.join(args)}: {proc.stdout}\n{proc.stderr}")
    return proc
