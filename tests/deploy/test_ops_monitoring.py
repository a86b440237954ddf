"""deploy/prometheus/alerts.yml and deploy/grafana/evidence-vault.json: they load, promtool accepts
the rules (and their behaviour on sample series), and they name only metrics the service
exports — counted from prometheus_client's registry after importing every module."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "evidence-vault.json"
METRIC = re.compile(r"\bevault_[a-z0-9_]+\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported_names() -> set[str]:
    """Every sample name the service can export (all modules of every package imported)."""
    for package in ("verify", "vault", "ingest", "api"):
        pkg = importlib.import_module(package)
        for mod in pkgutil.walk_packages(pkg.__path__, package + "."):
            if not mod.name.endswith("__main__"):
                importlib.import_module(mod.name)
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return {n for n in names if n.startswith("evault_")}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is absent (make test installs it from the Debian package prometheus)")
    return found


def test_disk_gauges_are_exported() -> None:
    assert {"evault_disk_free_bytes", "evault_disk_total_bytes"} <= exported_names()


def test_alert_rules_name_only_exported_metrics() -> None:
    text = ALERTS.read_text(encoding="utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    used = set(METRIC.findall(code))
    assert used, "no metric found in the alert rules"
    unknown = used - exported_names()
    assert not unknown, f"alert rules name metrics the service does not export: {sorted(unknown)}"


def test_alert_rules_cover_the_issue() -> None:
    names = set(re.findall(r"- alert: (\w+)", ALERTS.read_text(encoding="utf-8")))
    assert {
        "EvaultAcquisitionStalled",
        "EvaultDockBacklogGrowing",
        "EvaultIntegrityFailure",
        "EvaultNoRecentCheckpoint",
        "EvaultDiskLow",
        "EvaultMediaFailuresRising",
    } <= names


def test_promtool_checks_the_rules() -> None:
    proc = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_fire_on_sample_series(tmp_path: Path) -> None:
    """promtool test rules: each alert fires on the series it is about, and not otherwise."""
    tool = promtool()
    yaml = pytest.importorskip("yaml")
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # expected alerts are compared without them
    (tmp_path / "rules.json").write_text(json.dumps(rules))
    a = 'job="evidence-vault",instance="a"'
    series = [
        (f'evault_integrity_failures_total{{{a},source="scrub"}}', "0 1 1 1"),
        (f"evault_ledger_checkpoint_timestamp_seconds{{{a}}}", "60x40"),
        (f"evault_ledger_size{{{a}}}", "10+1x40"),
        (f"evault_ledger_checkpoint_size{{{a}}}", "10x40"),
        (f'evault_ingest_backlog{{{a},dock="stuck"}}', "3x40"),
        (f'evault_ingest_acquired_files_total{{{a},dock="stuck"}}', "5x40"),
        (f'evault_ingest_backlog{{{a},dock="busy"}}', "3x40"),
        (f'evault_ingest_acquired_files_total{{{a},dock="busy"}}', "0+1x40"),
        (f'evault_disk_free_bytes{{{a},volume="store"}}', "5x40"),
        (f'evault_disk_total_bytes{{{a},volume="store"}}', "100x40"),
        (f'evault_disk_free_bytes{{{a},volume="data"}}', "50x40"),
        (f'evault_disk_total_bytes{{{a},volume="data"}}', "100x40"),
        (f"evault_anchor_timestamp_lag_seconds{{{a}}}", "0x5 4000x35"),
        (f'evault_anchor_witness_lag_seconds{{{a},witness="w1"}}', "0x5 1000x35"),
        (f'evault_anchor_witness_refusals_total{{{a},witness="w1",reason="fork"}}', "0x30 1x10"),
    ]
    base = {"job": "evidence-vault", "instance": "a"}
    cases = [
        (2, "EvaultIntegrityFailure", [{"severity": "critical", **base, "source": "scrub"}]),
        (25, "EvaultNoRecentCheckpoint", [{"severity": "critical", "job": "evidence-vault"}]),
        (35, "EvaultAcquisitionStalled", [{"severity": "warning", **base, "dock": "stuck"}]),
        (15, "EvaultDiskLow", [{"severity": "warning", **base, "volume": "store"}]),
        (15, "EvaultMediaFailuresRising", []),
        (5, "EvaultTimestampsBehind", []),
        (20, "EvaultTimestampsBehind", [{"severity": "warning", "job": "evidence-vault"}]),
        (3, "EvaultWitnessBehind", []),
        (
            15,
            "EvaultWitnessBehind",
            [{"severity": "warning", "job": "evidence-vault", "witness": "w1"}],
        ),
        (20, "EvaultWitnessRefused", []),
        (32, "EvaultWitnessRefused", [{"severity": "critical", "job": "evidence-vault"}]),
    ]
    test = {
        "rule_files": [str(tmp_path / "rules.json")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [
                    {
                        "eval_time": f"{t}m",
                        "alertname": name,
                        "exp_alerts": [{"exp_labels": labels} for labels in expected],
                    }
                    for t, name, expected in cases
                ],
            }
        ],
    }
    (tmp_path / "test.json").write_text(json.dumps(test))
    proc = subprocess.run(
        [tool, "test", "rules", str(tmp_path / "test.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_names_only_exported_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dash["uid"] == "evidence-vault" and dash["panels"]
    exprs = [
        t["expr"]
        for panel in dash["panels"]
        for t in panel.get("targets", [])
        if isinstance(t.get("expr"), str)
    ]
    used = {name for e in exprs for name in METRIC.findall(e)}
    unknown = used - exported_names()
    assert not unknown, (
        f"the dashboard names metrics the service does not export: {sorted(unknown)}"
    )
    # Every subsystem's core metric has a panel.
    for core in (
        "evault_ledger_size",
        "evault_ledger_checkpoint_timestamp_seconds",
        "evault_ingest_backlog",
        "evault_ingest_acquired_files_total",
        "evault_media_jobs_total",
        "evault_http_request_seconds_count",
        "evault_integrity_failures_total",
        "evault_disk_free_bytes",
    ):
        assert core in used, f"no panel shows {core}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
