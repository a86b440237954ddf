"""Logs as JSON lines: time, level, component, message, request id; never a token or key."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

# Anything that looks like a bearer token, a note private key or a DSN password is masked.
_SECRETS = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (re.compile(r"PRIVATE\+KEY\+\S+"), "PRIVATE+KEY+***"),
    (re.compile(r"(evt_)[A-Za-z0-9_-]{8,}"), r"\1***"),
    (re.compile(r"://([^:@/\s]*):[^@/\s]*@"), r"://\1:***@"),
]


def redact(text: str) -> str:
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "component": record.name,
            "message": redact(record.getMessage()),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(
        logging.WARNING if level != "debug" else logging.INFO
    )
