"""verify.package on zips and hostile package layouts: the same checks work on a .zip, read
in place (nothing extracted); unsafe members and links make a package malformed."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from tests.verify.package_builder import ORIGIN, Built, build_package, expect, verify_json
from verify import package as pkg
from verify.note import Signer
from verify.package_checks import verify_package


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_package(tmp_path_factory.mktemp("tpl") / "pkg")


@pytest.fixture
def built(template: Built, tmp_path: Path) -> Built:
    return template.copy_to(tmp_path / "pkg")


def original(b: Built) -> pkg.PackageFile:
    return next(f for f in b.manifest.files if f.kind == "original")


def test_zip_of_the_folder_itself_verifies(built: Built) -> None:
    z = built.path.parent / "folder.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(built.path.rglob("*")):
            zf.write(p, p.relative_to(built.path.parent).as_posix())  # pkg/manifest.json, ...
    assert verify_json(z, built.vkey)[0] == 0


def test_deflated_zip_verifies(built: Built) -> None:
    z = built.path.parent / "deflated.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(built.path.rglob("*")):
            zf.write(p, p.relative_to(built.path).as_posix())
    assert verify_json(z, built.vkey)[0] == 0


def test_zip_flipped_byte_in_file(built: Built) -> None:
    f = original(built)
    data = bytearray(built.read(f.path))
    data[-1] ^= 0x80
    built.write(f.path, bytes(data))
    z = built.zip_to(built.path.parent / "pkg.zip")
    expect(verify_json(z, built.vkey), "tampered", "file-hash", f.path, f.evidence_id)


def test_zip_flipped_byte_inside_the_archive(built: Built) -> None:
    z = built.zip_to(built.path.parent / "pkg.zip")
    f = original(built)
    raw = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo(f.path)
    raw[info.header_offset + 30 + len(f.path.encode()) + 500] ^= 0x01  # inside the stored data
    z.write_bytes(bytes(raw))
    expect(verify_json(z, built.vkey), "tampered", "file-hash", f.path, "altered")


def test_zip_edited_entry(built: Built) -> None:
    i = built.derived[0]
    built.write(pkg.entry_path(i), built.read(pkg.entry_path(i)).replace(b"6.1.1", b"6.1.2"))
    z = built.zip_to(built.path.parent / "pkg.zip")
    expect(verify_json(z, built.vkey), "tampered", "inclusion", pkg.entry_path(i), f"entry {i}")


@pytest.mark.parametrize(
    ("member", "why"),
    [
        ("../evil", ".."),
        ("files/../../evil", ".."),
        ("/etc/evil", "absolute"),
        ("C:/evil", "absolute"),
        ("files\\evil", "backslash"),
        ("./manifest.json", "'.'"),
    ],
)
def test_zip_with_unsafe_member_is_malformed(built: Built, member: str, why: str) -> None:
    z = built.zip_to(built.path.parent / "pkg.zip", extra=[(member, b"x")])
    expect(verify_json(z, built.vkey), "malformed", "unsafe-path", member, why)


def test_zip_with_symlink_member_is_malformed(built: Built) -> None:
    info = zipfile.ZipInfo("files/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    z = built.zip_to(built.path.parent / "pkg.zip", extra=[(info, b"/etc/passwd")])
    expect(verify_json(z, built.vkey), "malformed", "unsafe-path", "files/link", "symbolic link")


def test_zip_with_duplicate_member_is_malformed(built: Built) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        z = built.zip_to(built.path.parent / "pkg.zip", extra=[(pkg.VKEY_PATH, b"x")])
    expect(verify_json(z, built.vkey), "malformed", "unsafe-path", pkg.VKEY_PATH, "listed twice")


def test_folder_with_symlink_is_malformed(built: Built) -> None:
    os.symlink("/etc/passwd", built.path / "files" / "link")
    expect(
        verify_json(built.path, built.vkey),
        "malformed",
        "unsafe-path",
        "files/link",
        "symbolic link",
    )


def test_not_a_package_is_malformed(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    code, rep = verify_json(junk, Signer(ORIGIN, bytes(32)).vkey)
    assert (code, rep["verdict"], rep["findings"][0]["code"]) == (3, "malformed", "not-a-package")


def test_empty_folder_is_malformed(tmp_path: Path) -> None:
    code, rep = verify_json(tmp_path, Signer(ORIGIN, bytes(32)).vkey)
    assert (code, rep["verdict"]) == (3, "malformed")
    assert {f["where"] for f in rep["findings"]} >= {pkg.MANIFEST_PATH, pkg.CHECKPOINT_PATH}


def test_missing_package_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        verify_package(tmp_path / "nope", Signer(ORIGIN, bytes(32)).verifier)
