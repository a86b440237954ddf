"""Configuration for the case system's other modules: legal review, publicity, event delivery.

Sections: ``[review]`` (coverage reports), ``[publicity]`` (publication-safe statistics),
``[events]`` (how deliveries are retried) and ``[[subscribers]]`` (who receives events).
:func:`check_subscribers` refuses at load what the dispatcher could not honour: duplicate ids,
URLs that are not http(s), unknown event types, and a secret given both or neither way.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from msgspec import Meta

from vault.errors import ConfigError
from vault.events import EVENT_TYPES
from vault.settings import Section

DEFAULT_RECORDING_REQUIRED = (
    "现场检查",
    "随机抽查",
    "调查取证",
    "证据保全",
    "听证",
    "行政强制",
    "送达",
)


class ReviewConfig(Section, frozen=True):
    """[review]: reports for the legal-review module (法制审核)."""

    recording_required: Annotated[
        tuple[str, ...],
        Meta(
            description="Enforcement step types that must be recorded on audio/video "
            "(全过程记录); a coverage report names every such step that has no footage."
        ),
    ] = DEFAULT_RECORDING_REQUIRED


class PublicityConfig(Section, frozen=True):
    """[publicity]: publication-safe statistics for the publicity module (公示)."""

    public_statistics: Annotated[
        bool,
        Meta(
            description="Serve /v1/public/statistics without a token. When false, a token of a "
            "principal with role case_system, auditor or admin is required."
        ),
    ] = False
    timezone: Annotated[
        str, Meta(description="Time zone whose calendar years statistics count.")
    ] = "Asia/Shanghai"


class EventsConfig(Section, frozen=True):
    """[events]: delivery of the event outbox to the configured subscribers."""

    max_attempts: Annotated[
        int,
        Meta(
            ge=1,
            le=10000,
            description="Attempts per delivery before it is marked failed (the next event then "
            "proceeds).",
        ),
    ] = 50
    backoff_seconds: Annotated[
        float,
        Meta(
            ge=0.01, description="First retry delay; doubles per attempt up to backoff_cap_seconds."
        ),
    ] = 2.0
    backoff_cap_seconds: Annotated[
        float, Meta(ge=0.01, description="Longest delay between two attempts of one delivery.")
    ] = 3600.0
    timeout_seconds: Annotated[
        float, Meta(ge=0.1, le=300.0, description="Time allowed for one POST, connection included.")
    ] = 10.0
    poll_seconds: Annotated[
        float,
        Meta(ge=0.01, description="How often the outbox is polled for new events and due retries."),
    ] = 1.0
    reconcile_seconds: Annotated[
        float,
        Meta(
            ge=1.0,
            description="How often every event since a subscriber's first is re-checked for a "
            "missing delivery (catches events committed late by long transactions).",
        ),
    ] = 300.0


class SubscriberConfig(Section, frozen=True):
    """[[subscribers]]: a module that receives HMAC-signed event POSTs."""

    id: Annotated[
        str,
        Meta(description="Subscriber id (letters, digits, '.', '_', '-'); names its deliveries."),
    ]
    url: Annotated[str, Meta(description="http(s) URL the events are POSTed to.")]
    secret: Annotated[
        str, Meta(description="HMAC-SHA256 key for X-Evault-Signature (prefer secret_file).")
    ] = ""
    secret_file: Annotated[
        str,
        Meta(
            description="File holding the HMAC key (trailing newline ignored); relative to the "
            "data folder."
        ),
    ] = ""
    events: Annotated[
        tuple[str, ...], Meta(description="Event types delivered: " + ", ".join(EVENT_TYPES) + ".")
    ] = EVENT_TYPES


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
