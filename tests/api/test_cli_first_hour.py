"""The first hour with `evault`, as a user types it: options where the README puts them, exact
entry bytes that a proof verifies, refusals that say why, a busy port, a closed pipe, the
front page, and a start-up that imports only what the command needs. Real subprocesses,
real PostgreSQL, real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import api.cli
from api.config import ServiceConfig
from tests.api.service_fixtures import running_service

EVAULT = [sys.executable, "-m", "api.cli"]
VERIFY = [sys.executable, "-m", "verify"]


def evault(*args: str, env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*EVAULT, *args],
        capture_output=True,
        env=env,
        timeout=120,
        **kw,  # type: ignore[call-overload]
    )


@pytest.fixture
def cli_env(pg_dsn: str) -> dict[str, str]:
    return {**os.environ, "EVAULT_DATABASE_DSN": pg_dsn}


@pytest.fixture
def data(tmp_path: Path, cli_env: dict[str, str]) -> Path:
    d = tmp_path / "data"
    proc = evault("init", "--data", str(d), env=cli_env)  # the README's own form
    assert proc.returncode == 0, proc.stderr.decode()
    return d


def test_data_and_config_options_are_accepted_after_the_subcommand(
    tmp_path: Path, data: Path, cli_env: dict[str, str]
) -> None:
    assert (data / "evault.toml").is_file() and (data / "keys" / "ledger.skey").is_file()
    vkey = evault("--data", str(data), "ledger", "vkey", env=cli_env).stdout
    assert vkey.startswith(b"evidence-vault.local/ledger+")
    assert evault("ledger", "vkey", "--data", str(data), env=cli_env).stdout == vkey
    config = str(data / "evault.toml")
    assert evault("ledger", "vkey", "--config", config, env=cli_env).stdout == vkey
    # nested, after a positional, and the later of two wins
    out = evault(
        "--data", str(tmp_path / "elsewhere"), "ledger", "note", "hello", "--data", str(data),
        env=cli_env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    assert not (tmp_path / "elsewhere").exists()
    # demo --data DIR reaches the demo (which then says no service answers), not argparse
    demo = evault("demo", "--data", str(data), "--url", "http://127.0.0.1:9", env=cli_env)
    err = demo.stderr.decode()
    assert demo.returncode != 0 and "unrecognized arguments" not in err
    assert f"evault --data {data} serve" in err


def test_ledger_entry_is_the_exact_logged_bytes_and_its_proof_verifies_offline(
    tmp_path: Path, data: Path, cli_env: dict[str, str]
) -> None:
    index = evault("ledger", "note", "exact bytes", "--data", str(data), env=cli_env)
    i = index.stdout.decode().split()[0]
    entry = tmp_path / "entry"
    with entry.open("wb") as f:  # `evault ledger entry I > FILE`
        cmd = [*EVAULT, "ledger", "entry", i, "--data", str(data)]
        assert subprocess.run(cmd, stdout=f, env=cli_env, timeout=120).returncode == 0
    body = entry.read_bytes()
    assert not body.endswith(b"\n") and json.loads(body)["text"] == "exact bytes"
    proof = tmp_path / "proof"
    proof.write_bytes(evault("ledger", "proof", i, "--data", str(data), env=cli_env).stdout)
    vkey = evault("ledger", "vkey", "--data", str(data), env=cli_env).stdout.decode().strip()
    vkey_file = str(data / "keys" / "ledger.vkey")  # the public key init wrote: usable as is
    ok = subprocess.run(
        [*VERIFY, str(proof), "--entry", str(entry), "--vkey-file", vkey_file],
        capture_output=True,
    )
    assert ok.returncode == 0, ok.stdout.decode() + ok.stderr.decode()
    assert ok.stdout.decode().splitlines()[-1] == "VERIFIED 验证通过"
    # the old output (entry + newline) is not the logged entry: the proof fails on it
    entry.write_bytes(body + b"\n")
    bad = subprocess.run(
        [*VERIFY, str(proof), "--entry", str(entry), "--vkey", vkey], capture_output=True
    )
    assert bad.returncode == 1, bad.stdout.decode()


def test_consistency_from_an_empty_tree_or_backwards_is_refused(
    data: Path, cli_env: dict[str, str]
) -> None:
    evault("ledger", "note", "a", "b", "--data", str(data), env=cli_env)
    zero = evault("ledger", "consistency", "0", "2", "--data", str(data), env=cli_env)
    assert zero.returncode == 2 and zero.stdout == b""
    assert "RFC 9162 defines none for an empty tree" in zero.stderr.decode()
    back = evault("ledger", "consistency", "2", "1", "--data", str(data), env=cli_env)
    assert back.returncode == 2 and b"exceeds the newer size" in back.stderr
    ok = evault("ledger", "consistency", "1", "2", "--data", str(data), env=cli_env)
    assert ok.returncode == 0 and len(ok.stdout.split()) == 1


def test_closed_pipe_ends_quietly(data: Path, cli_env: dict[str, str]) -> None:
    evault("ledger", "note", *(f"n{i}" for i in range(40)), "--data", str(data), env=cli_env)
    proc = subprocess.Popen(
        [*EVAULT, "--data", str(data), "ledger", "consistency", "1", "41"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head` that has read enough before anything was written
    err = proc.stderr.read().decode()
    assert proc.wait(120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_ingest_of_a_missing_file_says_it_does_not_exist(
    tmp_path: Path, data: Path, cli_env: dict[str, str]
) -> None:
    proc = evault("ingest", str(tmp_path / "missing.mp4"), "--dock", "dock-01",
                  "--data", str(data), env=cli_env)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == b""
    err = proc.stderr.decode()
    assert f"no such file: {tmp_path / 'missing.mp4'}" in err and "nothing was ingested" in err
    assert len(err.strip().splitlines()) == 1


def test_serve_on_a_busy_port_says_so_in_one_line(data: Path, cli_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = evault("serve", "--listen", f"127.0.0.1:{port}", "--data", str(data), env=cli_env)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"127.0.0.1:{port}: already in use" in err
    assert "--listen HOST:PORT" in err and "service.listen" in err


def test_serve_prints_the_console_url_and_the_front_page_redirects_there(
    tmp_path: Path, pg_dsn: str
) -> None:
    with running_service(tmp_path / "data", pg_dsn) as svc:
        printed = (svc.data / "serve.log").read_text()
        assert f"serving on {svc.url} " in printed
        assert f"console  {svc.url}/console/" in printed
        host, port = svc.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/")
        r = conn.getresponse()
        r.read()
        assert (r.status, r.getheader("Location")) == (302, "/console/")
        conn.request("GET", "/console/")
        r2 = conn.getresponse()
        assert r2.status == 200 and b"<html" in r2.read().lower()
        conn.close()


def test_help_lists_every_command_without_importing_any(cli_env: dict[str, str]) -> None:
    probe = (
        "import sys, contextlib, io\n"
        "from api.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('asyncpg', 'aiohttp', 'cryptography', 'vault', 'ingest') or m.startswith('api.cmd'))\n"
        "print(loaded); print(out.getvalue())\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, env=cli_env)
    first, _, help_text = proc.stdout.decode().partition("\n")
    assert first == "[]", first
    for name, (_, text) in api.cli.COMMANDS.items():
        assert name in help_text and text.split()[0] in help_text


def test_ledger_vkey_imports_neither_the_database_nor_the_web_stack(
    data: Path, cli_env: dict[str, str]
) -> None:
    probe = (
        "import sys\n"
        "from api.cli import main\n"
        f"main(['ledger', 'vkey', '--data', {str(data)!r}])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'asyncpg', 'aiohttp', 'pgserver', 'prometheus_client', 'watchdog', 'asyncio',"
        " 'cryptography'}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, env=cli_env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().splitlines()[-1] == "[]"


def test_init_imports_neither_the_database_nor_the_web_stack(tmp_path: Path) -> None:
    """`evault init` (every new data folder, every test service) writes files only."""
    probe = (
        "import sys\n"
        "from api.cli import main\n"
        f"assert main(['init', '--data', {str(tmp_path / 'data')!r}]) == 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'asyncpg', 'aiohttp', 'botocore', 'pgserver', 'prometheus_client', 'watchdog'}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().splitlines()[-1] == "[]"
    assert (tmp_path / "data" / "keys" / "ledger.skey").is_file()


def test_database_commands_on_the_file_store_do_not_load_the_s3_client(
    data: Path, cli_env: dict[str, str]
) -> None:
    """The S3 client (botocore) costs a fifth of a second at every start: commands on a data
    folder whose objects are files never import it; they still reach the database."""
    probe = (
        "import sys\n"
        "from api.cli import main\n"
        f"assert main(['principal', 'list', '--data', {str(data)!r}]) == 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'botocore', 'aiobotocore', 'asyncpg'}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, env=cli_env)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode().splitlines()
    assert "admin" in proc.stdout.decode() and out[-1] == "['asyncpg']", out


def test_the_dispatcher_table_is_what_the_modules_register() -> None:
    full = api.cli.build_parser()
    action = next(a for a in full._actions if a.dest == "command")
    registered = {c.dest: c.help for c in action._choices_actions}  # type: ignore[attr-defined]
    assert registered == {name: text for name, (_, text) in api.cli.COMMANDS.items()}


@pytest.mark.parametrize("module", sorted({m for m, _ in api.cli.COMMANDS.values()}))
def test_every_command_module_imports_alone(module: str) -> None:
    """No import cycles: each command module imports first, in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()


def test_readme_says_where_the_service_listens_how_to_override_and_where_evault_is() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    listen = ServiceConfig().listen
    assert f"http://{listen}/console/" in readme and f"`{listen}` (`service.listen`)" in readme
    assert "`EVAULT_<SECTION>_<KEY>`" in readme and "EVAULT_SERVICE_LISTEN=" in readme
    assert "`.venv/bin/evault`" in readme and "`evault serve --listen HOST:PORT`" in readme


def test_attack_stale_or_foreign_vkey_file_is_not_printed(
    data: Path, cli_env: dict[str, str]
) -> None:
    """init writes the public vkey beside the key (like ssh's .pub); `ledger vkey` prints it
    only while it is that key's: a vkey file of another key with the same name is ignored."""
    from verify.note import Signer

    printed = evault("init", "--data", str(data), env=cli_env).stdout.decode()
    true_vkey = printed.strip().splitlines()[-1]
    vkey_file = data / "keys" / "ledger.vkey"
    assert vkey_file.read_text() == true_vkey + "\n" and str(vkey_file) in printed
    ledger_vkey = ["ledger", "vkey", "--data", str(data)]
    assert evault(*ledger_vkey, env=cli_env).stdout.decode().strip() == true_vkey
    origin = true_vkey.split("+")[0]
    vkey_file.write_text(Signer(origin, b"\x09" * 32).vkey + "\n")  # another key, same name
    assert evault(*ledger_vkey, env=cli_env).stdout.decode().strip() == true_vkey
    vkey_file.write_text("not a vkey\n")
    assert evault(*ledger_vkey, env=cli_env).stdout.decode().strip() == true_vkey
    vkey_file.unlink()
    assert evault(*ledger_vkey, env=cli_env).stdout.decode().strip() == true_vkey
    evault("init", "--data", str(data), env=cli_env)  # a second init restores the file
    assert vkey_file.read_text() == true_vkey + "\n"
