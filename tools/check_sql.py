"""Lint: SQL belongs to vault/ (components own their tables); ingest/ and api/ hold none.

Flags any string literal in ingest/ or api/ that reads like an SQL statement, and any call of
an asyncpg query method (fetch, fetchrow, fetchval, execute, executemany, copy_*) there.
Exit 1 naming each place; 0 when clean.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ingest", "api")
STATEMENT = re.compile(
    r"^\s*(SELECT\s.+\sFROM\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|"
    r"WITH\s+\w+\s+AS\s*\(|COPY\s+\w+|TRUNCATE\s|CREATE\s+(TABLE|INDEX)\s|ALTER\s+TABLE\s|"
    r"LISTEN\s|NOTIFY\s|SELECT\s+pg_)",
    re.DOTALL,
)
QUERY_METHODS = {
    "fetch", "fetchrow", "fetchval", "execute", "executemany",
    "copy_records_to_table", "copy_to_table", "copy_from_query", "copy_from_table",
}  # fmt: skip


def findings(path: Path, root: Path = ROOT) -> list[str]:
    out: list[str] = []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if STATEMENT.match(node.value):
                out.append(f"{path.relative_to(root)}:{node.lineno}: SQL statement outside vault/")
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                v.value
                for v in node.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
            if STATEMENT.match(text):
                out.append(f"{path.relative_to(root)}:{node.lineno}: SQL statement outside vault/")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in QUERY_METHODS
            and node.args
            and not (
                isinstance(node.args[0], ast.Constant) and not isinstance(node.args[0].value, str)
            )
        ):
            first = node.args[0]
            if isinstance(first, ast.Constant | ast.JoinedStr | ast.BinOp):
                where = f"{path.relative_to(root)}:{node.lineno}"
                out.append(f"{where}: .{node.func.attr}() query outside vault/")
    return out


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [ROOT / p for p in PACKAGES]
    problems = [f for r in roots for p in sorted(r.rglob("*.py")) for f in findings(p)]
    for p in problems:
        print(p)
    if problems:
        print(
            f"{len(problems)} place(s) speak SQL outside vault/: move the query into the vault "
            "component that owns the table",
            file=sys.stderr,
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
