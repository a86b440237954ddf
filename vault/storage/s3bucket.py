"""The bucket of the S3 store: it must have Object Lock, or be created with it when allowed.
A bucket without Object Lock is refused (``ConfigError``, one line naming the bucket): originals
there could be deleted or overwritten by anyone holding the credentials. The bucket's COMPLIANCE
default retention, if it has one, is returned: it locks every new version from its creation."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from vault.errors import ConfigError
from vault.storage.s3client import error_code, unavailable
from vault.storage.s3upload import COMPLIANCE

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["check_bucket"]


async def check_bucket(
    client: S3Client, bucket: str, *, create: bool = False, default_days: int = 1
) -> timedelta | None:
    """The bucket must exist with Object Lock enabled (``ConfigError`` naming what is
    wrong). With ``create``, a missing bucket is created with Object Lock and a COMPLIANCE
    default retention of ``default_days``. Returns the bucket's COMPLIANCE default retention
    (None if it has none, or another mode)."""
    got: dict[str, Any] = {}
    with unavailable("reading the bucket's Object Lock configuration"):
        try:
            got = dict(await client.get_object_lock_configuration(Bucket=bucket))
        except ClientError as exc:
            code = error_code(exc)
            if code == "NoSuchBucket" and create:
                await _create_bucket(client, bucket, default_days)
                return timedelta(days=default_days)
            if code == "NoSuchBucket":
                raise ConfigError(
                    f"store.s3: bucket {bucket!r} does not exist (create it with "
                    "Object Lock, or set store.s3.create_bucket = true)"
                ) from None
            if code != "ObjectLockConfigurationNotFoundError":
                raise
    enabled = got.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
    if enabled != "Enabled":
        raise ConfigError(
            f"store.s3: bucket {bucket!r} has no Object Lock: originals there could be "
            "deleted or overwritten. Use a bucket created with Object Lock enabled."
        )
    return _default_retention(got["ObjectLockConfiguration"].get("Rule", {}))


def _default_retention(rule: dict[str, Any]) -> timedelta | None:
    """A bucket's COMPLIANCE default retention (a year counted as 365 days, never longer than
    what S3 applies), or None."""
    default = rule.get("DefaultRetention", {})
    if default.get("Mode") != COMPLIANCE:
        return None
    days = int(default.get("Days") or 0) + 365 * int(default.get("Years") or 0)
    return timedelta(days=days) if days > 0 else None


async def _create_bucket(client: S3Client, bucket: str, default_days: int) -> None:
    with unavailable("creating the bucket"):
        try:
            await client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        except ClientError as exc:
            if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        await client.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": COMPLIANCE, "Days": default_days}},
            },
        )
