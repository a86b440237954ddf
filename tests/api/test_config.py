"""Configuration: strict loading, environment overrides, discovery, the default file."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.config import Config, default_toml, env_overrides, find_config_file, load
from vault.errors import ConfigError


def write(tmp: Path, text: str) -> Path:
    p = tmp / "evault.toml"
    p.write_text(text)
    return p


def test_default_config_loads_with_one_dock_and_admin(tmp_path: Path) -> None:
    write(tmp_path, default_toml())
    cfg = load(data=str(tmp_path), environ={})
    assert [d.id for d in cfg.docks] == ["dock-01"]
    assert cfg.path(cfg.docks[0].path) == tmp_path / "docks" / "dock-01"
    assert [p.id for p in cfg.principals] == ["admin"]
    assert cfg.data == tmp_path.resolve()


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    p = write(tmp_path, "[ledger]\norigin = 'x'\ncheckpoint_intervall = 3\n")
    with pytest.raises(ConfigError) as err:
        load(str(p), environ={})
    assert str(p) in err.value.detail and "ledger.checkpoint_intervall" in err.value.detail


def test_mistyped_value_says_what_was_expected(tmp_path: Path) -> None:
    p = write(tmp_path, "[database]\npool_size = 'ten'\n")
    with pytest.raises(ConfigError) as err:
        load(str(p), environ={})
    assert err.value.detail == f"{p}: database.pool_size: expected an integer, got 'ten'"
    p = write(tmp_path, "[store.s3]\nbucket = 3\n")  # a nested table names the file once too
    with pytest.raises(ConfigError) as err:
        load(str(p), environ={})
    assert err.value.detail == f"{p}: store.s3.bucket: expected a string, got 3"


def test_out_of_bounds_value_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "[database]\npool_size = 1\n")
    with pytest.raises(ConfigError, match=r"pool_size: 1 is below the minimum 2"):
        load(str(p), environ={})
    p = write(tmp_path, "[ledger]\nbatch_wait = 1.5\n")
    with pytest.raises(ConfigError, match=r"batch_wait: 1\.5 is above the maximum 1\.0"):
        load(str(p), environ={})


def test_every_default_is_within_its_bounds() -> None:
    # The defaults are not checked at load: here the model's own checks pass its defaults.
    import msgspec

    from vault.settings import build

    assert build(Config, msgspec.to_builtins(Config(), enc_hook=str)) == Config()


def test_bad_choice_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "[[docks]]\nid = 'a'\npath = 'a'\nrelease = 'shred'\n")
    with pytest.raises(ConfigError, match="not one of keep, move, delete"):
        load(str(p), environ={})


def test_duplicate_dock_ids_are_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "[[docks]]\nid = 'a'\npath = 'a'\n[[docks]]\nid = 'a'\npath = 'b'\n")
    with pytest.raises(ConfigError, match="appears twice"):
        load(str(p), environ={})


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    p = write(tmp_path, "[[docks]]\nid = 'a'\n")
    with pytest.raises(ConfigError, match=r"docks\[0\]\.path: required key is missing"):
        load(str(p), environ={})


def test_environment_overrides_typed_values(tmp_path: Path) -> None:
    p = write(tmp_path, "")
    env = {"EVAULT_DATABASE_DSN": "postgresql://x@h/db", "EVAULT_DATABASE_POOL_SIZE": "7"}
    cfg = load(str(p), environ=env)
    assert cfg.database.dsn == "postgresql://x@h/db" and cfg.database.pool_size == 7


def test_environment_overrides_reach_a_nested_table(tmp_path: Path) -> None:
    p = write(tmp_path, "[store.s3]\nendpoint = 'http://127.0.0.1:7480'\nregion = 'eu'\n")
    env = {"EVAULT_STORE_BACKEND": "s3", "EVAULT_STORE_S3_BUCKET": "footage"}
    cfg = load(str(p), environ=env)
    assert cfg.store.backend == "s3"
    s3 = cfg.store.s3
    assert (s3.endpoint, s3.region, s3.bucket) == ("http://127.0.0.1:7480", "eu", "footage")
    with pytest.raises(ConfigError, match=r"store\.backend"):
        load(str(p), environ={"EVAULT_STORE_BACKEND": "tape"})


def test_environment_override_of_unknown_key_fails(tmp_path: Path) -> None:
    p = write(tmp_path, "")
    with pytest.raises(ConfigError, match=r"database\.colour"):
        load(str(p), environ={"EVAULT_DATABASE_COLOUR": "red"})


def test_unrelated_environment_is_ignored() -> None:
    assert env_overrides({"EVAULT_TEST_DSN": "x", "EVAULT_DATA": "/d", "PATH": "/bin"}) == {}


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVAULT_CONFIG", raising=False)
    monkeypatch.delenv("EVAULT_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert find_config_file() == (tmp_path / "data" / "evault.toml", tmp_path / "data")
    monkeypatch.setenv("EVAULT_DATA", str(tmp_path / "env"))
    assert find_config_file()[0] == tmp_path / "env" / "evault.toml"
    assert find_config_file(data=str(tmp_path / "arg"))[0] == tmp_path / "arg" / "evault.toml"
    monkeypatch.setenv("EVAULT_CONFIG", str(tmp_path / "c.toml"))
    assert find_config_file(data=str(tmp_path / "arg"))[0] == tmp_path / "c.toml"
    assert find_config_file(config=str(tmp_path / "x.toml"))[0] == tmp_path / "x.toml"


def test_missing_file_tells_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="evault init"):
        load(data=str(tmp_path / "nowhere"), environ={})


def test_every_key_is_documented() -> None:
    from vault.settings import describe

    for doc in describe(Config):
        assert doc.doc.strip(), f"{doc.key} has no documentation"
