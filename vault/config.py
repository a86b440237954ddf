"""The vault layer's configuration sections: database, ledger, store, keys, export, scrub.

Paths that are relative are resolved against the data directory by the loader in ``api``.
"""

import math
from datetime import tzinfo
from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta

from vault.errors import ConfigError
from vault.settings import Section


class DatabaseConfig(Section, frozen=True):
    """[database]: where PostgreSQL is."""

    dsn: Annotated[
        str,
        Meta(
            description="PostgreSQL DSN (postgresql://user@host:port/db). Empty: an embedded "
            "server from the pgserver wheel in <data>/pg, started and stopped with the process."
        ),
    ] = ""
    migrate_dsn: Annotated[
        str,
        Meta(
            description="DSN of the schema owner, used only for migrations and grants at start. "
            "Empty: the `dsn` above. In production give the service a login that is only a member "
            "of `app_role`, and the owner's credentials here (or run migrations from another "
            "host)."
        ),
    ] = ""
    app_role: Annotated[
        str,
        Meta(
            description="Role the service acts as after migrations (SET ROLE). It owns no ledger "
            "table and has no UPDATE, DELETE or TRUNCATE on entries or checkpoints."
        ),
    ] = "evault_app"
    pool_size: Annotated[int, Meta(ge=2, le=200, description="Connections in the pool.")] = 10
    read_concurrency: Annotated[
        int,
        Meta(
            ge=1,
            le=8,
            description="Evidence list queries in flight at once per service process (the read "
            "pool, up to 8 connections, admits them first come, first served). With PostgreSQL on "
            "the same machine about twice its cores is best: more only queue inside PostgreSQL; "
            "raise it for a remote server with a long round trip.",
        ),
    ] = 4
    connect_attempts: Annotated[
        int,
        Meta(
            ge=1, le=100, description="Attempts to reach the server before giving up, with backoff."
        ),
    ] = 8
    connect_backoff: Annotated[
        float,
        Meta(
            ge=0.05,
            description="First retry delay in seconds; doubles per attempt, capped at 10 s.",
        ),
    ] = 0.5


class LedgerConfig(Section, frozen=True):
    """[ledger]: the Merkle log and its checkpoints."""

    origin: Annotated[
        str,
        Meta(
            description="Log origin line of every checkpoint and the name of the signing key (a "
            "schema-less URL-like name unique to this deployment)."
        ),
    ] = "evidence-vault.local/ledger"
    key_file: Annotated[
        Path, Meta(description="Ed25519 signing key (note private-key format), mode 0600.")
    ] = Path("keys/ledger.skey")
    mac_key_file: Annotated[
        Path,
        Meta(
            description="Host MAC secret (32 bytes, hex), mode 0600: authenticates every "
            "committed ledger batch and every row that decides access or serves bytes. Keep it "
            "with the signing key, never in the database; `evault init` creates it."
        ),
    ] = Path("keys/ledger.mac")
    checkpoints_log: Annotated[
        Path,
        Meta(
            description="File outside the database to which every signed checkpoint is appended "
            "(JSON lines)."
        ),
    ] = Path("checkpoints.log")
    checkpoint_interval: Annotated[
        float,
        Meta(
            ge=0.0,
            le=3600.0,
            description="Seconds between checkpoints while entries arrive; 0 signs after every "
            "batch.",
        ),
    ] = 0.25
    batch_max: Annotated[
        int,
        Meta(
            ge=1,
            le=65536,
            description="Most entries sequenced in one transaction (group commit): larger "
            "batches spread a commit's fixed cost (fsync, tiles, state) over more entries.",
        ),
    ] = 16384
    batch_wait: Annotated[
        float,
        Meta(
            ge=0.0,
            le=1.0,
            description="Seconds the sequencer waits for more entries before committing a batch.",
        ),
    ] = 0.0


class S3StoreConfig(Section, frozen=True):
    """[store.s3]: the S3 blob store (``store.backend = "s3"``), ``vault.storage.s3store``."""

    endpoint: Annotated[
        str,
        Meta(
            description="S3 endpoint URL (https://s3.example.org, http://127.0.0.1:7480). Empty: "
            "AWS's own endpoint for `region`."
        ),
    ] = ""
    bucket: Annotated[
        str, Meta(description="Bucket of the objects; it must have Object Lock enabled.")
    ] = ""
    region: Annotated[str, Meta(description="Region the requests are signed for.")] = "us-east-1"
    path_style: Annotated[
        bool,
        Meta(
            description="Path-style addressing (endpoint/bucket/key), as Ceph RGW and MinIO need "
            "without a wildcard DNS name; false: virtual-hosted style (bucket.endpoint/key)."
        ),
    ] = True
    credentials_file: Annotated[
        str,
        Meta(
            description="Credentials file in the AWS tools' format ([default] aws_access_key_id, "
            "aws_secret_access_key), mode 0600. Empty: AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY from the environment, else ~/.aws/credentials."
        ),
    ] = ""
    profile: Annotated[str, Meta(description="Section of the credentials file to use.")] = "default"
    create_bucket: Annotated[
        bool,
        Meta(
            description="Create the bucket (with Object Lock and the default retention below) "
            "when it does not exist. Otherwise a missing bucket, or one without Object Lock, "
            "stops the service."
        ),
    ] = False
    default_retention_days: Annotated[
        int,
        Meta(
            ge=1,
            le=36500,
            description="COMPLIANCE default retention given to a bucket this service creates: it "
            "locks every version from its creation, also in the moment between a multipart "
            "upload's completion and the object's own retain-until date being set.",
        ),
    ] = 1
    retain_days: Annotated[
        int,
        Meta(
            ge=1,
            le=36500,
            description="Days every object written (original, rendition, sealed copy) is locked "
            "in COMPLIANCE mode from its write. Set it to the retention policy's ordinary period "
            "(`evault retention run --ordinary-days`): a shorter lock leaves the rest of the "
            "period to the database alone, a longer one only delays disposal.",
        ),
    ] = 183
    hold_days: Annotated[
        int,
        Meta(
            ge=1,
            le=36500,
            description="While an item is linked to a case, on legal hold, important or kept "
            "permanently, its objects' locks are kept at least this many days ahead: extended on "
            "each link and on each `evault retention run`, never shortened.",
        ),
    ] = 365
    part_size: Annotated[
        int,
        Meta(
            ge=5 * 1024 * 1024,
            le=512 * 1024 * 1024,
            description="Bytes per part of a multipart upload (also the single-PUT limit), "
            "raised for an object that would need over 10,000 parts. Two parts are in flight per "
            "upload: memory per upload is several times this (docs/performance.md has a "
            "measurement).",
        ),
    ] = 8 * 1024 * 1024


class StoreConfig(Section, frozen=True):
    """[store]: the write-once blob store."""

    backend: Annotated[
        Literal["file", "s3"],
        Meta(
            description="Where originals are kept: `file` (the folder `root`) or `s3` (an S3 "
            "bucket with Object Lock, [store.s3])."
        ),
    ] = "file"
    root: Annotated[
        Path, Meta(description="Blob store root (objects/, tmp/); one file system.")
    ] = Path("vault")
    quarantine: Annotated[
        Path, Meta(description="Where refused dock files are moved, per dock, with a reason file.")
    ] = Path("quarantine")
    s3: Annotated[S3StoreConfig, Meta(description="The S3 blob store.")] = S3StoreConfig()


class KeysConfig(Section, frozen=True):
    """[keys]: encryption at rest of classified content (key-encryption keys, sealed objects)."""

    kek_dir: Annotated[
        Path,
        Meta(
            description="Folder (0700) of the key-encryption keys: CURRENT and <id>.key files "
            "(0600), retired/. Keep it outside the blob store and out of database backups; "
            "created with the first key on first use."
        ),
    ] = Path("keys/kek")
    kek_command: Annotated[
        tuple[str, ...],
        Meta(
            description="External key command (HSM/KMS) used instead of kek_dir: argv run "
            "without a shell as `argv current|get ID|create|retire ID` (protocol: "
            "vault.storage.kek). Empty: kek_dir."
        ),
    ] = ()
    chunk_size: Annotated[
        int,
        Meta(
            ge=4096,
            le=4194304,
            description="Plaintext bytes per AES-256-GCM chunk of a sealed object (a power of "
            "two); a range read decrypts the chunks it overlaps.",
        ),
    ] = 65536
    plaintext_scratch: Annotated[
        str,
        Meta(
            description="Folder for the decrypted temporary copies tools such as ffmpeg need "
            "(private 0700 folders, 0600 files, removed after use). Empty: /dev/shm when it has "
            "room (plaintext of classified footage then never lands on a disk), else the system "
            "temp folder."
        ),
    ] = ""


DEFAULT_TIMEZONE = "Asia/Shanghai"


def zone(name: str) -> tzinfo:
    """The IANA zone ``name``; ConfigError naming ``export.timezone`` when there is none."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # only where a zone is needed

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"export.timezone: unknown time zone {name!r}") from exc


class ExportConfig(Section, frozen=True):
    """[export]: case packages (``evault export``, ``POST /v1/cases/{id}/exports``)."""

    timezone: Annotated[
        str,
        Meta(
            description="IANA time zone in which a package's report.html shows times (with their "
            "UTC offset); the signed entries and manifest keep UTC."
        ),
    ] = DEFAULT_TIMEZONE


class ScrubConfig(Section, frozen=True):
    """[scrub]: re-hashing stored objects and running the ledger fsck on a schedule."""

    enabled: Annotated[
        bool,
        Meta(
            description="Run scheduled scrubs inside `evault serve` (processes running the media "
            "part; one process at a time runs a pass)."
        ),
    ] = True
    full_interval_hours: Annotated[
        float,
        Meta(
            ge=0.0,
            description="Hours between full passes over every object; 0: no scheduled full pass.",
        ),
    ] = 168.0
    sample_interval_hours: Annotated[
        float,
        Meta(
            ge=0.0,
            description="Hours between random-sample passes (a full pass counts as one); 0: none "
            "scheduled.",
        ),
    ] = 24.0
    sample_fraction: Annotated[
        float, Meta(ge=0.0, le=1.0, description="Share of evidence items checked by a sample pass.")
    ] = 0.01
    sample_size: Annotated[
        int, Meta(ge=0, description="Least number of evidence items checked by a sample pass.")
    ] = 100
    rate_mb_s: Annotated[
        float,
        Meta(
            ge=0.0,
            description="Read rate limit in MiB/s (all objects of a pass together); 0: unlimited.",
        ),
    ] = 50.0
    fsck: Annotated[
        bool,
        Meta(description="Run the ledger fsck and `evault ledger fsck --state` in every pass."),
    ] = True
    check_seconds: Annotated[
        float,
        Meta(
            ge=1.0, le=86400.0, description="How often the scheduler looks whether a pass is due."
        ),
    ] = 300.0

    def sample_count(self, total: int) -> int:
        """Items a sample pass checks out of ``total``."""
        return min(total, max(self.sample_size, math.ceil(self.sample_fraction * total)))
