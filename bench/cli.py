"""Command-line start-up: how long a user waits for the simplest commands.

Usage: python bench/cli.py [--runs 15]

Times, interleaved (one run of each per round, so shared or noisy CPUs hit every target alike),
the wall-clock time of a new process for

  baseline        python3 -c "import argparse"   (an interpreter that parses arguments)
  evault-help     evault --help
  evault-vkey     evault ledger vkey             (reads the key file of a data folder made by
                                                  `evault init` in a temp dir beforehand)
  verify-help     evault-verify --help

each run as its installed entry point runs it (``from api.cli import main; sys.exit(main())``,
what pip's .venv/bin/evault script does), with the interpreter running this script and this
checkout first on PYTHONPATH. Before timing,
each command runs once with bytecode writing allowed (PYTHONDONTWRITEBYTECODE removed for the
children), so the figures are those of an installed package, whose modules are compiled once.
Prints the median wall-clock time of each and its ratio to the baseline's median, and the same
for the CPU time the process used (user + system: steadier when the CPUs are shared and busy;
shown for information). Target: every wall-clock ratio <= 3. The last lines are one per
target: ``target NAME: VALUE (GOAL) met`` or ``MISSED``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL = 3.0
# What the installed entry points (.venv/bin/evault, .venv/bin/evault-verify) run.
ENTRY = "import sys; from {module} import main; sys.exit(main())"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _once(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds) of one run of ``cmd``."""
    cpu, t = _cpu(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, check=False)
    took, used = time.perf_counter() - t, _cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()}")
    return took, used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds (median reported)")
    args = parser.parse_args(argv)
    env = _env()
    py = sys.executable
    work = tempfile.mkdtemp(prefix="evault-bench-cli-")
    try:
        data = str(Path(work) / "data")
        _once([py, "-m", "api.cli", "--data", data, "init"], env, work)
        evault = [py, "-c", ENTRY.format(module="api.cli")]
        verify = [py, "-c", ENTRY.format(module="verify.cli")]
        commands = {
            "baseline": [py, "-c", "import argparse"],
            "evault-help": [*evault, "--help"],
            "evault-vkey": [*evault, "--data", data, "ledger", "vkey"],
            "verify-help": [*verify, "--help"],
        }
        for cmd in commands.values():  # compile once, as an installed package is
            _once(cmd, env, work)
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                wall, cpu = _once(cmd, env, work)
                times[name].append(wall)
                cpus[name].append(cpu)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(times["baseline"])
    base_cpu = statistics.median(cpus["baseline"])
    print(f"python {sys.version.split()[0]}  cpus {os.cpu_count()}  runs {args.runs} (median)")
    print(f"  {'command':<12} {'wall':>9}  {'ratio':>6}  {'cpu':>9}  {'ratio':>6}")
    for name, got in times.items():
        med, cpu = statistics.median(got), statistics.median(cpus[name])
        print(
            f"  {name:<12} {med * 1000:6.1f} ms  ×{med / base:5.2f}  "
            f"{cpu * 1000:6.1f} ms  ×{cpu / base_cpu:5.2f}"
        )
    print()
    for name in ("evault-help", "evault-vkey", "verify-help"):
        ratio = statistics.median(times[name]) / base
        verdict = "met" if ratio <= GOAL else "MISSED"
        print(f"target {name}: {ratio:.2f}× baseline (<= {GOAL:g}×) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
