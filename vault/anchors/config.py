"""Configuration of the anchors that vouch for the log from outside the service: ``[anchors]``.

Today: an RFC 3161 time-stamping authority (``vault.anchors.timestamps``). Empty ``tsa_url`` turns
it off. :func:`check_anchors` refuses at load what the time-stamper could not honour: a URL that is
not http(s), or a TSA without the CA certificates its tokens must chain to (a token is stored
only after it verified against them).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from vault.anchors.witness_config import WitnessPeer
from vault.errors import ConfigError
from vault.settings import setting


@dataclass(frozen=True)
class AnchorsConfig:
    """[anchors]: outside parties that vouch for the log (RFC 3161 time-stamps)."""

    tsa_url: str = setting(
        "",
        "URL of an RFC 3161 time-stamping authority (HTTP POST of application/timestamp-query); "
        "each signed checkpoint (or, with tsa_interval, the latest one at that interval) gets a "
        "token whose message imprint is SHA-256 of the checkpoint note's body. Empty: off.",
    )
    tsa_ca_file: str = setting(
        "",
        "PEM file of the TSA's CA certificate(s): a token is stored only if its signer chains "
        "to one of them (give the same file to `evault-verify --tsa-ca`). Required with tsa_url.",
    )
    tsa_interval: float = setting(
        0.0,
        "0: a token for every signed checkpoint; more: seconds between tokens, each for the "
        "latest checkpoint then (fewer requests to a TSA that charges or rate-limits).",
        minimum=0.0,
        maximum=86400.0,
    )
    tsa_timeout: float = setting(
        10.0, "Seconds one request to the TSA may take.", minimum=0.1, maximum=300.0
    )
    tsa_retry_seconds: float = setting(
        1.0,
        "First wait after the TSA failed; doubled after each further failure up to "
        "tsa_retry_max_seconds. Checkpointing never waits for the TSA.",
        minimum=0.01,
        maximum=3600.0,
    )
    tsa_retry_max_seconds: float = setting(
        300.0, "Longest wait between attempts while the TSA fails.", minimum=0.01, maximum=86400.0
    )

    tsa_export_wait: float = setting(
        10.0,
        "Seconds an export waits for the time-stamp of the checkpoint its entries need (its "
        "own access records are among them); past that the package goes without timestamp.tsr.",
        minimum=0.0,
        maximum=3600.0,
    )

    witnesses: tuple[WitnessPeer, ...] = setting(
        factory=tuple,
        doc="Witnesses (C2SP tlog-witness) each new signed checkpoint is submitted to, with a "
        "consistency proof; their cosignatures are stored, served and exported.",
    )
    witness_timeout: float = setting(
        5.0, "Seconds one request to a witness may take.", minimum=0.1, maximum=300.0
    )
    witness_retry_seconds: float = setting(
        1.0,
        "First wait after a witness failed; doubled after each further failure up to "
        "witness_retry_max_seconds. Nothing else waits for a witness.",
        minimum=0.01,
        maximum=3600.0,
    )
    witness_retry_max_seconds: float = setting(
        300.0, "Longest wait between attempts while a witness fails.", minimum=0.01, maximum=86400.0
    )
    witness_export_wait: float = setting(
        5.0,
        "Seconds an export waits for witnesses' cosignatures of its checkpoint; past that the "
        "package goes with those collected (possibly none).",
        minimum=0.0,
        maximum=3600.0,
    )

    @property
    def tsa_enabled(self) -> bool:
        return bool(self.tsa_url)

    @property
    def witness_export(self) -> tuple[int, float]:
        """(witnesses configured, seconds an export waits for their cosignatures)."""
        return len(self.witnesses), self.witness_export_wait

    @property
    def export_wait(self) -> float:
        """What exports should wait for a time-stamp: 0 when the TSA is off."""
        return self.tsa_export_wait if self.tsa_url else 0.0


def check_anchors(cfg: AnchorsConfig, source: str) -> None:
    """Raise ConfigError naming ``source`` for a TSA the time-stamper could not use."""
    if not cfg.tsa_url:
        return
    if urlsplit(cfg.tsa_url).scheme not in ("http", "https"):
        raise ConfigError(f"{source}: anchors.tsa_url: {cfg.tsa_url!r} is not an http(s) URL")
    if not cfg.tsa_ca_file:
        raise ConfigError(
            f"{source}: anchors.tsa_ca_file is required with tsa_url: tokens are stored only "
            "after they verify against the TSA's CA"
        )
