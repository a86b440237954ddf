"""Configuration of the anchors that vouch for the log from outside the service: ``[anchors]``.

An RFC 3161 time-stamping authority (``vault.anchors.timestamps``; empty ``tsa_url`` turns it off)
and an SM2 cosigning key (``vault.anchors.sm2``; empty ``sm2_key`` turns it off).
:func:`check_anchors` refuses at load what they could not honour: a URL that is not http(s), a
TSA without the CA certificates its tokens must chain to (a token is stored only after it
verified against them), an SM2 certificate or user ID without a key, or a key name a note
cannot carry.
"""

from typing import Annotated
from urllib.parse import urlsplit

from msgspec import Meta

from vault.anchors.witness_config import WitnessPeer
from vault.errors import ConfigError
from vault.settings import Section


class AnchorsConfig(Section, frozen=True):
    """[anchors]: outside parties that vouch for the log (RFC 3161 time-stamps, SM2)."""

    tsa_url: Annotated[
        str,
        Meta(
            description="URL of an RFC 3161 time-stamping authority (HTTP POST of "
            "application/timestamp-query); each signed checkpoint (or, with tsa_interval, the "
            "latest one at that interval) gets a token whose message imprint is SHA-256 of the "
            "checkpoint note's body. Empty: off."
        ),
    ] = ""
    tsa_ca_file: Annotated[
        str,
        Meta(
            description="PEM file of the TSA's CA certificate(s): a token is stored only if its "
            "signer chains to one of them (give the same file to `evault-verify --tsa-ca`). "
            "Required with tsa_url."
        ),
    ] = ""
    tsa_interval: Annotated[
        float,
        Meta(
            ge=0.0,
            le=86400.0,
            description="0: a token for every signed checkpoint; more: seconds between tokens, "
            "each for the latest checkpoint then (fewer requests to a TSA that charges or "
            "rate-limits).",
        ),
    ] = 0.0
    tsa_timeout: Annotated[
        float, Meta(ge=0.1, le=300.0, description="Seconds one request to the TSA may take.")
    ] = 10.0
    tsa_retry_seconds: Annotated[
        float,
        Meta(
            ge=0.01,
            le=3600.0,
            description="First wait after the TSA failed; doubled after each further failure up "
            "to tsa_retry_max_seconds. Checkpointing never waits for the TSA.",
        ),
    ] = 1.0
    tsa_retry_max_seconds: Annotated[
        float,
        Meta(ge=0.01, le=86400.0, description="Longest wait between attempts while the TSA fails."),
    ] = 300.0

    tsa_export_wait: Annotated[
        float,
        Meta(
            ge=0.0,
            le=3600.0,
            description="Seconds an export waits for the time-stamp of the checkpoint its "
            "entries need (its own access records are among them); past that the package goes "
            "without timestamp.tsr.",
        ),
    ] = 10.0

    sm2_key: Annotated[
        str,
        Meta(
            description="PEM file of an SM2 private key (PKCS#8 `PRIVATE KEY` or SEC1 `EC "
            "PRIVATE KEY`, not encrypted; from the bureau's CA): each signed checkpoint gets an "
            "extra note signature line, SM2 with SM3 (GM/T 0003), checked by `evault-verify "
            "--sm2-key`. Needs the optional extra `evidence-vault[sm2]`. Empty: off."
        ),
    ] = ""
    sm2_cert: Annotated[
        str,
        Meta(
            description="PEM file of the certificate (or public key) of sm2_key: the service "
            "refuses to start if it is not that key's. Give it to verifiers as `evault-verify "
            "--sm2-key`."
        ),
    ] = ""
    sm2_user_id: Annotated[
        str,
        Meta(
            description="The signer's user ID in Z_A (GM/T 0003.2); GM/T 0009's default unless "
            "the bureau's CA says otherwise (then give it to `evault-verify --sm2-id`)."
        ),
    ] = "1234567812345678"
    sm2_key_name: Annotated[
        str, Meta(description="Key name on the SM2 signature line; empty: `<ledger.origin>/sm2`.")
    ] = ""

    @property
    def sm2_enabled(self) -> bool:
        return bool(self.sm2_key)

    witnesses: Annotated[
        tuple[WitnessPeer, ...],
        Meta(
            description="Witnesses (C2SP tlog-witness) each new signed checkpoint is submitted "
            "to, with a consistency proof; their cosignatures are stored, served and exported."
        ),
    ] = ()
    witness_timeout: Annotated[
        float, Meta(ge=0.1, le=300.0, description="Seconds one request to a witness may take.")
    ] = 5.0
    witness_retry_seconds: Annotated[
        float,
        Meta(
            ge=0.01,
            le=3600.0,
            description="First wait after a witness failed; doubled after each further failure "
            "up to witness_retry_max_seconds. Nothing else waits for a witness.",
        ),
    ] = 1.0
    witness_retry_max_seconds: Annotated[
        float,
        Meta(
            ge=0.01, le=86400.0, description="Longest wait between attempts while a witness fails."
        ),
    ] = 300.0
    witness_export_wait: Annotated[
        float,
        Meta(
            ge=0.0,
            le=3600.0,
            description="Seconds an export waits for witnesses' cosignatures of its checkpoint; "
            "past that the package goes with those collected (possibly none).",
        ),
    ] = 5.0

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
    """Raise ConfigError naming ``source`` for a TSA or an SM2 key that could not be used."""
    if cfg.sm2_cert and not cfg.sm2_key:
        raise ConfigError(f"{source}: anchors.sm2_cert is set but anchors.sm2_key is not")
    if cfg.sm2_key_name:
        from verify.note import is_valid_key_name  # only when set: CLI start-up stays light

        if not is_valid_key_name(cfg.sm2_key_name):
            raise ConfigError(
                f"{source}: anchors.sm2_key_name {cfg.sm2_key_name!r} is not a note key name "
                "(no spaces, no '+')"
            )
    if not cfg.sm2_user_id or len(cfg.sm2_user_id.encode()) > 8191:
        raise ConfigError(f"{source}: anchors.sm2_user_id must be 1 to 8191 bytes")
    if not cfg.tsa_url:
        return
    if urlsplit(cfg.tsa_url).scheme not in ("http", "https"):
        raise ConfigError(f"{source}: anchors.tsa_url: {cfg.tsa_url!r} is not an http(s) URL")
    if not cfg.tsa_ca_file:
        raise ConfigError(
            f"{source}: anchors.tsa_ca_file is required with tsa_url: tokens are stored only "
            "after they verify against the TSA's CA"
        )
