"""``evault backup``: a consistent copy of everything the vault needs to come back.

Order, and why it is consistent:

1. A session lock on the checkpointer's advisory lock stops any checkpoint from being signed.
2. A REPEATABLE READ, READ ONLY transaction exports its snapshot. Every checkpoint committed
   before the lock is in it, and none can be signed until the lock is released.
3. ``checkpoints.log`` is copied while the lock is held, after the snapshot's checkpoints
   another node signed and this node's log lacks are appended to it: it holds exactly the
   checkpoints of the snapshot (plus benign lines of a signer that crashed before its row
   committed, all for sizes the snapshot's tree already has), so ``fsck`` of the restored
   ledger agrees with it.
4. The lock is released; ``pg_dump --snapshot`` dumps exactly that snapshot (one snapshot for
   every table: the dump is transactionally consistent) while the service keeps running.
5. Blobs are copied after the snapshot. A blob is durable before its evidence row commits
   (DESIGN §4), so every object the snapshot references is already stored; each is verified by
   hash as it is copied (hard links where the backup shares the store's file system), and the
   snapshot's references are then checked against what was copied.
6. ``manifest.json`` is written last, with the hash of every other file.

With the S3 store (``source.bucket``) step 5 copies the quarantine only: the objects stay in their
Object Lock bucket and ``bucket-objects.jsonl`` records each referenced one's original version
and size (``vault.ops.backupbucket``).

Guarantees: a backup folder with a manifest is complete and every byte in it is covered by a
hash in the manifest; the signing key and the host MAC key are included only when asked, and
then only encrypted (``vault.ops.backupfmt``). A damaged object (bytes not matching its address) is
not copied and is named in ``BackupResult.damaged``; an object the snapshot references but the
store lacks (e.g. disposed of between the snapshot and the copy) is named in ``missing``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from vault.config import DatabaseConfig
from vault.db import EmbeddedServer
from vault.errors import Conflict, IntegrityError, Unavailable
from vault.ledger.checkpointer import CHECKPOINT_LOCK, append_checkpoint_log
from vault.ledger.entry import rfc3339
from vault.metrics import INTEGRITY_FAILURES
from vault.ops import backupfmt as fmt
from vault.ops.backupbucket import record_bucket_objects
from vault.storage.s3store import S3BlobStore
from verify.checkpoint import open_checkpoint
from verify.errors import VerificationError
from verify.note import Verifier

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BackupSource:
    """What to back up: resolved paths and the database settings of one deployment."""

    data_dir: Path
    database: DatabaseConfig
    store_root: Path
    quarantine: Path
    checkpoints_log: Path
    config_file: Path | None
    verifier: Verifier
    bucket: S3BlobStore | None = None  # the S3 store: objects stay there (module docstring)


@dataclass
class BackupResult:
    """What the backup holds, and what it could not take."""

    path: Path
    ledger_size: int = 0
    checkpoint_size: int = 0
    objects: int = 0
    bytes: int = 0
    linked: int = 0
    with_key: bool = False
    with_mac_key: bool = False
    damaged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    log_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.damaged or self.missing or self.log_problems)


@dataclass
class _Snapshot:
    snapshot: str
    size: int
    root: bytes
    checkpoint: str | None
    schema_version: int
    server_major: int
    server_version: str


def prepare_out(out: Path) -> None:
    """Create ``out`` (0700); Conflict if it exists and is not empty."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Conflict(f"{out} exists and is not empty: a backup never writes over anything")
    fmt.private_dirs(out)


async def owner_dsn(cfg: DatabaseConfig, data_dir: Path) -> tuple[str, EmbeddedServer | None]:
    """The schema owner's DSN, starting (or joining) the embedded server when there is no DSN."""
    if cfg.dsn:
        return cfg.migrate_dsn or cfg.dsn, None
    server = EmbeddedServer(data_dir / "pg")
    try:
        return await server.start(), server
    except (subprocess.SubprocessError, FileNotFoundError):
        # pgserver gives pg_ctl 10 s: a loaded host (or a fresh initdb) can miss that once;
        # a server that did come up meanwhile is found and shared on the second attempt.
        await asyncio.sleep(1.0)
        return await server.start(), server


async def backup(
    src: BackupSource,
    out: Path,
    *,
    sealed_key: bytes | None = None,
    sealed_mac_key: bytes | None = None,
    link: bool = True,
    progress: Progress = lambda _msg: None,
) -> BackupResult:
    """Write a backup of ``src`` into the new folder ``out``; see the module docstring.
    ``sealed_key`` / ``sealed_mac_key`` are outputs of ``backupfmt.seal_key`` for the signing key
    and the host MAC key (None: that key is not in the backup)."""
    await asyncio.to_thread(prepare_out, out)
    result = BackupResult(
        path=out, with_key=sealed_key is not None, with_mac_key=sealed_mac_key is not None
    )
    dsn, server = await owner_dsn(src.database, src.data_dir)
    try:
        lock = await asyncpg.connect(dsn, timeout=30)
        try:
            snap, tool, needed = await _dump(src, out, dsn, lock, result, progress)
        finally:
            await lock.close()
        progress("copying the blob store" if src.bucket is None else "copying the quarantine")
        copied = await asyncio.to_thread(_copy_trees, src, out, link, result)
    finally:
        if server is not None:
            await server.stop()
    if src.bucket is None:
        have = {c.path for c in copied}
        result.missing = sorted(rel for rel in needed if rel not in have)
    else:
        progress(f"listing the {len(set(needed))} referenced objects in the bucket")
        result.missing = await record_bucket_objects(src.bucket, needed, out)
        result.objects = len(set(needed)) - len(result.missing)
    keys = {fmt.KEY: sealed_key, fmt.MAC_KEY: sealed_mac_key}
    await asyncio.to_thread(_finish, src, out, snap, tool, copied, keys, result)
    return result


async def _dump(
    src: BackupSource,
    out: Path,
    dsn: str,
    lock: asyncpg.Connection[asyncpg.Record],
    result: BackupResult,
    progress: Progress,
) -> tuple[_Snapshot, str, list[str]]:
    """Steps 1-4 of the module docstring; returns the snapshot, the dump tool and the store
    paths the snapshot references (read in the snapshot, so the blob copy may take its time
    without holding a transaction open)."""
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        tr = conn.transaction(isolation="repeatable_read", readonly=True)
        progress("waiting for the checkpoint lock")
        await lock.execute("SELECT pg_advisory_lock($1)", CHECKPOINT_LOCK)
        try:
            await tr.start()
            snap = await _read_snapshot(conn)
            await _witness_snapshot(conn, src.checkpoints_log, src.verifier)
            log_bytes = await asyncio.to_thread(_read_optional, src.checkpoints_log)
        finally:
            await lock.execute("SELECT pg_advisory_unlock($1)", CHECKPOINT_LOCK)
        result.ledger_size = snap.size
        result.log_problems = _check_log(log_bytes, snap, src.verifier)
        if snap.checkpoint is not None:
            result.checkpoint_size = open_checkpoint(snap.checkpoint, src.verifier).size
        await asyncio.to_thread(fmt.write_durable, out / fmt.CHECKPOINTS, log_bytes)
        progress(f"dumping the database (ledger size {snap.size})")
        tool = await _pg_dump(dsn, snap, out / fmt.DUMP)
        needed = await fmt.referenced(conn)
        await tr.commit()
    finally:
        await conn.close()
    return snap, tool, needed


async def _read_snapshot(conn: asyncpg.Connection[asyncpg.Record]) -> _Snapshot:
    snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
    state = await conn.fetchrow("SELECT size, root FROM ledger_state")
    if state is None:
        raise Unavailable("the database has no ledger: is this an evidence-vault database?")
    note = await conn.fetchval("SELECT note FROM ledger_checkpoints ORDER BY id DESC LIMIT 1")
    version = await conn.fetchval("SELECT max(version) FROM schema_migrations")
    num = int(await conn.fetchval("SHOW server_version_num"))
    return _Snapshot(
        snapshot=snapshot,
        size=state["size"],
        root=bytes(state["root"]),
        checkpoint=note,
        schema_version=int(version or 0),
        server_major=num // 10000,
        server_version=str(await conn.fetchval("SHOW server_version")),
    )


async def _witness_snapshot(
    conn: asyncpg.Connection[asyncpg.Record], log_path: Path, verifier: Verifier
) -> None:
    """With several nodes, a checkpoint another node stored while this one was down, or a
    moment before the lock, may not be in this node's ``checkpoints.log`` (its checkpointer
    copies each one as it is stored, and catches up at start): append the snapshot's
    checkpoints the log lacks, each once it verifies, so the backup's log holds every checkpoint
    of its dump."""
    logged = set()
    for line in (await asyncio.to_thread(_read_optional, log_path)).splitlines():
        try:
            logged.add(str(json.loads(line)["note"]))
        except (ValueError, KeyError, TypeError):
            continue  # reported by _check_log
    for row in await conn.fetch("SELECT note FROM ledger_checkpoints ORDER BY size"):
        if row["note"] in logged:
            continue
        try:
            open_checkpoint(row["note"], verifier)
        except VerificationError:
            continue  # not copied: the backup reports what does not verify
        await asyncio.to_thread(append_checkpoint_log, log_path, row["note"], copied=True)


def _read_optional(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _check_log(log: bytes, snap: _Snapshot, verifier: Verifier) -> list[str]:
    """The snapshot's latest checkpoint must be in the log copy, and no line may be beyond the
    snapshot's tree (either would make the restored ledger fail fsck)."""
    problems = []
    notes = []
    for line in log.decode("utf-8", "replace").splitlines():
        try:
            notes.append(str(json.loads(line)["note"]))
        except (ValueError, KeyError, TypeError):
            problems.append("checkpoints.log has an unreadable line")
    if snap.checkpoint is not None and snap.checkpoint not in notes:
        problems.append("the latest checkpoint in the database is not in checkpoints.log")
    for note in notes:
        try:
            size = open_checkpoint(note, verifier).size
        except VerificationError as exc:
            problems.append(f"checkpoints.log holds a line that does not verify: {exc}")
            continue
        if size > snap.size:
            problems.append(f"checkpoints.log has a checkpoint of size {size} > {snap.size}")
    return problems


async def _pg_dump(dsn: str, snap: _Snapshot, dest: Path) -> str:
    tool, major = await asyncio.to_thread(fmt.find_pg_tool, "pg_dump", snap.server_major)
    target, env = fmt.libpq_target(dsn)
    proc = await asyncio.create_subprocess_exec(
        str(tool),
        "--format=custom",
        f"--snapshot={snap.snapshot}",
        f"--file={dest}",
        f"--dbname={target}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise Unavailable(f"pg_dump failed ({proc.returncode}): {err.decode()[-2000:].strip()}")
    await asyncio.to_thread(os.chmod, dest, 0o600)
    return f"pg_dump {major}"


def _copy_trees(src: BackupSource, out: Path, link: bool, result: BackupResult) -> list[fmt.Copied]:
    jobs: list[tuple[Path, Path, str]] = []
    trees = fmt.STORE_TREES if src.bucket is None else ()
    roots = [(src.store_root / t, False) for t in trees] + [(src.quarantine, True)]
    for root, rename in roots:
        for path, rel in fmt.walk_files(root):
            if rename:  # the quarantine folder may have any name: store it as quarantine/
                rel = fmt.QUARANTINE + "/" + rel.split("/", 1)[1]
            jobs.append((path, out / rel, rel))
    for folder in sorted({dst.parent for _, dst, _ in jobs}):
        fmt.private_dirs(folder)

    def one(job: tuple[Path, Path, str]) -> fmt.Copied | str:
        path, dst, rel = job
        try:
            expect = fmt.address_of(rel)
            return fmt.copy_verified(path, dst, rel, link=link, expect=expect, mode=0o400)
        except FileNotFoundError:
            return ""  # removed meanwhile (disposal): the reference check reports it if needed
        except IntegrityError:
            INTEGRITY_FAILURES.labels(source="backup").inc()
            return rel

    copied: list[fmt.Copied] = []
    with ThreadPoolExecutor(4, thread_name_prefix="backup-copy") as pool:
        for item in pool.map(one, jobs):
            if isinstance(item, fmt.Copied):
                copied.append(item)
            elif item:
                result.damaged.append(item)
    for sub in (*fmt.STORE_TREES, fmt.QUARANTINE):
        if (out / sub).is_dir():
            fmt.fsync_tree(out / sub)
    result.objects = sum(c.path.split("/", 1)[0] in fmt.STORE_TREES for c in copied)
    result.bytes = sum(c.size for c in copied)
    result.linked = sum(c.linked for c in copied)
    return copied


def _finish(
    src: BackupSource,
    out: Path,
    snap: _Snapshot,
    tool: str,
    copied: list[fmt.Copied],
    keys: dict[str, bytes | None],
    result: BackupResult,
) -> None:
    lines = "".join(c.line() + "\n" for c in sorted(copied, key=lambda c: c.path))
    fmt.write_durable(out / fmt.FILES, lines.encode())
    if src.config_file is not None and src.config_file.is_file():
        fmt.write_durable(out / fmt.CONFIG, src.config_file.read_bytes())
    for name, sealed in keys.items():
        if sealed is not None:
            fmt.write_durable(out / name, sealed)
    names = [fmt.DUMP, fmt.CHECKPOINTS, fmt.FILES, fmt.BUCKET_OBJECTS, fmt.CONFIG, fmt.KEY]
    names.append(fmt.MAC_KEY)
    manifest: dict[str, Any] = {
        "format": fmt.FORMAT,
        "created": rfc3339(datetime.now(UTC)),
        "origin": src.verifier.name,
        "vkey": src.verifier.vkey,
        "schema_version": snap.schema_version,
        "database": {"dump": tool, "format": "custom", "server_version": snap.server_version},
        "ledger": {"size": snap.size, "root": snap.root.hex(), "checkpoint": snap.checkpoint},
        "files": {n: fmt.describe_file(out / n) for n in names if (out / n).exists()},
        "objects": {"count": result.objects, "bytes": result.bytes, "linked": result.linked}
        | ({} if src.bucket is None else {"bucket": src.bucket.bucket}),
        "damaged": result.damaged,
        "missing": result.missing,
        "problems": result.log_problems,
    }
    body = (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode()
    fmt.write_durable(out / fmt.MANIFEST, body)
