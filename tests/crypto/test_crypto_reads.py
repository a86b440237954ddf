"""Reads through the ContentStore: exact ranges, and IntegrityError for every kind of damage."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.crypto.crypto_fixtures import CHUNK, Env, open_env, plaintext, read_all
from vault.errors import IntegrityError, NotFound
from vault.storage import storage as storage_module
from vault.storage.sealing import HEADER_SIZE, TAG_SIZE

STRIDE = CHUNK + TAG_SIZE


def chunk_at(index: int) -> int:
    return HEADER_SIZE + index * STRIDE


async def sealed_file(env: Env, digest: str) -> Path:
    key = await env.storage.content.key(digest)
    assert key is not None
    path = env.storage.blobs.sealed_path(digest, key.object_id)
    path.chmod(0o600)  # the tests damage it on purpose
    return path


async def read(
    env: Env, digest: str, start: int = 0, end: int | None = None, *, reuse: bool = False
) -> bytes:
    return await read_all(await env.storage.content.open(digest, reuse=reuse), start, end)


async def test_range_reads_at_and_across_chunk_boundaries(pg_dsn: str, tmp_path: Path) -> None:
    sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 4 * CHUNK, 5 * CHUNK + 123]
    async with open_env(pg_dsn, tmp_path, []) as env:
        objects = {}
        for size in sizes:
            data = plaintext(size, marks=0)
            objects[await env.seal(data)] = data
        for digest, data in objects.items():
            n = len(data)
            edges = {0, n} | {k * CHUNK + d for k in range(6) for d in (-1, 0, 1)}
            points = sorted(p for p in edges if 0 <= p <= n)
            obj = await env.storage.content.open(digest)
            try:
                assert obj.size == n
                for i, start in enumerate(points):
                    for end in points[i:]:
                        got = b"".join(obj.read_range(start, end))
                        assert got == data[start:end], (n, start, end)
                with pytest.raises(ValueError):
                    list(obj.read_range(0, n + 1))
            finally:
                obj.close()


async def test_as_file_decrypts_to_a_private_scratch_file(pg_dsn: str, tmp_path: Path) -> None:
    data = plaintext(3 * CHUNK + 5)
    async with open_env(pg_dsn, tmp_path, []) as env:
        digest = await env.seal(data)
        obj = await env.storage.content.open(digest)
        try:
            with obj.as_file() as path:
                assert path.read_bytes() == data
                assert stat.S_IMODE(path.stat().st_mode) == 0o600
                assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
                if Path("/dev/shm").is_dir():
                    assert path.is_relative_to("/dev/shm"), "plaintext must stay off the disk"
                assert not path.is_relative_to(env.storage.blobs.root)
            assert not path.exists() and not path.parent.exists()
        finally:
            obj.close()


async def test_only_the_chunks_a_range_needs_are_decrypted(pg_dsn: str, tmp_path: Path) -> None:
    data = plaintext(6 * CHUNK + 9)
    async with open_env(pg_dsn, tmp_path, []) as env:
        digest = await env.seal(data)
        path = await sealed_file(env, digest)
        raw = bytearray(path.read_bytes())
        raw[chunk_at(4) + 100] ^= 0x01
        path.write_bytes(bytes(raw))
        assert await read(env, digest, CHUNK, 4 * CHUNK) == data[CHUNK : 4 * CHUNK]
        assert await read(env, digest, 5 * CHUNK, len(data)) == data[5 * CHUNK :]
        with pytest.raises(IntegrityError):
            await read(env, digest, 4 * CHUNK - 1, 4 * CHUNK + 1)


def _flip(raw: bytearray, at: int) -> None:
    raw[at] ^= 0x80


def _damage(raw: bytearray, foreign: bytes, damage: str) -> None:
    """Apply the named damage to a sealed object's bytes (``foreign``: another object's)."""
    if damage == "bit-in-header":
        _flip(raw, 20)
    elif damage == "bit-in-chunk":
        _flip(raw, chunk_at(2) + 5)
    elif damage == "bit-in-tag":
        _flip(raw, chunk_at(1) + CHUNK + 3)
    elif damage == "bit-in-last-chunk":
        _flip(raw, len(raw) - 30)
    elif damage == "truncated-by-a-byte":
        del raw[-1]
    elif damage == "truncated-by-a-chunk":
        del raw[chunk_at(4) : chunk_at(5)]
    elif damage == "extended":
        raw += os.urandom(TAG_SIZE + 1)
    elif damage == "chunks-swapped":
        one, two = raw[chunk_at(1) : chunk_at(2)], raw[chunk_at(2) : chunk_at(3)]
        raw[chunk_at(1) : chunk_at(3)] = two + one
    elif damage == "chunk-from-another-object":
        raw[chunk_at(2) : chunk_at(3)] = foreign[chunk_at(2) : chunk_at(3)]
    elif damage == "header-from-another-object":
        raw[:HEADER_SIZE] = foreign[:HEADER_SIZE]
    else:
        raise ValueError(f"unknown damage {damage!r}")


@pytest.mark.parametrize(
    "damage",
    [
        "bit-in-header",
        "bit-in-chunk",
        "bit-in-tag",
        "bit-in-last-chunk",
        "truncated-by-a-byte",
        "truncated-by-a-chunk",
        "extended",
        "chunks-swapped",
        "chunk-from-another-object",
        "header-from-another-object",
        "key-row-from-another-object",
    ],
)
async def test_damage_is_an_integrity_error_never_wrong_data(
    pg_dsn: str, tmp_path: Path, damage: str
) -> None:
    data, other = plaintext(5 * CHUNK + 77), plaintext(5 * CHUNK + 77)
    async with open_env(pg_dsn, tmp_path, []) as env:
        digest, other_digest = await env.seal(data), await env.seal(other)
        path, other_path = await sealed_file(env, digest), await sealed_file(env, other_digest)
        raw, foreign = bytearray(path.read_bytes()), other_path.read_bytes()
        if damage != "key-row-from-another-object":
            _damage(raw, foreign, damage)
        else:
            await env.db.pool.execute(
                "UPDATE object_keys SET wrapped = (SELECT wrapped FROM object_keys WHERE"
                " sha256 = $2) WHERE sha256 = $1",
                digest,
                other_digest,
            )
        path.write_bytes(bytes(raw))
        with pytest.raises(IntegrityError):
            await read(env, digest)
        assert await read(env, other_digest) == other  # the other object is untouched


@pytest.mark.parametrize(
    "damage",
    [
        "bit-in-chunk",
        "bit-in-tag",
        "bit-in-last-chunk",
        "truncated-by-a-byte",
        "truncated-by-a-chunk",
        "extended",
        "chunks-swapped",
        "chunk-from-another-object",
    ],
)
async def test_damage_after_the_object_was_kept_open_is_still_an_integrity_error(
    pg_dsn: str, tmp_path: Path, damage: str
) -> None:
    data, other = plaintext(5 * CHUNK + 77), plaintext(5 * CHUNK + 77)
    async with open_env(pg_dsn, tmp_path, []) as env:
        digest, other_digest = await env.seal(data), await env.seal(other)
        assert (
            await read(env, digest, reuse=True) == data
        )  # opened once: kept open for the next read
        assert len(env.storage.content.kept) == 1
        path, other_path = await sealed_file(env, digest), await sealed_file(env, other_digest)
        raw, foreign = bytearray(path.read_bytes()), other_path.read_bytes()
        _damage(raw, foreign, damage)
        with path.open("r+b") as f:  # in place: the kept descriptor sees the damage
            f.write(raw)
            f.truncate(len(raw))
        with pytest.raises(IntegrityError):
            await read(env, digest, reuse=True)


async def test_a_kept_object_is_used_only_with_the_key_row_it_was_opened_with(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, other = plaintext(3 * CHUNK + 5), plaintext(3 * CHUNK + 5)
    async with open_env(pg_dsn, tmp_path, []) as env:
        content = env.storage.content
        digest, other_digest = await env.seal(data), await env.seal(other)
        assert await read(env, digest, 1, 2 * CHUNK, reuse=True) == data[1 : 2 * CHUNK]
        key = await content.key(digest)
        entry = content.kept.get(digest, key)
        assert entry is not None
        assert await read(env, digest, reuse=True) == data
        assert content.kept.get(digest, key) is entry  # reused: not opened again
        # the key row changes (here: another object's wrapped key, as a swapped row would be);
        # once the row is read again, the kept object is not used and the row is refused
        monkeypatch.setattr(storage_module, "KEY_CACHE_SECONDS", 0.0)
        swap = (
            "UPDATE object_keys SET wrapped = (SELECT wrapped FROM object_keys WHERE sha256 = $2)"
            " WHERE sha256 = $1"
        )
        assert key is not None
        await env.db.pool.execute(swap, digest, other_digest)
        with pytest.raises(IntegrityError):
            await read(env, digest, reuse=True)
        await env.db.pool.execute(
            "UPDATE object_keys SET wrapped = $2 WHERE sha256 = $1",
            digest,
            key.wrapped.blob,
        )
        assert await read(env, digest, reuse=True) == data
        content.forget(digest)
        assert content.kept.get(digest, key) is None
        assert await read(env, digest, reuse=True) == data
        (await sealed_file(env, digest)).unlink()  # kept open, but gone from the store:
        with pytest.raises(NotFound):  # an open without reuse (scrub's) sees what is stored now
            await read(env, digest)
