"""Build ``dist/evault-verify.pyz``: the offline verifier as one file, for courts and lawyers.

The archive (a :mod:`zipapp`) holds only the ``verify`` package (its ``.py`` files and
``py.typed``) and a ``__main__.py`` that calls :func:`verify.cli.main`: no other code of ours.
It runs with any Python >= 3.11 that has ``cryptography`` installed::

    python3 evault-verify.pyz PACKAGE --vkey KEY       (or an integrity report, a tlog-proof
                                                       with --entry, a dock receipt)

Without ``cryptography`` it says so in one line and exits 5 (``--help`` works without it).

Guarantee: the build fails if any module of ``verify`` imports anything other than the
standard library, ``cryptography`` or ``verify`` itself (checked on the source, statically).
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
import tempfile
import zipapp
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "verify"
TARGET = ROOT / "dist" / "evault-verify.pyz"
ALLOWED = {"cryptography", "verify"}
MAIN = '''\
"""evault-verify: offline verification of evidence-vault packages (see verify/cli.py)."""

import sys

if sys.version_info < (3, 11):
    sys.exit("evault-verify needs Python 3.11 or newer")

from verify.cli import main

sys.exit(main())
'''


def foreign_imports(source: Path = SOURCE) -> list[str]:
    """``file:line module`` for every import in ``source`` outside stdlib + ALLOWED."""
    bad = []
    for path in sorted(source.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ALLOWED:
                    bad.append(f"{path.name}:{node.lineno} {name}")
    return bad


def build(target: Path = TARGET, source: Path = SOURCE) -> Path:
    """Write the archive to ``target`` and return it; raises SystemExit on a foreign import."""
    bad = foreign_imports(source)
    if bad:
        raise SystemExit(
            "verify/ must import only the standard library and cryptography:\n  " + "\n  ".join(bad)
        )
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "app"
        (stage / "verify").mkdir(parents=True)
        for p in sorted(source.iterdir()):
            if p.suffix == ".py" or p.name == "py.typed":
                shutil.copy2(p, stage / "verify" / p.name)
        (stage / "__main__.py").write_text(MAIN, "utf-8")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_target = target.with_name(target.name + ".tmp")
        zipapp.create_archive(
            stage, tmp_target, interpreter="/usr/bin/env python3", compressed=True
        )
        tmp_target.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TARGET, help=f"default: {TARGET}")
    args = parser.parse_args(argv)
    out = build(args.out)
    print(f"built {out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
