"""Finding and reading ``evault.toml``, without the schema of every section.

``api.config`` loads and validates the whole configuration through these functions; a command
that needs one section (``evault ledger vkey``: the key files) loads only that section through
them, so it does not import the others' modules. Both follow the same rules:

- Discovery: ``--config FILE``, else ``$EVAULT_CONFIG``, else ``<data>/evault.toml`` where the
  data directory is ``--data DIR``, else ``$EVAULT_DATA``, else ``./data``.
- ``EVAULT_<SECTION>_<KEY>`` variables override keys of the sections given (and
  ``EVAULT_<SECTION>_<TABLE>_<KEY>`` keys of their nested tables), read as TOML values where they
  parse as one, else as strings.
- The top-level ``data`` key is relative to the configuration file's folder.
"""

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vault.config import LedgerConfig
from vault.errors import ConfigError
from vault.settings import Section, build

CONFIG_NAME = "evault.toml"


def find_config_file(config: str | None = None, data: str | None = None) -> tuple[Path, Path]:
    """(config file, data directory) by the discovery rule in the module docstring."""
    data_dir = Path(data or os.environ.get("EVAULT_DATA") or "data").resolve()
    chosen = config or os.environ.get("EVAULT_CONFIG")
    cfg = Path(chosen).resolve() if chosen else data_dir / CONFIG_NAME
    return cfg, data_dir


def data_dir_of(config_file: Path, data: Path) -> Path:
    """The data directory a configuration file's ``data`` key names."""
    return (config_file.parent / data).resolve()


def _nested_tables(cls: type[Section]) -> set[str]:
    return {key for key in cls.__struct_fields__ if isinstance(getattr(cls(), key), Section)}


def section_overrides(
    environ: Mapping[str, str], sections: Mapping[str, type[Section]]
) -> dict[str, dict[str, Any]]:
    """Parse ``EVAULT_<SECTION>_<KEY>`` variables of ``sections`` into nested overrides."""
    out: dict[str, dict[str, Any]] = {}
    nested: dict[str, set[str]] = {}
    for name, raw in environ.items():
        if not name.startswith("EVAULT_"):
            continue
        rest = name[len("EVAULT_") :].lower()
        section, _, key = rest.partition("_")
        if section not in sections or not key:
            continue
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        if section not in nested:
            nested[section] = _nested_tables(sections[section])
        table, _, subkey = key.partition("_")  # EVAULT_STORE_S3_BUCKET: [store.s3] bucket
        if subkey and table in nested[section]:
            out.setdefault(section, {}).setdefault(table, {})[subkey] = value
        else:
            out.setdefault(section, {})[key] = value
    return out


def read_config(
    config: str | None,
    data: str | None,
    sections: Mapping[str, type[Section]],
    environ: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], Path]:
    """(the file's TOML with the overrides of ``sections`` applied, its path); ConfigError for
    a missing file or invalid TOML."""
    env = os.environ if environ is None else environ
    path, data_dir = find_config_file(config, data)
    if not path.exists():
        raise ConfigError(f"{path}: no configuration file; run `evault init --data {data_dir}`")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    for section, values in section_overrides(env, sections).items():
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} must be a table")
        for key, value in values.items():
            inner = table.get(key)
            if isinstance(value, dict) and isinstance(inner, dict):
                inner.update(value)
            else:
                table[key] = value
    return raw, path


class _LedgerOnly(Section, frozen=True, forbid_unknown_fields=False):
    """The part of the root that ``load_ledger`` reads (other keys are not checked here)."""

    data: Path = Path()
    ledger: LedgerConfig = LedgerConfig()


def load_ledger(
    config: str | None = None,
    data: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[LedgerConfig, Path]:
    """([ledger] validated as ``api.config.load`` validates it, the data directory), reading
    nothing else of the configuration: for commands that need only the log's key files."""
    raw, path = read_config(config, data, {"ledger": LedgerConfig}, environ)
    root = build(_LedgerOnly, raw, source=str(path))
    return root.ledger, data_dir_of(path, root.data)
