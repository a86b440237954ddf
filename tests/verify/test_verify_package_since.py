"""verify.package with --since: the package's checkpoint must extend one seen before
(rolled-back and forked logs are caught through the consistency proof the package carries)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.verify.package_builder import ORIGIN, Built, build_package, expect, verify_json
from verify import package as pkg
from verify.note import Signer

SINCE = 4  # the package carries a consistency proof from this size


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_package(tmp_path_factory.mktemp("tpl") / "pkg", since_sizes=(SINCE,))


@pytest.fixture
def built(template: Built, tmp_path: Path) -> Built:
    return template.copy_to(tmp_path / "pkg")


def write_since(b: Built, text: str) -> str:
    p = b.path.parent / "seen.checkpoint"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("as_zip", [False, True])
def test_since_an_earlier_checkpoint_verifies(built: Built, as_zip: bool) -> None:
    target = built.zip_to(built.path.parent / "pkg.zip") if as_zip else built.path
    since = write_since(built, built.checkpoint_at(SINCE))
    code, rep = verify_json(target, built.vkey, "--since", since)
    assert (code, rep["since"]) == (0, {"size": SINCE, "ok": True})


def test_since_the_same_checkpoint_verifies(built: Built) -> None:
    since = write_since(built, built.read(pkg.CHECKPOINT_PATH).decode())
    assert verify_json(built.path, built.vkey, "--since", since)[0] == 0


def test_package_checkpoint_older_than_since(built: Built) -> None:
    since = write_since(built, built.checkpoint_at(built.size + 5))
    expect(
        verify_json(built.path, built.vkey, "--since", since),
        "tampered",
        "since-older",
        pkg.CHECKPOINT_PATH,
        "older than the one seen before",
        f"size {built.size + 5}",
    )


def test_package_forks_from_since(built: Built) -> None:
    since = write_since(built, built.forked_checkpoint(SINCE))
    expect(
        verify_json(built.path, built.vkey, "--since", since),
        "tampered",
        "since-fork",
        pkg.CHECKPOINT_PATH,
        "forks from",
        f"size {SINCE}",
    )


def test_package_forks_from_since_at_the_same_size(built: Built) -> None:
    since = write_since(built, built.forked_checkpoint(built.size))
    expect(
        verify_json(built.path, built.vkey, "--since", since),
        "tampered",
        "since-fork",
        pkg.CHECKPOINT_PATH,
        "forks from",
        f"size {built.size}",
    )


def test_since_without_consistency_proof_in_package(built: Built) -> None:
    since = write_since(built, built.checkpoint_at(SINCE + 1))
    expect(
        verify_json(built.path, built.vkey, "--since", since),
        "malformed",
        "since-no-proof",
        pkg.MANIFEST_PATH,
        f"size {SINCE + 1}",
    )


def test_since_signed_by_another_key(built: Built) -> None:
    since = write_since(built, built.checkpoint_at(SINCE, Signer(ORIGIN, b"\x66" * 32)))
    expect(
        verify_json(built.path, built.vkey, "--since", since),
        "wrong-key",
        "since-invalid",
        "--since",
    )
