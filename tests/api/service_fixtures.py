"""Start a real `evault serve` in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Service:
    url: str
    data: Path
    env: dict[str, str]
    proc: subprocess.Popen[str]

    def evault(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "api.cli", "--data", str(self.data), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"evault {' '.join(args)}: {proc.stdout}\n{proc.stderr}")
        return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_service(
    data: Path, dsn: str | None, extra_env: dict[str, str] | None = None
) -> Iterator[Service]:
    env = dict(os.environ)
    if dsn:
        env["EVAULT_DATABASE_DSN"] = dsn
    env.update(extra_env or {})
    subprocess.run(
        [sys.executable, "-m", "api.cli", "--data", str(data), "init"],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    port = free_port()
    log = (data / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api.cli",
            "--data",
            str(data),
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError("evault serve exited: " + (data / "serve.log").read_text())
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    "evault serve not ready in 60 s: " + (data / "serve.log").read_text()
                )
            time.sleep(0.2)
        yield Service(url=url, data=data, env=env, proc=proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
