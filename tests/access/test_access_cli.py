"""`evault principal|token|case|audit|retention`, run as a user would, against a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.access.access_fixtures import add_evidence, open_vault
from vault.access import tokens


def _evault(data: Path, env: dict[str, str], *args: str, code: int = 0) -> tuple[str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "api.cli", "--data", str(data), *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    return proc.stdout, proc.stderr


async def test_cli_session(pg_dsn: str, tmp_path: Path) -> None:
    env = dict(os.environ, EVAULT_DATABASE_DSN=pg_dsn)
    data = tmp_path / "data"
    _evault(data, env, "init")
    async with open_vault(pg_dsn, tmp_path, data=data) as (ledger, db):
        old = await add_evidence(ledger, acquired_at=datetime.now(UTC) - timedelta(days=400))
        kept = await add_evidence(ledger, acquired_at=datetime.now(UTC) - timedelta(days=400))

        _evault(data, env, "principal", "add", "rev", "--role", "reviewer", "--clearance",
                "confidential", "--caveat", "personal_privacy", "--officer-id", "o1")  # fmt: skip
        _evault(data, env, "case", "add", "K1", "--title", "A title", "--label", "internal")
        out, _ = _evault(
            data, env, "case", "add", "K2", "--title", "t", "--label", "secret+personal_privacy"
        )
        assert out.strip() == "case K2 registered (secret+personal_privacy)"
        _, err = _evault(data, env, "case", "add", "K3", "--title", "t", "--label", "internal+nda",
                         code=2)  # fmt: skip
        assert err.startswith("evault: --label: unknown caveat 'nda'"), err
        _evault(data, env, "case", "link", "K1", kept)
        _evault(data, env, "case", "link", "K1", old)
        _evault(data, env, "case", "unlink", "K1", old)
        _evault(data, env, "case", "show", "K1", "--as", "rev", code=2)  # not assigned yet
        _evault(data, env, "principal", "assign", "rev", "K1")
        # export as the default admin: refused, saying how to delegate; the ledger's denied
        # entry keeps the short reason only
        _, err = _evault(data, env, "export", "K1", "--out", str(tmp_path / "pkg"), code=2)
        assert "role legal_reviewer required for export" in err
        assert "`evault principal add ID --role reviewer`" in err
        assert "`evault token create ID`" in err and not (tmp_path / "pkg").exists()
        reason = await db.pool.fetchval(
            "SELECT convert_from(data, 'UTF8')::jsonb->>'reason' FROM ledger_entries"
            " WHERE kind = 'denied' ORDER BY idx DESC LIMIT 1"
        )
        assert reason == "role legal_reviewer required for export"
        out, _ = _evault(data, env, "case", "show", "K1", "--as", "rev")
        assert "A title" in out and kept in out and old not in out
        out, _ = _evault(data, env, "principal", "list")
        assert "rev\tactive\tconfidential+personal_privacy\troles=reviewer\tcases=K1" in out
        _, err = _evault(
            data, env, "principal", "add", "x", "--role", "admin", "--as", "rev", code=2
        )
        assert "admin role" in err

        token, err = _evault(data, env, "token", "create", "rev", "--ttl-days", "7")
        token = token.strip()
        assert (await tokens.authenticate(db.pool, token)).id == "rev"
        token_id = err.split()[2].rstrip(",")
        _evault(data, env, "token", "revoke", token_id)
        raw = await db.pool.fetchval("SELECT count(*) FROM tokens WHERE revoked_at IS NOT NULL")
        assert raw == 1

        out, _ = _evault(data, env, "audit", "--case", "K1")
        lines = out.splitlines()
        assert "\tcase\t" in lines[0] and "case=K1" in lines[0]
        assert any("\taccessed\t" in line and "principal=rev" in line for line in lines)
        out, _ = _evault(data, env, "audit", "--principal", "rev")
        assert "op=added" in out and "op=token-created" in out
        _evault(data, env, "audit", "--principal", "rev", "--as", "rev", code=2)

        out, _ = _evault(data, env, "retention", "report")
        assert f"{old}\tdispose\t" in out and f"{kept}\tkeep\tlinked to 1 case" in out
        out, err = _evault(data, env, "retention", "run")
        assert out.strip() == f"{old}\tdisposed" and "1 disposed" in err
        out, _ = _evault(data, env, "retention", "report")
        assert f"{old}\tkeep\talready disposed" in out

        _evault(data, env, "principal", "disable", "rev")
        out, _ = _evault(data, env, "principal", "list")
        assert "rev\tdisabled" in out
