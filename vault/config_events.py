"""Configuration for the case system's other modules: legal review, publicity, event delivery.

Sections: ``[review]`` (coverage reports), ``[publicity]`` (publication-safe statistics),
``[events]`` (how deliveries are retried) and ``[[subscribers]]`` (who receives events).
:func:`check_subscribers` refuses at load what the dispatcher could not honour: duplicate ids,
URLs that are not http(s), unknown event types, and a secret given both or neither way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vault.errors import ConfigError
from vault.events import EVENT_TYPES
from vault.settings import setting

DEFAULT_RECORDING_REQUIRED = (
    "现场检查",
    "随机抽查",
    "调查取证",
    "证据保全",
    "听证",
    "行政强制",
    "送达",
)


@dataclass(frozen=True)
class ReviewConfig:
    """[review]: reports for the legal-review module (法制审核)."""

    recording_required: tuple[str, ...] = setting(
        factory=lambda: DEFAULT_RECORDING_REQUIRED,
        doc="Enforcement step types that must be recorded on audio/video (全过程记录); a "
        "coverage report names every such step that has no footage.",
    )


@dataclass(frozen=True)
class PublicityConfig:
    """[publicity]: publication-safe statistics for the publicity module (公示)."""

    public_statistics: bool = setting(
        False,
        "Serve /v1/public/statistics without a token. When false, a token of a principal "
        "with role case_system, auditor or admin is required.",
    )
    timezone: str = setting("Asia/Shanghai", "Time zone whose calendar years statistics count.")


@dataclass(frozen=True)
class EventsConfig:
    """[events]: delivery of the event outbox to the configured subscribers."""

    max_attempts: int = setting(
        50,
        "Attempts per delivery before it is marked failed (the next event then proceeds).",
        minimum=1,
        maximum=10000,
    )
    backoff_seconds: float = setting(
        2.0, "First retry delay; doubles per attempt up to backoff_cap_seconds.", minimum=0.01
    )
    backoff_cap_seconds: float = setting(
        3600.0, "Longest delay between two attempts of one delivery.", minimum=0.01
    )
    timeout_seconds: float = setting(
        10.0, "Time allowed for one POST, connection included.", minimum=0.1, maximum=300.0
    )
    poll_seconds: float = setting(
        1.0, "How often the outbox is polled for new events and due retries.", minimum=0.01
    )
    reconcile_seconds: float = setting(
        300.0,
        "How often every event since a subscriber's first is re-checked for a missing delivery "
        "(catches events committed late by long transactions).",
        minimum=1.0,
    )


@dataclass(frozen=True)
class SubscriberConfig:
    """[[subscribers]]: a module that receives HMAC-signed event POSTs."""

    id: str = setting(doc="Subscriber id (letters, digits, '.', '_', '-'); names its deliveries.")
    url: str = setting(doc="http(s) URL the events are POSTed to.")
    secret: str = setting("", "HMAC-SHA256 key for X-Evault-Signature (prefer secret_file).")
    secret_file: str = setting(
        "", "File holding the HMAC key (trailing newline ignored); relative to the data folder."
    )
    events: tuple[str, ...] = setting(
        factory=lambda: EVENT_TYPES,
        doc="Event types delivered: " + ", ".join(EVENT_TYPES) + ".",
    )


def check_subscribers(subscribers: Sequence[SubscriberConfig], source: str) -> None:
    """ConfigError for anything the dispatcher cannot honour (see the module docstring)."""
    seen: set[str] = set()
    for sub in subscribers:
        where = f"{source}: subscribers[{sub.id!r}]"
        if not sub.id or not all(c.isascii() and (c.isalnum() or c in "._-") for c in sub.id):
            raise ConfigError(f"{where}: id must be letters, digits, '.', '_' or '-'")
        if sub.id in seen:
            raise ConfigError(f"{where}: subscriber id appears twice")
        seen.add(sub.id)
        parts = urlsplit(sub.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{where}: url must be an http:// or https:// URL")
        unknown = sorted(set(sub.events) - set(EVENT_TYPES))
        if unknown:
            raise ConfigError(f"{where}: unknown event types {unknown}; known: {EVENT_TYPES}")
        if bool(sub.secret) == bool(sub.secret_file):
            raise ConfigError(f"{where}: give exactly one of secret and secret_file")


def subscriber_secret(sub: SubscriberConfig, data: Path) -> bytes:
    """The HMAC key of ``sub``: ``secret``, or the contents of ``secret_file`` (relative to
    ``data``) without its trailing newline. ConfigError when it is empty or unreadable."""
    if sub.secret:
        return sub.secret.encode("utf-8")
    path = Path(sub.secret_file)
    path = path if path.is_absolute() else data / path
    try:
        key = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise ConfigError(f"subscriber {sub.id}: cannot read secret_file {path}: {exc}") from exc
    if not key:
        raise ConfigError(f"subscriber {sub.id}: secret_file {path} is empty")
    return key
