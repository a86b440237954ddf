"""evault-verify (verify.cli): text report, JSON, exit codes, key sources, progress, -m."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from tests.verify.package_builder import ORIGIN, Built, build_package
from verify import package as pkg
from verify.cli import main
from verify.note import Signer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_package(tmp_path_factory.mktemp("cli") / "pkg", since_sizes=(4,))


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_text_report_names_each_file_and_ends_with_the_verdict(good: Built) -> None:
    code, out, err = run(str(good.path), "--vkey", good.vkey)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[-1] == "VERIFIED 验证通过"
    for f in good.manifest.files:
        line = next(x for x in lines if f.path in x)
        assert f.kind in line and f.evidence_id in line and f"entry {f.entry} ✓" in line
        assert "sha256 ✓" in line and "proof ✓" in line
    assert any("officer = " in x for x in lines)
    assert any("file_name: not disclosed" in x for x in lines)


def test_tampered_text_report_names_the_file(good: Built, tmp_path: Path) -> None:
    b = good.copy_to(tmp_path / "pkg")
    f = b.manifest.files[1]
    b.write(f.path, b.read(f.path)[:-1] + b"!")
    code, out, _ = run(str(b.path), "--vkey", b.vkey)
    assert code == 1
    assert out.splitlines()[-1] == "TAMPERED 已被篡改"
    assert f"✗ {f.kind}" in out and f"[tampered] {f.path}: " in out


def test_json_is_one_document(good: Built) -> None:
    code, out, _ = run(str(good.path), "--vkey", good.vkey, "--json")
    rep = json.loads(out)
    assert (code, rep["verdict"], rep["format"]) == (0, "ok", "evidence-vault-verify-report/1")


def test_quiet_prints_only_the_verdict(good: Built) -> None:
    other = Signer(ORIGIN, b"\x02" * 32).vkey
    assert run(str(good.path), "--vkey", other, "--quiet") == (2, "WRONG KEY 密钥不符\n", "")


def test_vkey_file_and_since(good: Built, tmp_path: Path) -> None:
    key = tmp_path / "log.vkey"
    key.write_text(good.vkey + "\n")
    since = tmp_path / "seen"
    since.write_text(good.checkpoint_at(4))
    code, out, _ = run(str(good.path), "--vkey-file", str(key), "--since", str(since), "-q")
    assert (code, out) == (0, "VERIFIED 验证通过\n")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["PKG"],  # no key
        ["PKG", "--vkey", "K", "--vkey-file", "F"],
        ["PKG", "--vkey", "not-a-vkey"],
        ["PKG", "--vkey-file", "/nonexistent/key"],
        ["PKG", "--vkey", "VKEY", "--since", "/nonexistent/cp"],
        ["/nonexistent/pkg", "--vkey", "VKEY"],
        ["PKG", "--vkey", "VKEY", "--bogus"],
    ],
)
def test_usage_and_io_errors_exit_4(good: Built, argv: list[str]) -> None:
    argv = [str(good.path) if a == "PKG" else good.vkey if a == "VKEY" else a for a in argv]
    code, out, err = run(*argv)
    assert (code, out) == (4, "")
    assert "evault-verify: error:" in err


def test_help_documents_exit_codes() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for text in ["0  VERIFIED", "1  TAMPERED", "2  WRONG KEY", "3  MALFORMED", "4  usage or I/O"]:
        assert text in out


def test_malformed_exit_3(good: Built, tmp_path: Path) -> None:
    b = good.copy_to(tmp_path / "pkg")
    (b.path / pkg.MANIFEST_SIG_PATH).unlink()
    code, out, _ = run(str(b.path), "--vkey", b.vkey)
    assert code == 3 and out.endswith("MALFORMED 格式无效\n") and "manifest.sig is missing" in out


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_tty(good: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(str(good.path), "--vkey", good.vkey, "-q")[2] == ""
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    with redirect_stdout(io.StringIO()):
        assert main([str(good.path), "--vkey", good.vkey, "--json"]) == 0
    assert "hashing [" in tty.getvalue() and "100%" in tty.getvalue()


def test_python_dash_m_verify(good: Built) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "verify", str(good.path), "--vkey", good.vkey],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("VERIFIED 验证通过\n")
