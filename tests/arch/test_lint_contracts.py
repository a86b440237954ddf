"""The architecture rules are enforced by `make lint`, not by convention: each check fails on a
planted violation (an upward import, a cycle through a lazy import, a third-party import in
verify/, a CLI command module imported outside the CLI, SQL in api/ or ingest/) and passes on
the tree as it is."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
from tools import check_sql  # noqa: E402


def _protected_cli_modules() -> list[str]:
    """The modules the ``cli-commands`` contract protects, as listed in ``.importlinter``."""
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    listed = config["importlinter:contract:cli-commands"]["protected_modules"]
    return [m.strip() for m in listed.split() if m.strip()]


def _tree(tmp: Path, files: dict[str, str]) -> Path:
    for pkg in ("verify", "vault", "ingest", "api"):
        (tmp / pkg).mkdir()
        (tmp / pkg / "__init__.py").write_text("")
    # The contracts name real modules (the CLI and its commands): plant them empty.
    for module in ["api.cli", *_protected_cli_modules()]:
        (tmp / (module.replace(".", "/") + ".py")).write_text("")
    for name, text in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(textwrap.dedent(text))
    shutil.copy(ROOT / ".importlinter", tmp / ".importlinter")
    return tmp


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.skip("lint-imports is not installed in this environment (make install)")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True
    )


def test_clean_planted_tree_passes(tmp_path: Path) -> None:
    tree = _tree(
        tmp_path, {"api/a.py": "import vault\nimport verify\n", "vault/a.py": "import verify\n"}
    )
    run = _lint_imports(tree)
    assert run.returncode == 0, run.stdout


def test_upward_import_fails(tmp_path: Path) -> None:
    run = _lint_imports(_tree(tmp_path, {"vault/a.py": "import api\n"}))
    assert run.returncode == 1
    assert "Layers" in run.stdout and "BROKEN" in run.stdout


def test_cycle_through_a_lazy_import_fails(tmp_path: Path) -> None:
    files = {
        "vault/a.py": "import vault.b\n",
        "vault/b.py": "def f():\n    import vault.a  # lazy: still a cycle\n",
    }
    run = _lint_imports(_tree(tmp_path, files))
    assert run.returncode == 1
    assert "No import cycles" in run.stdout and "BROKEN" in run.stdout


def test_cycle_between_components_fails(tmp_path: Path) -> None:
    files = {
        "vault/x/__init__.py": "",
        "vault/x/m.py": "import vault.y.n\n",
        "vault/y/__init__.py": "",
        "vault/y/n.py": "from vault.x import m\n",
    }
    run = _lint_imports(_tree(tmp_path, files))
    assert run.returncode == 1
    assert "vault" in run.stdout and "BROKEN" in run.stdout


def test_third_party_import_in_verify_fails(tmp_path: Path) -> None:
    run = _lint_imports(_tree(tmp_path, {"verify/a.py": "import asyncpg\n"}))
    assert run.returncode == 1
    assert "verify/ needs only" in run.stdout and "BROKEN" in run.stdout


def test_app_importing_a_cli_command_fails(tmp_path: Path) -> None:
    files = {
        "api/app.py": "def f():\n    from api.cmd_scrub import register  # lazy: still found\n"
    }
    run = _lint_imports(_tree(tmp_path, files))
    assert run.returncode == 1
    assert "CLI command modules" in run.stdout and "BROKEN" in run.stdout


def test_cli_may_import_its_commands(tmp_path: Path) -> None:
    run = _lint_imports(_tree(tmp_path, {"api/cli.py": "import api.cmd_scrub\n"}))
    assert run.returncode == 0, run.stdout


def test_every_cli_command_module_is_protected() -> None:
    on_disk = sorted(f"api.{p.stem}" for p in (ROOT / "api").glob("cmd_*.py"))
    assert sorted(_protected_cli_modules()) == on_disk


def test_sql_outside_vault_is_found(tmp_path: Path) -> None:
    planted = tmp_path / "api" / "route.py"
    planted.parent.mkdir()
    planted.write_text(
        'async def f(db):\n    return await db.fetchval("SELECT 1 FROM evidence WHERE id = $1", 1)\n'
    )
    found = check_sql.findings(planted, tmp_path)
    assert found and all("route.py:2" in f for f in found)


def test_prose_that_mentions_copy_is_not_sql(tmp_path: Path) -> None:
    clean = tmp_path / "ingest" / "mod.py"
    clean.parent.mkdir()
    clean.write_text('"""Copy a symlink or a file; select what to keep."""\n')
    assert check_sql.findings(clean, tmp_path) == []


def test_the_tree_itself_has_no_sql_outside_vault() -> None:
    assert check_sql.main([]) == 0
