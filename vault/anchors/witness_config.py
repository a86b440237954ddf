"""Configuration of witness cosignatures, both directions.

``[[anchors.witnesses]]``: the witnesses this log submits its checkpoints to
(``vault.anchors.cosigners``). ``[witness]`` with ``[[witness.logs]]``: this service as a
witness of other logs (``vault.anchors.witness``). :func:`check_witness_config` refuses at
load what could not work: a URL that is not http(s), a key of the wrong type (a log key where
a witness key is wanted, or the reverse), a name or origin given twice.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

from msgspec import Meta

from vault.errors import ConfigError
from vault.settings import Section
from verify.errors import MalformedError

if TYPE_CHECKING:
    from verify.cosignature import CosignerKey
    from verify.note import Verifier

# The key parsers are imported where a key is parsed: every CLI command loads this module with
# the configuration, and most never touch a witness key (start-up time).


class WitnessPeer(Section, frozen=True):
    """[[anchors.witnesses]]: a witness this log asks for cosignatures (C2SP tlog-witness)."""

    name: Annotated[str, Meta(description="A name for logs and metrics (the `witness` label).")]
    url: Annotated[
        str,
        Meta(
            description="Submission prefix of the witness: checkpoints are POSTed to "
            "<url>/add-checkpoint."
        ),
    ]
    vkey: Annotated[
        str,
        Meta(
            description="The witness's cosignature/v1 verifier key "
            "(name+keyid+base64(0x04||key)): only cosignatures that verify with it are stored."
        ),
    ]

    @property
    def key(self) -> "CosignerKey":
        from verify.cosignature import parse_cosigner_vkey

        return parse_cosigner_vkey(self.vkey)


class WitnessedLog(Section, frozen=True):
    """[[witness.logs]]: a log this service witnesses."""

    origin: Annotated[str, Meta(description="The log's origin line (its checkpoints' first line).")]
    vkey: Annotated[
        str, Meta(description="The log's checkpoint verifier key (signed-note vkey, type 0x01).")
    ]

    @property
    def verifier(self) -> "Verifier":
        from verify.note import parse_vkey

        return parse_vkey(self.vkey)


class WitnessConfig(Section, frozen=True):
    """[witness]: this service as a C2SP tlog-witness of other logs (POST /add-checkpoint)."""

    enabled: Annotated[
        bool,
        Meta(
            description="Serve POST /add-checkpoint and cosign checkpoints of the logs in "
            "witness.logs."
        ),
    ] = False
    name: Annotated[
        str,
        Meta(
            description="Key name of the witness key (a schema-less URL); empty: the ledger "
            "origin + '/witness'."
        ),
    ] = ""
    key_file: Annotated[
        Path,
        Meta(
            description="The witness's own Ed25519 cosigning key (created once, mode 0600; never "
            "the log key). Its vkey: `evault witness vkey`."
        ),
    ] = Path("keys/witness.skey")
    state_file: Annotated[
        Path,
        Meta(
            description="File outside the database with the highest size cosigned per log: a "
            "witness state rolled back in the database is refused, never cosigned over."
        ),
    ] = Path("witness.state")
    logs: Annotated[
        tuple[WitnessedLog, ...], Meta(description="The logs this service witnesses.")
    ] = ()


def check_witness_config(
    peers: tuple[WitnessPeer, ...], witness: WitnessConfig, source: str
) -> None:
    """Raise ConfigError naming ``source`` and the key for a configuration that cannot work."""
    names: set[str] = set()
    for i, peer in enumerate(peers):
        where = f"{source}: anchors.witnesses[{i}]"
        if urlsplit(peer.url).scheme not in ("http", "https"):
            raise ConfigError(f"{where}.url: {peer.url!r} is not an http(s) URL")
        if peer.name in names or not peer.name:
            raise ConfigError(f"{where}.name: {peer.name!r} is empty or appears twice")
        names.add(peer.name)
        try:
            peer.key  # noqa: B018 - parsed to check it
        except MalformedError as exc:
            raise ConfigError(f"{where}.vkey: {exc}") from exc
    origins: set[str] = set()
    for i, log in enumerate(witness.logs):
        where = f"{source}: witness.logs[{i}]"
        if log.origin in origins:
            raise ConfigError(f"{where}.origin: {log.origin!r} appears twice")
        origins.add(log.origin)
        try:
            verifier = log.verifier
        except MalformedError as exc:
            raise ConfigError(f"{where}.vkey: {exc}") from exc
        if verifier.name != log.origin:
            raise ConfigError(
                f"{where}.vkey: the key is named {verifier.name!r}, not the origin {log.origin!r}"
            )
