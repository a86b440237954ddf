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

Ranged reads (``SignedReads``): a GET of one version is signed in its URL (a presigned URL,
kept for a while per version), sent on the client's own HTTP session (its pool, TLS and proxy
settings) and its body streamed as it arrives: none of the per-call machinery of a client call
(parameter validation, endpoint rules, event hooks, response parsing), which cost more CPU
than the rest of a 1 MiB ranged read through the service. Anything but the expected answer
(an error status, another range, no connection) is left to the client's own call, which
retries and names S3's errors as every other call does.

Credentials are taken the way S3 tools take them (``load_credentials``): a credentials file named
in the configuration, else ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, else the AWS shared
credentials file. They never appear in a repr or an error message.
"""

from __future__ import annotations

import configparser
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import botocore.auth
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError
from botocore.utils import parse_timestamp as default_timestamp_parser

from vault.config import S3StoreConfig
from vault.errors import ConfigError, Unavailable

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = [
    "PAYLOAD_SHA256",
    "S3Credentials",
    "SignedReads",
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


_URL_TTL = 900  # seconds a presigned read URL is valid
_URL_REUSE = 600.0  # seconds one is used for (it stays valid for the longest request after)
_URL_KEEP = 4096  # URLs kept at most (all forgotten when full)


class SignedReads:
    """GETs of one version signed in their URL (module docstring), on ``client``'s session."""

    def __init__(self, client: S3Client) -> None:
        self._s3 = client
        self._urls: dict[tuple[str, str, str], tuple[str, float]] = {}

    async def _url(self, bucket: str, key: str, version: str) -> str:
        """A presigned GET URL of this version (kept ``_URL_REUSE`` seconds)."""
        now = time.monotonic()
        kept = self._urls.get((bucket, key, version))
        if kept is not None and now - kept[1] < _URL_REUSE:
            return kept[0]
        url = await self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket, "Key": key, "VersionId": version},
            ExpiresIn=_URL_TTL,
        )
        if len(self._urls) >= _URL_KEEP:
            self._urls.clear()
        self._urls[(bucket, key, version)] = (url, now)
        return url

    async def get(
        self, bucket: str, key: str, version: str, start: int, end: int | None
    ) -> aiohttp.ClientResponse | None:
        """The response of a GET of bytes ``[start, end)`` (``end`` None: to the end) of that
        version, its body not read yet (the caller reads it, then releases or closes it); None
        if anything else came back (the caller then makes the client's own call)."""
        ranged = bool(start) or end is not None
        headers = {"Range": f"bytes={start}-{'' if end is None else end - 1}"} if ranged else {}
        url = await self._url(bucket, key, version)
        request = AWSRequest(method="GET", url=url, headers=headers, stream_output=True).prepare()
        try:
            got = await cast(Any, self._s3)._endpoint.http_session.send(request)
        except (BotoCoreError, aiohttp.ClientError, OSError, TimeoutError):
            return None
        resp: aiohttp.ClientResponse = got.raw
        if got.status_code == (206 if ranged else 200) and (
            not ranged or _range_start(resp.headers.get("Content-Range", "")) == start
        ):
            return resp
        resp.close()
        return None


def _range_start(content_range: str) -> int:
    """The first byte of a ``Content-Range: bytes a-b/n`` answer (-1 if none)."""
    unit, _, rest = content_range.partition(" ")
    first = rest.partition("-")[0]
    return int(first) if unit == "bytes" and first.isdigit() else -1


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
