"""The shared transparency-dev/merkle proof vectors (../shared/vectors/merkle), one test per
file. Skipped, with a reason, where the folder is absent; test_verify_merkle.py proves the
Merkle code without them."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from verify.errors import ProofError
from verify.merkle import verify_consistency, verify_inclusion

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "merkle"
ABSENT = (
    "../shared/vectors/merkle not present: shared test vectors are only available beside a checkout"
)


def _cases(kind: str) -> list[Any]:
    folder = VECTORS / kind
    if not folder.is_dir():
        return [pytest.param(None, id="absent")]
    files = sorted(folder.rglob("*.json"))
    return [pytest.param(p, id=p.relative_to(folder).as_posix()) for p in files]


def _load(path: Path | None) -> dict[str, Any]:
    if path is None:
        pytest.skip(ABSENT)
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return case


def _b64(s: str) -> bytes:
    return base64.b64decode(s)


def _proof(case: dict[str, Any]) -> list[bytes]:
    return [_b64(h) for h in case["proof"] or []]


@pytest.mark.parametrize("path", _cases("inclusion"))
def test_inclusion_vector(path: Path | None) -> None:
    case = _load(path)
    args = (
        _b64(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        _proof(case),
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _cases("consistency"))
def test_consistency_vector(path: Path | None) -> None:
    case = _load(path)
    args = (
        case["size1"],
        case["size2"],
        _proof(case),
        _b64(case["root1"]),
        _b64(case["root2"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_vectors_are_present_or_skipped_clearly() -> None:
    if not VECTORS.is_dir():
        pytest.skip(ABSENT)
    assert any(VECTORS.rglob("*.json"))
