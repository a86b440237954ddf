"""Classified footage is sealed before its first byte reaches the vault; addresses stay plaintext."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ingest.acquire import Deferred, Receipt
from tests.crypto.crypto_fixtures import (
    CHUNK,
    MARK,
    dock,
    open_env,
    plaintext,
    read_all,
    sha,
    store_holds,
    stored_files,
)
from vault.errors import IntegrityError, Unavailable
from vault.storage.sealing import HEADER_SIZE, TAG_SIZE

NAME = "DEV01_OFF123_20260101120000.mp4"


def assert_unlike(stored: bytes, plain: bytes) -> None:
    """No stored run equals the plaintext at the same offset, raw or as laid out in chunks.

    Single bytes of ciphertext match the plaintext by chance 1 time in 256, so the check is:
    no 8-byte window matches (chance about n / 2**64), and the byte match rate is that of
    random bytes, far from the 100% of a plain copy."""
    laid_out = bytearray()
    for i in range(0, len(plain), CHUNK):  # where plaintext byte i sits in the sealed object
        start = HEADER_SIZE + i + TAG_SIZE * (i // CHUNK)
        laid_out += stored[start : start + min(CHUNK, len(plain) - i)]
    for view in (stored[: len(plain)], bytes(laid_out)):
        assert len(view) >= len(plain) - 1
        same = sum(a == b for a, b in zip(view, plain, strict=False))
        assert same < len(plain) / 64, f"{same} of {len(plain)} bytes equal the plaintext"
        for at in range(0, len(plain) - 8, 4):
            assert view[at : at + 8] != plain[at : at + 8], f"plaintext at offset {at}"


async def test_classified_dock_file_is_sealed_and_addressed_by_plaintext(
    pg_dsn: str, tmp_path: Path
) -> None:
    d = dock(tmp_path, label="secret")
    data = plaintext(9 * CHUNK + 1234)
    (d.path / NAME).write_bytes(data)
    async with open_env(pg_dsn, tmp_path, [d]) as env:
        receipt = await env.acq.acquire_path(d, d.path / NAME)
        assert isinstance(receipt, Receipt) and receipt.kind == "acquired"
        digest = sha(data)
        assert receipt.sha256 == digest and receipt.size == len(data)
        [entry] = await env.entries("acquired")
        assert (entry["sha256"], entry["size"], entry["label"]) == (digest, len(data), "secret")
        [row] = await env.rows("SELECT sha256, size FROM evidence")
        assert (row["sha256"], row["size"]) == (digest, len(data))
        blobs = env.storage.blobs
        assert not blobs.exists(digest), "no plain object for classified content"
        key = await env.storage.content.key(digest)
        assert key is not None
        sealed = blobs.sealed_path(digest, key.object_id)
        assert blobs.sealed_paths(digest) == [sealed]
        assert sealed.stat().st_mode & 0o777 == 0o400
        assert_unlike(sealed.read_bytes(), data)
        assert store_holds(blobs.root, MARK) == [], "a plaintext run is in the blob store"
        assert await read_all(await env.storage.content.open(digest)) == data


async def test_pushes_and_sidecar_labels_are_sealed(pg_dsn: str, tmp_path: Path) -> None:
    plain_dock = dock(tmp_path, "dock-plain", label="internal")
    secret_dock = dock(tmp_path, "dock-secret", label="secret+personal_privacy")
    by_sidecar = plaintext(3 * CHUNK)
    (plain_dock.path / NAME).write_bytes(by_sidecar)
    (plain_dock.path / (NAME + ".json")).write_text(json.dumps({"label": "confidential"}))
    odd = "DEV01_OFF123_20260101120500.mp4"
    (plain_dock.path / odd).write_bytes(plaintext(CHUNK + 7))
    (plain_dock.path / (odd + ".json")).write_text(json.dumps({"label": "sekret"}))
    as_object = "DEV01_OFF123_20260101121000.mp4"  # the API's object form works in a sidecar too
    (plain_dock.path / as_object).write_bytes(plaintext(CHUNK + 9))
    obj = {"label": {"level": "secret", "caveats": ["personal_privacy"]}}
    (plain_dock.path / (as_object + ".json")).write_text(json.dumps(obj))
    pushed = plaintext(5 * CHUNK + 3)

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for at in range(0, len(data), 1000):
            yield data[at : at + 1000]

    async with open_env(pg_dsn, tmp_path, [plain_dock, secret_dock]) as env:
        r1 = await env.acq.acquire_path(plain_dock, plain_dock.path / NAME)
        r2 = await env.acq.acquire_path(plain_dock, plain_dock.path / odd)
        r4 = await env.acq.acquire_path(plain_dock, plain_dock.path / as_object)
        assert isinstance(r4, Receipt)
        r3 = await env.acq.acquire_stream("dock-secret", NAME, chunks(pushed), sha(pushed), None)
        assert isinstance(r1, Receipt) and isinstance(r2, Receipt)
        with pytest.raises(IntegrityError):
            await env.acq.acquire_stream("dock-secret", odd, chunks(pushed), sha(b"x"), None)
        labels = {
            r["sha256"]: (r["label_level"], r["metadata"])
            for r in await env.rows("SELECT sha256, label_level, metadata FROM evidence")
        }
        assert labels[r1.sha256][0] == 2  # confidential, from the sidecar
        level, meta = labels[r2.sha256]
        assert level == 1 and "label" in json.loads(meta)["sidecar_error"]  # dock's; sealed anyway
        assert json.loads(meta)["sidecar_error"].startswith("sidecar: label: unknown level")
        assert labels[r4.sha256][0] == 3  # secret, from the sidecar's object
        for digest in (r1.sha256, r2.sha256, r3.sha256):
            assert await env.storage.content.is_sealed(digest)
            assert not env.storage.blobs.exists(digest)
        pushed_obj = await env.storage.content.open(r3.sha256)
        assert (
            await read_all(pushed_obj, CHUNK - 1, 3 * CHUNK + 1)
            == pushed[CHUNK - 1 : 3 * CHUNK + 1]
        )
        assert store_holds(env.storage.blobs.root, MARK) == []
        assert not any((env.storage.blobs.root / "tmp").iterdir()), "a failed push left a file"


async def test_reoffers_never_leave_a_second_or_plain_copy(pg_dsn: str, tmp_path: Path) -> None:
    plain_dock = dock(tmp_path, "dock-plain", label="internal")
    secret_dock = dock(tmp_path, "dock-secret", label="secret")
    held_plain, held_sealed = plaintext(2 * CHUNK + 5), plaintext(2 * CHUNK + 6)
    names = [f"DEV01_OFF123_2026010112{m:02d}00.mp4" for m in range(4)]
    async with open_env(pg_dsn, tmp_path, [plain_dock, secret_dock]) as env:
        blobs = env.storage.blobs

        async def offer(dk: object, name: str, data: bytes) -> Receipt:
            assert dk is plain_dock or dk is secret_dock
            (dk.path / name).write_bytes(data)
            r = await env.acq.acquire_path(dk, dk.path / name)
            assert isinstance(r, Receipt)
            return r

        a = await offer(plain_dock, names[0], held_plain)
        again = await offer(secret_dock, names[1], held_plain)
        assert again.kind == "reoffered" and blobs.exists(a.sha256)
        assert blobs.sealed_paths(a.sha256) == [], "the losing sealed copy is removed"
        b = await offer(secret_dock, names[2], held_sealed)
        again = await offer(plain_dock, names[3], held_sealed)
        assert again.kind == "reoffered" and not blobs.exists(b.sha256), "plain copy removed"
        assert await read_all(await env.storage.content.open(b.sha256)) == held_sealed
        assert len(blobs.sealed_paths(b.sha256)) == 1


async def test_without_a_key_store_classified_footage_is_not_taken(
    pg_dsn: str, tmp_path: Path
) -> None:
    d = dock(tmp_path, label="confidential")
    (d.path / NAME).write_bytes(plaintext(CHUNK))

    async def one() -> AsyncIterator[bytes]:
        yield b"x" * 10

    async with open_env(pg_dsn, tmp_path, [d], with_storage=False) as env:
        outcome = await env.acq.acquire_path(d, d.path / NAME)
        assert isinstance(outcome, Deferred) and outcome.reason == "store"
        with pytest.raises(Unavailable):
            await env.acq.acquire_stream("dock-01", NAME, one(), None, None)
        assert stored_files(env.storage.blobs.root) == []
        assert await env.rows("SELECT 1 FROM evidence") == []
        assert os.path.exists(d.path / NAME)
