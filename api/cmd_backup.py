"""``evault backup --out DIR`` and ``evault restore DIR``: see ``vault.ops.backup``,
``vault.ops.restore``.

Guarantees at this level: the signing key and the host MAC key (``ledger.mac_key_file``) enter a
backup only with ``--with-key`` and then only encrypted under a passphrase read from
``--passphrase-file`` or typed twice at a terminal (never from an argument or the environment);
a restore puts back the keys the backup carries, checked (the signing key must be the log's, the
MAC key well-formed), and otherwise says which key must be copied from the old host by hand; a
restore writes into a data directory that holds nothing but, optionally, the ``evault.toml`` the
operator prepared for it, and ignores ``$EVAULT_CONFIG`` (the restore must never be pointed at
the live deployment by accident).
Exit status: 0 when everything was taken and checked, 1 when the result has problems (named on
standard output), 2 on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from api.config import CONFIG_NAME, Config, default_toml, find_config_file, load
from vault.errors import ConfigError, Conflict
from vault.keys.hostmac import HostMac, load_mac_key
from vault.keys.signing import load_signer
from vault.ops import backupfmt as fmt
from vault.ops.backup import BackupSource, backup
from vault.ops.restore import RestoreTarget, read_manifest, restore, verifier_of
from vault.storage.s3blobs import S3Blobs
from vault.storage.storage import open_objects
from verify.note import Signer


def register(sub: Any) -> None:
    p = sub.add_parser("backup", help="a consistent backup: database, ledger, blobs (and key)")
    p.add_argument("--out", required=True, type=Path, help="new (or empty) backup folder")
    p.add_argument(
        "--with-key",
        action="store_true",
        help="include the ledger signing key and the host MAC key, encrypted with a passphrase",
    )
    p.add_argument("--passphrase-file", type=Path, help="file whose first line is the passphrase")
    p.add_argument(
        "--copy",
        action="store_true",
        help="copy objects even where a hard link into the backup would be possible",
    )
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="restore a backup into a fresh data directory")
    p.add_argument("backup", type=Path, help="folder written by `evault backup`")
    p.add_argument(
        "--data",
        dest="restore_data",
        help="new data directory (empty, or holding only the evault.toml to use)",
    )
    p.add_argument("--passphrase-file", type=Path, help="file whose first line is the passphrase")
    p.set_defaults(func=cmd_restore, no_config=True)


def _passphrase(path: Path | None, confirm: bool) -> bytes:
    if path is not None:
        lines = path.read_text(encoding="utf-8").splitlines()
        return (lines[0] if lines else "").encode()
    if not sys.stdin.isatty():
        raise ConfigError("no terminal to ask for the passphrase: give --passphrase-file")
    first = getpass.getpass("backup key passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        raise ConfigError("the passphrases differ")
    return first.encode()


async def cmd_backup(args: argparse.Namespace, cfg: Config) -> int:
    signer = load_signer(cfg.path(cfg.ledger.key_file))
    sealed = sealed_mac = None
    if args.with_key:
        mac_file = cfg.path(cfg.ledger.mac_key_file)
        load_mac_key(mac_file)  # a missing or malformed MAC key fails the backup up front
        secret = cfg.path(cfg.ledger.key_file).read_bytes()
        passphrase = _passphrase(args.passphrase_file, True)
        sealed = fmt.seal_key(secret, passphrase, signer.vkey)
        sealed_mac = fmt.seal_key(mac_file.read_bytes(), passphrase, signer.vkey, fmt.MAC_KEY)
    config_file, _ = find_config_file(args.config, args.data)
    src = BackupSource(
        data_dir=cfg.data,
        database=cfg.database,
        store_root=cfg.path(cfg.store.root),
        quarantine=cfg.path(cfg.store.quarantine),
        checkpoints_log=cfg.path(cfg.ledger.checkpoints_log),
        config_file=config_file,
        verifier=signer.verifier,
    )
    async with open_objects(cfg) as objects:
        if isinstance(objects, S3Blobs):
            src = dataclasses.replace(src, bucket=objects.s3)
        result = await backup(
            src,
            args.out.resolve(),
            sealed_key=sealed,
            sealed_mac_key=sealed_mac,
            link=not args.copy,
            progress=_say,
        )
    print(
        f"backup {result.path}: ledger size {result.ledger_size} (last checkpoint "
        f"{result.checkpoint_size}), {result.objects} objects, {result.bytes} bytes "
        f"({result.linked} hard-linked), signing key and host MAC key "
        + ("included, encrypted" if result.with_key and result.with_mac_key else "NOT included")
    )
    if not result.with_key:
        print(
            f"keep {cfg.path(cfg.ledger.key_file)} and {cfg.path(cfg.ledger.mac_key_file)} "
            "backed up elsewhere (encrypted: `evault backup --with-key` once): a restore "
            "needs both"
        )
    for rel in result.damaged:
        print(f"DAMAGED (not copied; restore it from an older backup): {rel}")
    for h in result.missing:
        print(f"MISSING from the store though the database references it: {h}")
    for problem in result.log_problems:
        print(f"PROBLEM: {problem}")
    return 0 if result.ok else 1


def _say(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def _target_dir(args: argparse.Namespace) -> Path:
    chosen = args.restore_data or args.data or os.environ.get("EVAULT_DATA") or "data"
    data = Path(chosen).resolve()
    if data.exists():
        extra = [p.name for p in data.iterdir() if p.name != CONFIG_NAME]
        if extra:
            raise Conflict(
                f"{data} is not empty ({', '.join(sorted(extra)[:5])}): restore only into a "
                "new data directory"
            )
    return data


def _prepare_restore(
    args: argparse.Namespace,
) -> tuple[Path, Config, RestoreTarget, bytes | None, bytes | None]:
    """Check the backup and the target, read the keys, write the target's configuration."""
    backup_dir: Path = args.backup.resolve()
    manifest = read_manifest(backup_dir)  # checks every file's hash before anything is written
    verifier = verifier_of(manifest)
    data = _target_dir(args)
    key = mac_key = None
    keyed = [n for n in (fmt.KEY, fmt.MAC_KEY) if (backup_dir / n).exists()]
    passphrase = _passphrase(args.passphrase_file, False) if keyed else b""
    if fmt.KEY in keyed:
        blob = (backup_dir / fmt.KEY).read_bytes()
        key = fmt.open_key(blob, passphrase, verifier.vkey)
        if Signer.from_skey(key.decode().strip()).vkey != verifier.vkey:
            raise ConfigError(f"{backup_dir / fmt.KEY}: not the key of this backup's log")
    if fmt.MAC_KEY in keyed:
        blob = (backup_dir / fmt.MAC_KEY).read_bytes()
        mac_key = fmt.open_key(blob, passphrase, verifier.vkey, fmt.MAC_KEY)
        try:
            HostMac(bytes.fromhex(mac_key.decode("ascii").strip()))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"{backup_dir / fmt.MAC_KEY}: not a host MAC key") from exc
    fmt.private_dirs(data)
    cfg_path = Path(args.config).resolve() if args.config else data / CONFIG_NAME
    if not cfg_path.exists():
        saved = backup_dir / fmt.CONFIG
        text = saved.read_bytes() if saved.exists() else default_toml().encode()
        fmt.write_durable(cfg_path, text)
    cfg = load(str(cfg_path), str(data))
    if cfg.ledger.origin != verifier.name:
        raise ConfigError(
            f"{cfg_path}: ledger.origin is {cfg.ledger.origin!r} but the backup's log is "
            f"{verifier.name!r}"
        )
    target = RestoreTarget(
        data_dir=cfg.data,
        database=cfg.database,
        store_root=cfg.path(cfg.store.root),
        quarantine=cfg.path(cfg.store.quarantine),
        checkpoints_log=cfg.path(cfg.ledger.checkpoints_log),
        key_file=cfg.path(cfg.ledger.key_file),
        mac_key_file=cfg.path(cfg.ledger.mac_key_file),
    )
    return backup_dir, cfg, target, key, mac_key


def _make_folders(cfg: Config) -> None:
    """What `evault init` creates besides the key: quarantine and dock folders."""
    for folder in [cfg.path(cfg.store.quarantine), *(cfg.path(d.path) for d in cfg.docks)]:
        fmt.private_dirs(folder)


async def cmd_restore(args: argparse.Namespace, _cfg: None) -> int:
    backup_dir, cfg, target, key, mac_key = await asyncio.to_thread(_prepare_restore, args)
    async with open_objects(cfg) as objects:
        if isinstance(objects, S3Blobs):
            target = dataclasses.replace(target, bucket=objects.s3)
        result = await restore(backup_dir, target, signing_key=key, mac_key=mac_key, progress=_say)
    await asyncio.to_thread(_make_folders, cfg)
    fsck = result.fsck
    for problem in ([] if fsck is None else fsck.problems) + result.problems:
        print(f"FAIL: {problem}")
    for bad in result.bad_objects:
        print(f"BAD OBJECT: {bad}")
    print(
        f"restored into {cfg.data}: ledger size {result.ledger_size}, last checkpoint "
        f"{result.checkpoint_size}, {result.objects} objects; fsck "
        + ("clean" if fsck is not None and fsck.ok else "FAILED")
    )
    if not result.key_restored:
        print(f"no signing key restored: put the log's key at {target.key_file} (mode 0600)")
    if not result.mac_key_restored:
        print(
            f"no host MAC key restored: copy {cfg.ledger.mac_key_file} by hand from the old host "
            f"to {target.mac_key_file} (mode 0600, folder 0700) before starting; without it the "
            "restored service cannot verify its state (batch authenticators, row tags), and a "
            "new key (`evault init`) cannot either"
        )
    for dock in cfg.docks:
        print(
            f"dock {dock.id} ({cfg.path(dock.path)}): a receipt with ledger_index >= "
            f"{result.ledger_size} names an entry this ledger does not have (written after the "
            "backup): move such receipts aside so their files are taken again"
        )
    print(f"start it with: evault --data {cfg.data} serve")
    return 0 if result.ok else 1
