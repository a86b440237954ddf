"""A package holds plaintext of confidential footage: the exporter's files are 0600 and its
folders 0700 whatever the umask, and a zip's members are marked 0600 so unzip keeps them
private. Real blob store, real files, the real `unzip`."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vault.review.export import _write
from vault.storage.blobstore import BlobStore
from vault.storage.content import PlainObject


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what most shells have: files 0644, folders 0755 by default
    try:
        yield
    finally:
        os.umask(old)


def _stored(tmp_path: Path) -> PlainObject:
    store = BlobStore(tmp_path / "store", direct=False)
    src = tmp_path / "footage.mp4"
    src.write_bytes(b"confidential footage " * 1000)
    fd = os.open(src, os.O_RDONLY)
    try:
        blob = store.ingest_file(fd)
    finally:
        os.close(fd)
    return PlainObject(store, blob.sha256)


MEMBERS = {"manifest.json": b"{}", "entries/7.json": b"{}", "openings/7.json": b"{}"}


def _modes(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        out[p.relative_to(root).as_posix()] = stat.S_IMODE(p.stat().st_mode)
    return out


def test_attack_world_readable_package_folder(tmp_path: Path, loose_umask: None) -> None:
    obj = _stored(tmp_path)
    out = tmp_path / "exports" / "case-1"
    _write(out, MEMBERS, {"files/original/x.mp4": obj}, as_zip=False)
    modes = _modes(out)
    assert modes["files/original/x.mp4"] == 0o600 and modes["manifest.json"] == 0o600
    for name, mode in modes.items():
        want = 0o700 if (out / name).is_dir() else 0o600
        assert mode == want, (name, oct(mode))


def test_attack_world_readable_package_zip(tmp_path: Path, loose_umask: None) -> None:
    obj = _stored(tmp_path)
    out = tmp_path / "case-1.zip"
    _write(out, MEMBERS, {"files/original/x.mp4": obj}, as_zip=True)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with zipfile.ZipFile(out) as zf:
        for info in zf.infolist():
            assert stat.S_IMODE(info.external_attr >> 16) == 0o600, info.filename
            assert stat.S_ISREG(info.external_attr >> 16), info.filename
    if shutil.which("unzip") is None:
        pytest.skip("unzip is not installed: extracted modes not checked")
    dest = tmp_path / "unzipped"
    subprocess.run(["unzip", "-q", str(out), "-d", str(dest)], check=True)
    for p in dest.rglob("*"):
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
