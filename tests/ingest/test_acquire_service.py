"""End to end: a real `evault serve` watches dock-01; a dropped file gets its receipt."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

from tests.api.service_fixtures import running_service

NAME = "DEV07_OFF42_20250102093000.mp4"


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def test_dropped_file_is_acquired_by_the_service(pg_dsn: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_service(data, pg_dsn) as svc:
        ready = json.loads(get(svc.url + "/readyz"))
        assert ready["checks"]["watchers"] == "ok"
        assert ready["checks"]["scrub"] == "ok"  # the scheduled scrub runs in serve
        dock = data / "docks" / "dock-01"
        payload = os.urandom(200_000)
        (dock / (".incoming-" + NAME)).write_bytes(payload)
        os.rename(dock / (".incoming-" + NAME), dock / NAME)  # how stations usually finish
        receipt = dock / (NAME + ".evault-receipt.json")
        deadline = time.monotonic() + 20
        while not receipt.exists():
            assert time.monotonic() < deadline, (data / "serve.log").read_text()[-3000:]
            time.sleep(0.2)
        body = json.loads(receipt.read_bytes())
        assert body["kind"] == "acquired" and body["size"] == len(payload)
        metrics = get(svc.url + "/metrics")
        assert 'evault_ingest_acquired_files_total{dock="dock-01"} 1.0' in metrics
        deadline = time.monotonic() + 5
        while 'evault_ingest_backlog{dock="dock-01"} 0.0' not in metrics:
            assert time.monotonic() < deadline, "backlog gauge never went back to 0"
            time.sleep(0.2)
            metrics = get(svc.url + "/metrics")
        # The same file handed in by hand is recognised as held (a re-offer), not stored twice.
        copy = tmp_path / "stick" / "copy.mp4"
        copy.parent.mkdir()
        copy.write_bytes(payload)
        out = svc.evault("ingest", str(copy), "--dock", "dock-01")
        line = json.loads(out.stdout.splitlines()[-1])
        assert line["receipt"]["kind"] == "reoffered"
        assert line["receipt"]["evidence_id"] == body["evidence_id"]
        assert copy.read_bytes() == payload  # outside the dock: kept
