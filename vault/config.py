"""The vault layer's configuration sections: database, ledger, store, keys, export.

Paths that are relative are resolved against the data directory by the loader in ``api``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vault.errors import ConfigError
from vault.settings import setting


@dataclass(frozen=True)
class DatabaseConfig:
    """[database]: where PostgreSQL is."""

    dsn: str = setting(
        "",
        "PostgreSQL DSN (postgresql://user@host:port/db). Empty: an embedded server from the "
        "pgserver wheel in <data>/pg, started and stopped with the process.",
    )
    migrate_dsn: str = setting(
        "",
        "DSN of the schema owner, used only for migrations and grants at start. Empty: the "
        "`dsn` above. In production give the service a login that is only a member of "
        "`app_role`, and the owner's credentials here (or run migrations from another host).",
    )
    app_role: str = setting(
        "evault_app",
        "Role the service acts as after migrations (SET ROLE). It owns no ledger table and has "
        "no UPDATE, DELETE or TRUNCATE on entries or checkpoints.",
    )
    pool_size: int = setting(10, "Connections in the pool.", minimum=2, maximum=200)
    read_concurrency: int = setting(
        4,
        "Evidence list queries in flight at once per service process (the read pool, up to 8 "
        "connections, admits them first come, first served). With PostgreSQL on the same "
        "machine about twice its cores is best: more only queue inside PostgreSQL; raise it "
        "for a remote server with a long round trip.",
        minimum=1,
        maximum=8,
    )
    connect_attempts: int = setting(
        8, "Attempts to reach the server before giving up, with backoff.", minimum=1, maximum=100
    )
    connect_backoff: float = setting(
        0.5, "First retry delay in seconds; doubles per attempt, capped at 10 s.", minimum=0.05
    )


@dataclass(frozen=True)
class LedgerConfig:
    """[ledger]: the Merkle log and its checkpoints."""

    origin: str = setting(
        "evidence-vault.local/ledger",
        "Log origin line of every checkpoint and the name of the signing key (a schema-less "
        "URL-like name unique to this deployment).",
    )
    key_file: Path = setting(
        Path("keys/ledger.skey"), "Ed25519 signing key (note private-key format), mode 0600."
    )
    mac_key_file: Path = setting(
        Path("keys/ledger.mac"),
        "Host MAC secret (32 bytes, hex), mode 0600: authenticates every committed ledger batch"
        " and every row that decides access or serves bytes. Keep it with the signing key, never"
        " in the database; `evault init` creates it.",
    )
    checkpoints_log: Path = setting(
        Path("checkpoints.log"),
        "File outside the database to which every signed checkpoint is appended (JSON lines).",
    )
    checkpoint_interval: float = setting(
        0.25,
        "Seconds between checkpoints while entries arrive; 0 signs after every batch.",
        minimum=0.0,
        maximum=3600.0,
    )
    batch_max: int = setting(
        16384,
        "Most entries sequenced in one transaction (group commit): larger batches spread a"
        " commit's fixed cost (fsync, tiles, state) over more entries.",
        minimum=1,
        maximum=65536,
    )
    batch_wait: float = setting(
        0.0,
        "Seconds the sequencer waits for more entries before committing a batch.",
        minimum=0.0,
        maximum=1.0,
    )


@dataclass(frozen=True)
class S3StoreConfig:
    """[store.s3]: the S3 blob store (``store.backend = "s3"``), ``vault.storage.s3store``."""

    endpoint: str = setting(
        "",
        "S3 endpoint URL (https://s3.example.org, http://127.0.0.1:7480). Empty: AWS's own "
        "endpoint for `region`.",
    )
    bucket: str = setting("", "Bucket of the objects; it must have Object Lock enabled.")
    region: str = setting("us-east-1", "Region the requests are signed for.")
    path_style: bool = setting(
        True,
        "Path-style addressing (endpoint/bucket/key), as Ceph RGW and MinIO need without a "
        "wildcard DNS name; false: virtual-hosted style (bucket.endpoint/key).",
    )
    credentials_file: str = setting(
        "",
        "Credentials file in the AWS tools' format ([default] aws_access_key_id, "
        "aws_secret_access_key), mode 0600. Empty: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        "from the environment, else ~/.aws/credentials.",
    )
    profile: str = setting("default", "Section of the credentials file to use.")
    create_bucket: bool = setting(
        False,
        "Create the bucket (with Object Lock and the default retention below) when it does not "
        "exist. Otherwise a missing bucket, or one without Object Lock, stops the service.",
    )
    default_retention_days: int = setting(
        1,
        "COMPLIANCE default retention given to a bucket this service creates: it locks every "
        "version from its creation, also in the moment between a multipart upload's completion "
        "and the object's own retain-until date being set.",
        minimum=1,
        maximum=36500,
    )
    retain_days: int = setting(
        183,
        "Days every object written (original, rendition, sealed copy) is locked in COMPLIANCE "
        "mode from its write. Set it to the retention policy's ordinary period (`evault "
        "retention run --ordinary-days`): a shorter lock leaves the rest of the period to the "
        "database alone, a longer one only delays disposal.",
        minimum=1,
        maximum=36500,
    )
    hold_days: int = setting(
        365,
        "While an item is linked to a case, on legal hold, important or kept permanently, its "
        "objects' locks are kept at least this many days ahead: extended on each link and on "
        "each `evault retention run`, never shortened.",
        minimum=1,
        maximum=36500,
    )
    part_size: int = setting(
        8 * 1024 * 1024,
        "Bytes per part of a multipart upload (also the single-PUT limit), raised for an object "
        "that would need over 10,000 parts. Two parts are in flight per upload: memory per "
        "upload is several times this (docs/performance.md has a measurement).",
        minimum=5 * 1024 * 1024,
        maximum=512 * 1024 * 1024,
    )


@dataclass(frozen=True)
class StoreConfig:
    """[store]: the write-once blob store."""

    backend: str = setting(
        "file",
        "Where originals are kept: `file` (the folder `root`) or `s3` (an S3 bucket with "
        "Object Lock, [store.s3]).",
        choices=("file", "s3"),
    )
    root: Path = setting(Path("vault"), "Blob store root (objects/, tmp/); one file system.")
    quarantine: Path = setting(
        Path("quarantine"), "Where refused dock files are moved, per dock, with a reason file."
    )
    s3: S3StoreConfig = setting(factory=S3StoreConfig, doc="The S3 blob store.")


@dataclass(frozen=True)
class KeysConfig:
    """[keys]: encryption at rest of classified content (key-encryption keys, sealed objects)."""

    kek_dir: Path = setting(
        Path("keys/kek"),
        "Folder (0700) of the key-encryption keys: CURRENT and <id>.key files (0600), retired/. "
        "Keep it outside the blob store and out of database backups; created with the first "
        "key on first use.",
    )
    kek_command: tuple[str, ...] = setting(
        factory=tuple,
        doc="External key command (HSM/KMS) used instead of kek_dir: argv run without a shell "
        "as `argv current|get ID|create|retire ID` (protocol: vault.storage.kek). Empty: kek_dir.",
    )
    chunk_size: int = setting(
        65536,
        "Plaintext bytes per AES-256-GCM chunk of a sealed object (a power of two); a range read "
        "decrypts the chunks it overlaps.",
        minimum=4096,
        maximum=4194304,
    )
    plaintext_scratch: str = setting(
        "",
        "Folder for the decrypted temporary copies tools such as ffmpeg need (private 0700 "
        "folders, 0600 files, removed after use). Empty: /dev/shm when it has room (plaintext "
        "of classified footage then never lands on a disk), else the system temp folder.",
    )


DEFAULT_TIMEZONE = "Asia/Shanghai"


def zone(name: str) -> tzinfo:
    """The IANA zone ``name``; ConfigError naming ``export.timezone`` when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"export.timezone: unknown time zone {name!r}") from exc


@dataclass(frozen=True)
class ExportConfig:
    """[export]: case packages (``evault export``, ``POST /v1/cases/{id}/exports``)."""

    timezone: str = setting(
        DEFAULT_TIMEZONE,
        "IANA time zone in which a package's report.html shows times (with their UTC offset); "
        "the signed entries and manifest keep UTC.",
    )
