"""The S3 client the S3 blob store speaks through: aiobotocore (botocore's S3 model and SigV4
signing on aiohttp, which the service already runs on).

Why aiobotocore: it is the asyncio port of the reference S3 client, kept by aio-libs in step with
botocore releases, so every Object Lock call (PutObject with ObjectLockMode/RetainUntilDate,
PutObjectRetention, GetObjectRetention, GetObjectLockConfiguration), multipart, versions,
ranged GETs and S3's error model come tested against AWS, and the same code talks to Ceph RGW,
MinIO and other S3 services. Its cost is a dependency (botocore, ~25 MB on disk); a request's
overhead is small against the 16 MiB parts the store sends.

Settings that matter against Ceph 16 (measured): the store sends ``Content-MD5`` itself and
botocore's own default checksums (CRC32 in aws-chunked trailers) are turned off with
``request_checksum_calculation="when_required"``: RGW 16 neither checks nor accepts them.

A payload hash known already: ``PutObject`` and ``UploadPart`` take one more parameter,
``PayloadSha256`` (``PAYLOAD_SHA256``), the SHA-256 of the body computed beforehand. The request
is then signed with that hash as its ``x-amz-content-sha256`` (over HTTPS too), which S3 checks
against the bytes it receives (``XAmzContentSHA256Mismatch`` otherwise, Ceph included), and
botocore does not hash the body a second time.

Credentials are taken the way S3 tools take them (``load_credentials``): a credentials file named
in the configuration, else ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, else the AWS shared
credentials file. They never appear in a repr or an error message.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import botocore.auth
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError
from botocore.utils import parse_timestamp as default_timestamp_parser

from vault.config import S3StoreConfig
from vault.errors import ConfigError, Unavailable

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = [
    "PAYLOAD_SHA256",
    "S3Credentials",
    "error_code",
    "load_credentials",
    "open_client",
    "unavailable",
]

PAYLOAD_SHA256 = "PayloadSha256"
_CONTEXT_KEY = "evault_payload_sha256"
_SIGNER = "evault-s3v4"


class _KnownPayloadAuth(botocore.auth.S3SigV4Auth):
    """S3's SigV4 with the payload hash given by the caller (always signed, never recomputed)."""

    def payload(self, request: Any) -> str:
        known = request.context.get(_CONTEXT_KEY)
        return str(known) if known else str(super().payload(request))


botocore.auth.AUTH_TYPE_MAPS.setdefault(_SIGNER, _KnownPayloadAuth)


def _take_payload_hash(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    known = params.pop(PAYLOAD_SHA256, None)
    if known:
        context[_CONTEXT_KEY] = known


def _choose_signer(context: dict[str, Any], signature_version: str = "", **_: Any) -> str | None:
    if context.get(_CONTEXT_KEY) and signature_version in ("s3v4", "v4"):
        return _SIGNER
    return None


@dataclass(frozen=True)
class S3Credentials:
    """An access key and its secret (the secret is left out of ``repr``)."""

    access_key: str
    secret_key: str = field(repr=False)
    source: str = ""


def load_credentials(cfg: S3StoreConfig, environ: Mapping[str, str] | None = None) -> S3Credentials:
    """The credentials, by the rule in the module docstring; ``ConfigError`` if none."""
    env = os.environ if environ is None else environ
    if cfg.credentials_file:
        return _from_file(Path(cfg.credentials_file), cfg.profile)
    key, secret = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
    if key and secret:
        return S3Credentials(key, secret, "environment")
    shared = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")
    if shared.is_file():
        return _from_file(shared, cfg.profile)
    raise ConfigError(
        "store.s3: no credentials: set store.s3.credentials_file, or AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or write ~/.aws/credentials"
    )


def _from_file(path: Path, profile: str) -> S3Credentials:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as exc:
        raise ConfigError(f"store.s3: cannot read the credentials file {path}: {exc}") from None
    if not parser.has_section(profile):
        raise ConfigError(f"store.s3: {path} has no [{profile}] section")
    section = parser[profile]
    key = section.get("aws_access_key_id", "").strip()
    secret = section.get("aws_secret_access_key", "").strip()
    if not key or not secret:
        raise ConfigError(
            f"store.s3: [{profile}] of {path} needs aws_access_key_id and aws_secret_access_key"
        )
    return S3Credentials(key, secret, str(path))


def client_config(cfg: S3StoreConfig) -> AioConfig:
    """botocore's settings for this store (addressing, checksums, retries, pool)."""
    return AioConfig(
        region_name=cfg.region,
        s3={"addressing_style": "path" if cfg.path_style else "virtual"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=32,
        tcp_keepalive=True,
    )


def parse_timestamp(value: str) -> datetime:
    """botocore's timestamp parser without its general (dateutil) path for the two forms S3
    answers with: HTTP dates in headers (Last-Modified, x-amz-object-lock-retain-until-date)
    and ISO 8601 in XML bodies. Parsing every GET's headers with dateutil cost more CPU than the
    rest of a 1 MiB ranged read's client work. Anything else goes to botocore's parser."""
    try:
        iso = value[:4].isdigit()
        got = datetime.fromisoformat(value) if iso else parsedate_to_datetime(value)
        if got.tzinfo is not None:
            return got.astimezone(UTC)
    except (TypeError, ValueError, IndexError):
        pass
    return default_timestamp_parser(value)


@asynccontextmanager
async def open_client(cfg: S3StoreConfig, creds: S3Credentials) -> AsyncIterator[S3Client]:
    """An S3 client for the configured endpoint, closed on exit."""
    session = get_session()
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )
    async with session.create_client(
        "s3",
        endpoint_url=cfg.endpoint or None,
        region_name=cfg.region,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        config=client_config(cfg),
    ) as client:
        for op in ("PutObject", "UploadPart"):
            client.meta.events.register(f"provide-client-params.s3.{op}", _take_payload_hash)
            client.meta.events.register(f"choose-signer.s3.{op}", _choose_signer)  # type: ignore[arg-type]
        yield client


def error_code(exc: ClientError) -> str:
    """S3's error code of a failed call (``NoSuchKey``, ``AccessDenied``, ``404`` for a HEAD)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    """The HTTP status of a failed call (0 if unknown)."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


@contextmanager
def unavailable(action: str) -> Iterator[None]:
    """Turn transport failures and unexpected S3 errors into ``Unavailable`` (cause chained).
    Callers catch the ``ClientError`` codes they expect inside this block."""
    try:
        yield
    except ClientError as exc:
        raise Unavailable(f"S3 store: {action} failed: {error_code(exc)}") from exc
    except (BotoCoreError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise Unavailable(f"S3 store: {action} failed: {type(exc).__name__}") from exc
