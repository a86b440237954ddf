"""``evault init`` and ``evault config-reference`` (``evault serve`` is ``api.cmd_serve``: the
web stack it imports is not loaded by these)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from api.config import default_toml, find_config_file, load
from api.configdoc import config_reference
from vault.keys.hostmac import create_mac_key
from vault.keys.signing import create_signing_key, vkey_path


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="create the data directory, default config and signing key")
    p.set_defaults(func=cmd_init, no_config=True)

    p = sub.add_parser("config-reference", help="print every configuration key (Markdown)")
    p.set_defaults(
        func=lambda args, cfg: sys.stdout.write(config_reference()) and 0, no_config=True
    )


def cmd_init(args: argparse.Namespace, _cfg: None) -> int:
    """Write the default config (never over an existing one), create folders and the key."""
    cfg_path, data_dir = find_config_file(args.config, args.data)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not cfg_path.exists():
        if cfg_path.parent != data_dir:
            cfg_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(default_toml())
        print(f"wrote {cfg_path}")
    else:
        print(f"kept existing {cfg_path}")
    cfg = load(str(cfg_path) if args.config else None, str(data_dir))
    for folder in (cfg.path(cfg.store.root), cfg.path(cfg.store.quarantine)):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for dock in cfg.docks:
        cfg.path(dock.path).mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = cfg.path(cfg.ledger.key_file)
    signer, created = create_signing_key(key_path, cfg.ledger.origin)
    print(("created" if created else "kept existing") + f" signing key {key_path}")
    _, mac_created = create_mac_key(cfg.path(cfg.ledger.mac_key_file))
    print(
        ("created" if mac_created else "kept existing")
        + f" host MAC key {cfg.path(cfg.ledger.mac_key_file)}: keep it with the signing key,"
        " back both up encrypted (`evault backup --with-key`), never put it in the database;"
        " a restore needs this very key (a new one cannot verify the stored state)"
    )
    print(
        f"verifier key (give it to reviewers out of band; also in {vkey_path(key_path)}):\n"
        f"{signer.vkey}"
    )
    return 0
