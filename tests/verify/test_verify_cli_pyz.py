"""dist/evault-verify.pyz runs in a fresh virtual environment that has only `cryptography`,
and gives the same verdicts and exit codes as evault-verify (verify.cli.main) in-process.

How the environment gets `cryptography`: by default the test makes a venv WITHOUT system site
packages and without pip, and installs into it exactly the files that the installed
distributions `cryptography`, `cffi` and `pycparser` (cryptography's dependency chain) record
in their RECORD, taken from the environment running the tests. That is what `pip install
cryptography` would put there, for the same versions, but needs no network and cannot pick up
anything else: the test then checks that none of our packages (`vault`, `api`, `ingest`) nor
the project's other dependencies (`aiohttp`, `asyncpg`) are importable there. With
EVAULT_PYZ_PIP=1 the venv gets pip and `pip install cryptography` from the registry instead.
Skipped, with the reason, when a venv cannot be made.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from tests.verify.package_builder import ORIGIN, Built, build_package, verify_json
from verify import package as pkg
from verify.note import Signer

ROOT = Path(__file__).resolve().parents[2]
from tools import build_verifier  # noqa: E402

DISTS = ("cryptography", "cffi", "pycparser")
FOREIGN = ("vault", "api", "ingest", "aiohttp", "asyncpg", "pgserver")


def _install_copy(python: Path) -> None:
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    for name in DISTS:
        dist = importlib.metadata.distribution(name)
        for f in dist.files or []:
            if str(f).startswith(".."):  # console scripts outside site-packages
                continue
            src = Path(str(dist.locate_file(f)))
            if src.is_file():
                dst = Path(site) / str(f)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("pyz") / "venv"
    use_pip = os.environ.get("EVAULT_PYZ_PIP") == "1"
    try:
        venv.create(env_dir, system_site_packages=False, with_pip=use_pip, symlinks=True)
    except Exception as exc:  # venv/ensurepip missing or broken on this machine
        pytest.skip(f"cannot create a virtual environment: {exc}")
    python = env_dir / "bin" / "python"
    if not python.exists():
        pytest.skip(f"cannot create a virtual environment: no {python}")
    if use_pip:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "cryptography"], check=True, timeout=600
        )
    else:
        _install_copy(python)
    probe = (
        "import importlib.util as u, cryptography, json; "
        f"print(json.dumps([m for m in {list(FOREIGN)!r} if u.find_spec(m)]))"
    )
    proc = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, cwd=env_dir, env=_env()
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [], "the fresh venv must hold only cryptography"
    return python


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_verifier.build(tmp_path_factory.mktemp("dist") / "evault-verify.pyz")


def test_pyz_contains_only_the_verify_package(pyz: Path) -> None:
    import zipfile

    with zipfile.ZipFile(pyz) as zf:
        names = set(zf.namelist())
    assert "__main__.py" in names
    assert all(n == "__main__.py" or n.startswith("verify/") for n in names), names
    assert build_verifier.foreign_imports() == []


def _scenarios(root: Path) -> list[tuple[str, Path, str, list[str]]]:
    good = build_package(root / "good", since_sizes=(4,))
    out: list[tuple[str, Path, str, list[str]]] = [("ok folder", good.path, good.vkey, [])]
    out.append(("ok zip", good.zip_to(root / "good.zip"), good.vkey, []))
    since = root / "seen"
    since.write_text(good.checkpoint_at(4))
    out.append(("ok since", good.path, good.vkey, ["--since", str(since)]))
    fork = root / "fork"
    fork.write_text(good.forked_checkpoint(4))
    out.append(("fork", good.path, good.vkey, ["--since", str(fork)]))
    older = root / "older"
    older.write_text(good.checkpoint_at(good.size + 3))
    out.append(("older", good.path, good.vkey, ["--since", str(older)]))
    flipped: Built = good.copy_to(root / "flipped")
    f = flipped.manifest.files[0]
    flipped.write(f.path, b"\x00" + flipped.read(f.path)[1:])
    out.append(("flipped byte", flipped.path, good.vkey, []))
    out.append(("flipped zip", flipped.zip_to(root / "flipped.zip"), good.vkey, []))
    out.append(("other key given", good.path, Signer(ORIGIN, b"\x03" * 32).vkey, []))
    attacker = build_package(root / "forged", signer=Signer(ORIGIN, b"\x66" * 32))
    out.append(("attacker re-signed", attacker.path, good.vkey, []))
    evil = good.zip_to(root / "evil.zip", extra=[("../evil", b"x")])
    out.append(("zip ../evil", evil, good.vkey, []))
    edited: Built = good.copy_to(root / "edited")
    i = edited.acquired[0]
    edited.write(
        pkg.entry_path(i), edited.read(pkg.entry_path(i)).replace(b"acquired", b"acquirez")
    )
    out.append(("edited entry", edited.path, good.vkey, []))
    out.append(("missing package", root / "nope", good.vkey, []))
    return out


def test_pyz_gives_the_same_verdicts_in_a_fresh_venv(
    pyz: Path, fresh_python: Path, tmp_path: Path
) -> None:
    seen = set()
    for name, path, key, extra in _scenarios(tmp_path):
        argv = [str(path), "--vkey", key, "--json", *extra]
        proc = subprocess.run(
            [str(fresh_python), str(pyz), *argv],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=_env(),
            timeout=60,
        )
        if name == "missing package":
            from verify.cli import main

            assert proc.returncode == main(argv[:3]) == 4, proc.stderr
            continue
        code, want = verify_json(path, key, *extra)
        got = json.loads(proc.stdout)
        assert (proc.returncode, got["verdict"]) == (code, want["verdict"]), (name, proc.stderr)
        assert got["findings"] == want["findings"], name
        seen.add(got["verdict"])
    assert seen == {"ok", "tampered", "wrong-key", "malformed"}


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with nothing installed: no `cryptography`."""
    env_dir = tmp_path_factory.mktemp("bare") / "venv"
    try:
        venv.create(env_dir, system_site_packages=False, with_pip=False, symlinks=True)
    except Exception as exc:  # venv missing or broken on this machine
        pytest.skip(f"cannot create a virtual environment: {exc}")
    python = env_dir / "bin" / "python"
    probe = "import importlib.util as u; print(u.find_spec('cryptography') is None)"
    proc = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=_env())
    assert proc.stdout.strip() == "True", "the bare venv must not have cryptography"
    return python


def test_pyz_without_cryptography_says_what_to_install(
    pyz: Path, bare_python: Path, tmp_path: Path
) -> None:
    good = build_package(tmp_path / "pkg")
    run = [str(bare_python), str(pyz)]
    help_ = subprocess.run([*run, "--help"], capture_output=True, text=True, env=_env())
    assert help_.returncode == 0 and "5  a library evault-verify needs" in help_.stdout
    proc = subprocess.run(
        [*run, str(good.path), "--vkey", good.vkey], capture_output=True, text=True, env=_env()
    )
    assert proc.returncode == 5, proc.stderr  # not 1: that would read as TAMPERED
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "pip install cryptography" in proc.stderr


def _sm2_cosigned_receipt(root: Path, d: int) -> tuple[Path, str]:
    """A receipt whose checkpoint carries an SM2 line by private key ``d``, signed here with the
    GM/T 0003.2 formulas (a test-only signer: the service signs with GmSSL)."""
    import secrets

    from verify import sm2
    from verify.checkpoint import Checkpoint, format_checkpoint
    from verify.note import sign_note

    signer = Signer(ORIGIN, b"\x07" * 32)
    note = sign_note(format_checkpoint(Checkpoint(ORIGIN, 3, b"\x01" * 32)), signer)
    text = note[: note.rindex("\n\n") + 1].encode()
    pub = sm2.scalar_mult_base(d)
    e = int.from_bytes(sm2.sm3(sm2.za(pub) + text), "big")
    k = secrets.randbelow(sm2.N - 2) + 1
    r = (e + sm2.scalar_mult_base(k)[0]) % sm2.N
    s = pow(1 + d, -1, sm2.N) * (k - r * d) % sm2.N
    name = f"{ORIGIN}/sm2"
    sig = base64.b64encode(sm2.key_id(name, pub) + sm2.encode_signature(r, s)).decode()
    receipt = {
        "checkpoint": f"{note}— {name} {sig}\n",
        "ledger_index": 1,
        "sha256": "00" * 32,
        "size": 1,
        "evidence_id": "e1",
        "kind": "acquired",
    }
    path = root / "r.evault-receipt.json"
    path.write_text(json.dumps(receipt))
    return path, signer.vkey


def test_pyz_checks_an_sm2_cosignature_with_cryptography_alone(
    pyz: Path, fresh_python: Path, tmp_path: Path
) -> None:
    from verify import sm2

    receipt, vkey = _sm2_cosigned_receipt(tmp_path, 0x1234567)
    for name, d, want in (("right", 0x1234567, 0), ("other", 0x7654321, 2)):
        pem = tmp_path / f"{name}.pem"
        b64 = base64.encodebytes(sm2.spki_der(sm2.scalar_mult_base(d))).decode()
        pem.write_text(f"-----BEGIN PUBLIC KEY-----\n{b64}-----END PUBLIC KEY-----\n")
        argv = [str(receipt), "--vkey", vkey, "--sm2-key", str(pem)]
        proc = subprocess.run(
            [str(fresh_python), str(pyz), *argv], capture_output=True, text=True, env=_env()
        )
        assert proc.returncode == want, (name, proc.stdout, proc.stderr)
        if want == 0:
            assert "cosigned by the SM2 key" in proc.stdout
        else:
            assert "no SM2 cosignature by the key given" in proc.stdout
