"""Logs are JSON lines with time, level, component (and request id); never a token or a key."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

from api.logs import JsonFormatter, setup_logging
from tests.ops.ops_fixtures import evault, running_service


def _json_lines(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            assert isinstance(entry, dict)
            out.append(entry)
    return out


def test_formatter_writes_the_fields_and_masks_secrets() -> None:
    stream = io.StringIO()
    setup_logging("debug")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler.formatter, JsonFormatter)
    handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        log = logging.getLogger("evault.test")
        log.info(
            "Authorization: Bearer evt_abcdefghijklmnop; key PRIVATE+KEY+x+1234+AAAA; "
            "dsn postgresql://app:hunter2@db/evault",
            extra={"request_id": "req-123"},
        )
        try:
            raise ValueError("token evt_zyxwvutsrqponmlk in an exception")
        except ValueError:
            log.exception("failed")
    finally:
        setup_logging("warning")
    first, second = _json_lines(stream.getvalue())
    assert {"time", "level", "component", "message"} <= set(first)
    assert first["level"] == "info" and first["component"] == "evault.test"
    assert first["request_id"] == "req-123"
    text = stream.getvalue()
    for secret in ("abcdefghijklmnop", "PRIVATE+KEY+x", "hunter2", "zyxwvutsrqponmlk"):
        assert secret not in text
    assert second["level"] == "error" and "error" in second


def test_service_log_never_holds_a_token_or_the_key(tmp_path: Path, pg_dsn: str) -> None:
    data = tmp_path / "data"
    env = {"EVAULT_DATABASE_DSN": pg_dsn, "EVAULT_SERVICE_LOG_LEVEL": "debug"}
    with running_service(data, pg_dsn, extra_env=env) as svc:
        token = evault(data, "token", "create", "admin", env=env).stdout.strip()
        assert len(token) > 20
        key_path = data / "keys" / "ledger.skey"
        skey = key_path.read_text().strip()
        paths = [
            "/readyz",
            "/ledger/checkpoint",
            f"/ledger/tile/0/000?token={token}&key={key_path}",
            f"/no/such/{token}",
            f"/ledger/entry?path={key_path}&secret={skey}",
            "/v1/evidence",
            "/metrics",
        ]
        for path in paths:
            req = urllib.request.Request(
                svc.url + path,
                headers={"Authorization": f"Bearer {token}", "X-Key-Path": str(key_path)},
            )
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    r.read()
            except urllib.error.HTTPError as exc:
                exc.read()
        evault(data, "ledger", "note", f"key at {key_path}", env=env)
    log = (data / "serve.log").read_text(encoding="utf-8")
    assert token not in log and token.split("_", 1)[-1] not in log
    assert skey not in log and skey.rsplit("+", 1)[-1] not in log
    entries = _json_lines(log)
    assert entries, "the service wrote no JSON log line"
    for entry in entries:
        assert {"time", "level", "component"} <= set(entry), entry
    access = [e for e in entries if e["component"] == "evault.access"]
    if importlib.util.find_spec("api.accesslog") is not None:
        assert len(access) >= len(paths), "every request has an access line"
    for entry in access:
        assert entry.get("request_id"), entry
