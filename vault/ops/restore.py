"""``evault restore``: bring a backup (``vault.ops.backup``) back into a fresh deployment.

Guarantees:

* Nothing is overwritten: the target database must hold no table, the blob store no object,
  and neither ``checkpoints.log`` nor a key being restored (signing key, host MAC key) may exist
  yet (``Conflict`` otherwise, before anything is written).
* Keys come back only when the backup carries them (``--with-key``) and they were decrypted:
  the signing key to ``ledger.key_file``, the host MAC key beside it to
  ``ledger.mac_key_file`` (0600). ``RestoreResult`` says which were restored; a restore without
  the MAC key leaves the operator to copy it from the old host (a new one cannot verify the
  restored state).
* The backup is checked before it is used: the manifest's format, and the hash of every file it
  names (dump, checkpoint log, file list, key, configuration). A mismatch raises
  ``IntegrityError`` and nothing is restored. Each object is verified against the file list as
  it is copied (copies, never links: the backup stays independent of the restored store).
* The database is restored in one transaction (``pg_restore --single-transaction``) without the
  old owners and grants; the app role and its grants are then re-created by the normal start-up
  path (``vault.db.open_database``).
* Afterwards the restore checks what the operator would: ``fsck`` of the whole ledger against
  the database's checkpoints and the restored ``checkpoints.log``, that the latest checkpoint is
  the one recorded in the manifest, and that every object the database references is present
  and hashes to its address. ``RestoreResult.ok`` only when all of it holds.
* A backup of the S3 store (its manifest names the bucket) is restored only onto a target
  configured on that bucket (``ConfigError`` otherwise); its objects are not copied but checked
  in the bucket against ``bucket-objects.jsonl`` (``vault.ops.backupbucket``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from vault.config import DatabaseConfig
from vault.db import open_database, with_database
from vault.errors import ConfigError, Conflict, IntegrityError, NotFound, Unavailable
from vault.ledger.fsck import FsckReport, fsck
from vault.ops import backupfmt as fmt
from vault.ops.backup import owner_dsn
from vault.ops.backupbucket import check_bucket_objects
from vault.storage.blobstore import BlobStore
from vault.storage.s3store import S3BlobStore
from verify.note import Verifier, parse_vkey

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RestoreTarget:
    """Where to restore to: resolved paths and the database settings of the new deployment."""

    data_dir: Path
    database: DatabaseConfig
    store_root: Path
    quarantine: Path
    checkpoints_log: Path
    key_file: Path
    mac_key_file: Path | None = None
    bucket: S3BlobStore | None = None  # the S3 store the backup's objects are in


@dataclass
class RestoreResult:
    """What was restored and what the checks afterwards found."""

    ledger_size: int = 0
    checkpoint_size: int = 0
    objects: int = 0
    key_restored: bool = False
    mac_key_restored: bool = False
    fsck: FsckReport | None = None
    bad_objects: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.fsck is not None and self.fsck.ok and not self.bad_objects and not self.problems


def read_manifest(backup: Path) -> dict[str, Any]:
    """The backup's manifest after checking every file it names; IntegrityError if any differs."""
    try:
        manifest: dict[str, Any] = json.loads((backup / fmt.MANIFEST).read_bytes())
    except FileNotFoundError:
        raise NotFound(f"{backup}: no {fmt.MANIFEST}: not a complete backup") from None
    except ValueError as exc:
        raise IntegrityError(f"{backup / fmt.MANIFEST}: not JSON: {exc}") from exc
    if manifest.get("format") != fmt.FORMAT:
        raise IntegrityError(f"{backup}: not an {fmt.FORMAT} backup")
    for name, want in manifest["files"].items():
        if "/" in name or name.startswith("."):
            raise IntegrityError(f"{backup}: manifest names an unexpected file {name!r}")
        try:
            got = fmt.describe_file(backup / name)
        except FileNotFoundError:
            raise IntegrityError(f"{backup / name} is missing") from None
        if got != want:
            raise IntegrityError(f"{backup / name} does not match the manifest")
    return manifest


def verifier_of(manifest: dict[str, Any]) -> Verifier:
    return parse_vkey(str(manifest["vkey"]))


def _file_list(backup: Path) -> list[tuple[str, str, int]]:
    out = []
    for line in (backup / fmt.FILES).read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        rel = str(item["path"])
        parts = rel.split("/")
        if parts[0] not in (*fmt.STORE_TREES, fmt.QUARANTINE) or ".." in parts or "" in parts:
            raise IntegrityError(f"{fmt.FILES}: unexpected path {rel!r}")
        out.append((rel, str(item["sha256"]), int(item["size"])))
    return out


def check_target(target: RestoreTarget, with_key: bool, with_mac_key: bool = False) -> None:
    """Conflict unless the target's files are all absent (see the module docstring)."""
    for tree in fmt.STORE_TREES:
        objects = target.store_root / tree
        if objects.is_dir() and any(p for p, _ in fmt.walk_files(objects)):
            raise Conflict(f"{objects} already holds objects: restore only into a fresh store")
    paths = [target.checkpoints_log] + ([target.key_file] if with_key else [])
    if with_mac_key and target.mac_key_file is not None:
        paths.append(target.mac_key_file)
    for path in paths:
        if path.exists():
            raise Conflict(f"{path} exists: a restore never writes over anything")


async def _prepare_database(dsn: str) -> int:
    """Create the target database if the server lacks it; Conflict if it holds tables.
    Returns the server's major version."""
    try:
        conn = await asyncpg.connect(dsn, timeout=30)
    except asyncpg.InvalidCatalogNameError:
        name = urlsplit(dsn).path.lstrip("/")
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise Conflict(f"database {name!r} does not exist: create it first") from None
        admin = await asyncpg.connect(with_database(dsn, "postgres"), timeout=30)
        try:
            await admin.execute(f"CREATE DATABASE {name}")
        finally:
            await admin.close()
        conn = await asyncpg.connect(dsn, timeout=30)
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog',"
            " 'information_schema')"
        )
        if tables:
            raise Conflict("the target database is not empty: restore only into a fresh one")
        return int(await conn.fetchval("SHOW server_version_num")) // 10000
    finally:
        await conn.close()


async def _pg_restore(dsn: str, server_major: int, dump_tool: str, dump: Path) -> None:
    m = re.search(r"(\d+)", dump_tool)
    tool, _ = await asyncio.to_thread(
        fmt.find_pg_tool, "pg_restore", server_major, int(m[1]) if m else 0
    )
    target, env = fmt.libpq_target(dsn)
    proc = await asyncio.create_subprocess_exec(
        str(tool),
        "--no-owner",
        "--no-acl",
        "--exit-on-error",
        "--single-transaction",
        f"--dbname={target}",
        str(dump),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise Unavailable(f"pg_restore failed ({proc.returncode}): {err.decode()[-2000:].strip()}")


def _copy_objects(
    backup: Path, target: RestoreTarget, files: list[tuple[str, str, int]], result: RestoreResult
) -> None:
    for rel, sha256, _size in files:
        top, _, rest = rel.partition("/")
        in_store = top in fmt.STORE_TREES
        dst = (target.store_root / rel) if in_store else (target.quarantine / rest)
        fmt.private_dirs(dst.parent)
        try:
            fmt.copy_verified(backup / rel, dst, rel, link=False, expect=sha256, mode=0o400)
        except (IntegrityError, FileNotFoundError) as exc:
            result.bad_objects.append(f"{rel}: {exc}")
            continue
        result.objects += in_store
    roots = [target.store_root / t for t in fmt.STORE_TREES] + [target.quarantine]
    for root in roots:
        if root.is_dir():
            fmt.fsync_tree(root)


async def restore(
    backup: Path,
    target: RestoreTarget,
    *,
    signing_key: bytes | None = None,
    mac_key: bytes | None = None,
    progress: Progress = lambda _msg: None,
) -> RestoreResult:
    """Restore ``backup`` into ``target``; ``signing_key`` and ``mac_key`` are the decrypted key
    files (``backupfmt.open_key``) or None to leave that key for the operator to put in place
    (``mac_key`` needs ``target.mac_key_file``)."""
    if mac_key is not None and target.mac_key_file is None:
        raise ValueError("a MAC key to restore needs target.mac_key_file")
    manifest = await asyncio.to_thread(read_manifest, backup)
    verifier = verifier_of(manifest)
    bucket = manifest["objects"].get("bucket")
    if bucket is not None and (target.bucket is None or target.bucket.bucket != bucket):
        raise ConfigError(
            f"this backup's objects are in the S3 bucket {bucket!r}: restore with store.backend "
            f'= "s3" and store.s3.bucket = "{bucket}"'
        )
    files = await asyncio.to_thread(_file_list, backup)
    await asyncio.to_thread(check_target, target, signing_key is not None, mac_key is not None)
    result = RestoreResult()
    dsn, server = await owner_dsn(target.database, target.data_dir)
    try:
        major = await _prepare_database(dsn)
        progress("restoring the database")
        await _pg_restore(dsn, major, manifest["database"]["dump"], backup / fmt.DUMP)
        progress(f"restoring {len(files)} objects and quarantined files")
        fmt.private_dirs(target.store_root)
        await asyncio.to_thread(_copy_objects, backup, target, files, result)
        log = await asyncio.to_thread((backup / fmt.CHECKPOINTS).read_bytes)
        fmt.private_dirs(target.checkpoints_log.parent)
        await asyncio.to_thread(fmt.write_durable, target.checkpoints_log, log)
        if signing_key is not None:
            fmt.private_dirs(target.key_file.parent)
            await asyncio.to_thread(fmt.write_durable, target.key_file, signing_key)
            result.key_restored = True
        if mac_key is not None and target.mac_key_file is not None:
            fmt.private_dirs(target.mac_key_file.parent)
            await asyncio.to_thread(fmt.write_durable, target.mac_key_file, mac_key)
            result.mac_key_restored = True
        progress("checking the restored ledger and blobs")
        await _check(target, manifest, verifier, result, backup)
    finally:
        if server is not None:
            await server.stop()
    return result


async def _check(
    target: RestoreTarget,
    manifest: dict[str, Any],
    verifier: Verifier,
    result: RestoreResult,
    backup: Path,
) -> None:
    async with open_database(target.database, target.data_dir) as db, db.pool.acquire() as conn:
        result.fsck = await fsck(conn, verifier, target.checkpoints_log)
        result.ledger_size = result.fsck.size
        last = await conn.fetchrow(
            "SELECT size, note FROM ledger_checkpoints ORDER BY id DESC LIMIT 1"
        )
        needed = await fmt.referenced(conn)
    want = manifest["ledger"]["checkpoint"]
    if (None if last is None else last["note"]) != want:
        result.problems.append("the latest checkpoint differs from the one in the manifest")
    result.checkpoint_size = 0 if last is None else int(last["size"])
    if result.ledger_size != manifest["ledger"]["size"]:
        result.problems.append(
            f"the ledger has {result.ledger_size} entries, the manifest says "
            f"{manifest['ledger']['size']}"
        )
    if target.bucket is not None:
        result.bad_objects.extend(await check_bucket_objects(target.bucket, backup, needed))
        result.objects = len(set(needed))
        return
    store = BlobStore(target.store_root)

    def verify_all() -> list[str]:
        bad = []
        for rel in needed:
            path = target.store_root / rel
            plain = fmt.address_of(rel)
            try:
                if plain is not None and not store.verify(plain):
                    bad.append(f"{rel}: does not hash to its address")
                elif plain is None and not path.is_file():
                    raise FileNotFoundError(rel)
            except (FileNotFoundError, NotFound):
                bad.append(f"{rel}: referenced by the database but not restored")
        return bad

    result.bad_objects.extend(await asyncio.to_thread(verify_all))
