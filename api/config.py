"""The whole configuration: discovery, loading, environment overrides, the default file.

Every command finds its configuration the same way: ``--config FILE``, else ``$EVAULT_CONFIG``,
else ``<data>/evault.toml`` where the data directory is ``--data DIR``, else ``$EVAULT_DATA``,
else ``./data``. Environment variables ``EVAULT_<SECTION>_<KEY>`` (e.g. ``EVAULT_DATABASE_DSN``)
override keys of the single-table sections; values are read as TOML values where they parse as
one and as strings otherwise. Relative paths in the file are resolved against the data directory.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from api.configfile import (
    CONFIG_NAME,
    data_dir_of,
    find_config_file,
    read_config,
    section_overrides,
)
from ingest.config import DockConfig, MediaConfig
from vault.anchors.config import AnchorsConfig, check_anchors
from vault.anchors.witness_config import (
    WitnessConfig,
    WitnessedLog,
    WitnessPeer,
    check_witness_config,
)
from vault.config import (
    DatabaseConfig,
    ExportConfig,
    KeysConfig,
    LedgerConfig,
    ScrubConfig,
    StoreConfig,
    zone,
)
from vault.config_events import (
    EventsConfig,
    PublicityConfig,
    ReviewConfig,
    SubscriberConfig,
    check_subscribers,
)
from vault.errors import ConfigError
from vault.settings import Section, build, describe, to_toml_value

__all__ = [
    "CONFIG_NAME",
    "Config",
    "default_toml",
    "env_overrides",
    "find_config_file",
    "load",
]


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Parse ``EVAULT_<SECTION>_<KEY>`` variables into a nested dict of overrides."""
    return section_overrides(environ, _SECTION_TYPES)


class ServiceConfig(Section, frozen=True):
    """[service]: the HTTP service."""

    listen: Annotated[str, Meta(description="HOST:PORT the HTTP service listens on.")] = (
        "127.0.0.1:8420"
    )
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"],
        Meta(description="Least severe log level written."),
    ] = "info"
    tls_cert: Annotated[
        str,
        Meta(
            description="TLS certificate chain (PEM file) of the HTTP service; empty: plain HTTP "
            "(behind a proxy)."
        ),
    ] = ""
    tls_key: Annotated[str, Meta(description="TLS private key (PEM file) for tls_cert.")] = ""
    tls_client_ca: Annotated[
        str,
        Meta(
            description="CA bundle (PEM) for optional client certificates: a verified "
            "certificate whose subject CN is a dock principal's id authenticates that dock "
            "(uploads only). Empty: tokens only."
        ),
    ] = ""
    upload_chunk_timeout_seconds: Annotated[
        float,
        Meta(
            ge=0.1,
            le=3600,
            description="An upload (dock PUT, verify body) that sends nothing for this long is "
            "aborted (408).",
        ),
    ] = 30.0
    upload_total_timeout_seconds: Annotated[
        float,
        Meta(
            ge=1,
            le=604800,
            description="An upload that has not finished after this long is aborted (408), "
            "however steady.",
        ),
    ] = 21600.0
    verify_max_bytes: Annotated[
        int,
        Meta(ge=0, description="Largest file accepted by POST /v1/verify (hashed, never stored)."),
    ] = 1 << 40
    token_cache_seconds: Annotated[
        float,
        Meta(
            ge=0,
            le=60,
            description="How long a token that authenticated may be answered from this process's "
            "memory. Revocations, disabled principals and case assignments made through evault "
            "invalidate it at once (NOTIFY); this bounds only changes made by hand in SQL. 0: no "
            "cache.",
        ),
    ] = 5.0
    workers: Annotated[
        int,
        Meta(
            ge=1,
            le=64,
            description="HTTP API processes sharing the listening socket (`evault serve "
            "--workers`): the main process runs every part, the others only the API (no "
            "watchers, media workers, scrub, checkpoint signing, time-stamping). More than 1 "
            "uses more cores for reads; playback sessions are then per process (see "
            "playback_session_seconds).",
        ),
    ] = 1
    playback_session_seconds: Annotated[
        int,
        Meta(
            ge=0,
            le=3600,
            description="Range requests of one playback (same principal, item and action "
            "`stream`) share one `accessed` ledger entry while each comes within this many "
            "seconds of the one before; each is still decided on its own. Kept in memory: a "
            "restart opens a new session, and with several workers a Range request answered "
            "by another process may record one more entry (never fewer). 0: one entry per "
            "request.",
        ),
    ] = 300


class PrincipalSeed(Section, frozen=True):
    """[[principals]]: principals created at start if they do not exist yet."""

    id: Annotated[str, Meta(description="Principal id.")]
    roles: Annotated[
        tuple[str, ...], Meta(description="Roles (admin, auditor, reviewer, ...).")
    ] = ()
    clearance: Annotated[str, Meta(description="Clearance level slug (public ... top_secret).")] = (
        "internal"
    )
    caveats: Annotated[tuple[str, ...], Meta(description="Caveats held.")] = ()


class Config(Section, frozen=True):
    """The root of evault.toml."""

    data: Annotated[
        Path, Meta(description="Data directory; relative to the config file's folder.")
    ] = Path()
    service: ServiceConfig = ServiceConfig()
    database: DatabaseConfig = DatabaseConfig()
    ledger: LedgerConfig = LedgerConfig()
    store: StoreConfig = StoreConfig()
    media: MediaConfig = MediaConfig()
    keys: KeysConfig = KeysConfig()
    docks: Annotated[tuple[DockConfig, ...], Meta(description="Dock folders watched.")] = ()
    principals: Annotated[tuple[PrincipalSeed, ...], Meta(description="Seeded principals.")] = ()
    review: ReviewConfig = ReviewConfig()
    publicity: PublicityConfig = PublicityConfig()
    events: EventsConfig = EventsConfig()
    subscribers: Annotated[
        tuple[SubscriberConfig, ...], Meta(description="Modules that receive events.")
    ] = ()
    scrub: ScrubConfig = ScrubConfig()
    export: ExportConfig = ExportConfig()
    anchors: AnchorsConfig = AnchorsConfig()
    witness: WitnessConfig = WitnessConfig()

    def path(self, p: Path) -> Path:
        """``p`` resolved against the data directory."""
        return p if p.is_absolute() else self.data / p


_SECTION_TYPES: dict[str, Any] = {
    "service": ServiceConfig,
    "database": DatabaseConfig,
    "ledger": LedgerConfig,
    "store": StoreConfig,
    "media": MediaConfig,
    "keys": KeysConfig,
    "review": ReviewConfig,
    "publicity": PublicityConfig,
    "events": EventsConfig,
    "scrub": ScrubConfig,
    "export": ExportConfig,
    "anchors": AnchorsConfig,
    "witness": WitnessConfig,
}
_SECTIONS = set(_SECTION_TYPES)
_NESTED_TABLES = {  # tables inside a section, reachable as EVAULT_<SECTION>_<TABLE>_<KEY>
    name: {key for key in cls.__struct_fields__ if isinstance(getattr(cls(), key), Section)}
    for name, cls in _SECTION_TYPES.items()
}


def load(
    config: str | None = None,
    data: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load and validate the configuration; ConfigError names file, key and expectation."""
    raw, path = read_config(config, data, _SECTION_TYPES, environ)
    cfg = build(Config, raw, source=str(path))
    cfg = msgspec.structs.replace(cfg, data=data_dir_of(path, cfg.data))
    _check_docks(cfg, str(path))
    zone(cfg.export.timezone)  # ConfigError naming the key, at start rather than at export
    check_subscribers(cfg.subscribers, str(path))
    check_anchors(cfg.anchors, str(path))
    check_witness_config(cfg.anchors.witnesses, cfg.witness, str(path))
    return cfg


def _check_docks(cfg: Config, source: str) -> None:
    seen: set[str] = set()
    for dock in cfg.docks:
        if dock.id in seen:
            raise ConfigError(f"{source}: docks: dock id {dock.id!r} appears twice")
        seen.add(dock.id)


def default_toml() -> str:
    """The default evault.toml: every key with its documentation, one dock ``dock-01`` and an
    ``admin`` principal. Also shipped as deploy/evault.example.toml (a test keeps them equal)."""
    lines = [
        "# evidence-vault configuration. Reference: docs/configuration.md or",
        "# `evault config-reference`. Unknown keys are refused. Relative paths are resolved",
        "# against `data`, which is relative to this file's folder.",
        'data = "."',
        "",
    ]
    for section, cls in _SECTION_TYPES.items():
        lines.append(f"[{section}]")
        lines.extend(_documented_keys(cls, cls()))
        lines.append("")
        for table in sorted(_NESTED_TABLES[section]):
            inner = getattr(cls(), table)
            lines.append(f"[{section}.{table}]")
            lines.extend(_documented_keys(type(inner), inner))
            lines.append("")
    dock = DockConfig(
        id="dock-01", path=Path("docks/dock-01"), settle_seconds=2.0, rescan_seconds=10.0
    )
    lines.append("# One table per dock (collection station folder).")
    lines.append("[[docks]]")
    lines.extend(_documented_keys(DockConfig, dock))
    lines.append("")
    admin = PrincipalSeed(
        id="admin",
        roles=("admin", "auditor"),
        clearance="top_secret",
        caveats=("commercial_secret", "personal_privacy"),
    )
    lines.append("# Principals created at start if missing (more with `evault principal add`).")
    lines.append("[[principals]]")
    lines.extend(_documented_keys(PrincipalSeed, admin))
    lines.append("")
    sub = SubscriberConfig(
        id="legal-review",
        url="https://127.0.0.1:9000/evault-events",
        secret_file="keys/legal-review.hmac",  # noqa: S106 - a path, not a secret
    )
    lines.append("# Modules that receive events as HMAC-signed POSTs (none by default), e.g.:")
    lines.extend(
        "# " + line for line in ["[[subscribers]]", *_documented_keys(SubscriberConfig, sub)]
    )
    lines.append("")
    peer = WitnessPeer(
        name="neighbour", url="https://witness.example.org", vkey="witness.example.org/w+…"
    )
    lines.append("# Witnesses this log submits its checkpoints to (none by default), e.g.:")
    lines.extend(
        "# " + line for line in ["[[anchors.witnesses]]", *_documented_keys(WitnessPeer, peer)]
    )
    lines.append("")
    log = WitnessedLog(origin="neighbour.example.org/ledger", vkey="neighbour.example.org/…")
    lines.append("# Logs this service witnesses when witness.enabled (none by default), e.g.:")
    lines.extend("# " + line for line in ["[[witness.logs]]", *_documented_keys(WitnessedLog, log)])
    lines.append("")
    return "\n".join(lines)


def _documented_keys(cls: Any, instance: Any) -> list[str]:
    out = []
    for doc in describe(cls):
        if "." in doc.key or doc.type.startswith("list of tables"):
            continue  # a nested table's key: written in its own [section.table] / [[...]]
        bounds = f" ({doc.bounds})" if doc.bounds else ""
        out.append(f"# {doc.doc}{bounds}")
        out.append(f"{doc.key} = {to_toml_value(getattr(instance, doc.key))}")
    return out
