"""Sealed reads by position, reopened from what opening established, and read from memory only
(``SealedReader.reopen``, ``read_views(nowait=True)``): every byte handed out was read from the
file and authenticated in this read; a damaged chunk gives ``IntegrityError`` and none of its
plaintext, whichever chunk it is and however the reader was opened."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from vault.errors import IntegrityError
from vault.storage import fileread, sealing
from vault.storage.sealing import HEADER_SIZE, TAG_SIZE, SealedReader, seal_stream

DEK = bytes(range(32))
C = 4096
STRIDE = C + TAG_SIZE
N_CHUNKS = 600  # more than two read batches of 256 chunks (1 MiB of 4 KiB chunks)
DATA = hashlib.shake_256(b"reopen").digest(N_CHUNKS * C - 1234)


@pytest.fixture
def sealed_path(tmp_path: Path) -> Path:
    path = tmp_path / "sealed"
    with path.open("wb") as out:
        seal_stream(DEK, io.BytesIO(DATA), out, C)
    return path


def _collect(pieces: Iterator[bytes] | Iterator[memoryview]) -> tuple[bytes, bool]:
    """The bytes handed out before the iteration ended, and whether it failed authentication."""
    got = bytearray()
    try:
        for piece in pieces:
            got += piece
    except IntegrityError:
        return bytes(got), True
    return bytes(got), False


def test_a_reopened_reader_reads_what_a_fresh_one_does(sealed_path: Path) -> None:
    with sealed_path.open("rb") as f, sealed_path.open("rb", buffering=0) as g:
        fresh = SealedReader(DEK, f)
        again = SealedReader.reopen(fresh.state, g)
        assert again.size == fresh.size == len(DATA)
        spans = [(0, len(DATA)), (1, 3 * C + 7), (len(DATA) - 5000, len(DATA)), (C, C)]
        for start, end in spans:
            expected = DATA[start:end]
            assert b"".join(again.read_range(start, end)) == expected
            assert b"".join(again.read_views(start, end)) == expected
            assert b"".join(again.read_views(start, end, nowait=True)) == expected
        # two readers of one descriptor, interleaved: positional reads share no position
        one = SealedReader.reopen(fresh.state, g).read_views(0, len(DATA), pipelined=False)
        two = SealedReader.reopen(fresh.state, g).read_views(C, len(DATA), pipelined=False)
        a, b = bytearray(), bytearray()
        for x, y in zip(one, two, strict=False):
            a += x
            b += y
        a += b"".join(one)
        b += b"".join(two)
        assert bytes(a) == DATA and bytes(b) == DATA[C:]
    assert "aead" not in repr(fresh.state) and DEK.hex() not in repr(fresh.state)


@pytest.mark.parametrize("change", ["truncated", "extended"])
def test_reopen_refuses_a_file_whose_length_changed(sealed_path: Path, change: str) -> None:
    with sealed_path.open("rb") as f:
        state = SealedReader(DEK, f).state
    with sealed_path.open("r+b") as f:
        if change == "truncated":
            f.truncate(state.sealed_size - STRIDE)
        else:
            f.seek(0, os.SEEK_END)
            f.write(bytes(STRIDE))
    with sealed_path.open("rb") as g, pytest.raises(IntegrityError):
        SealedReader.reopen(state, g)


def _damage(path: Path, index: int, where: int) -> None:
    with path.open("r+b") as f:
        at = HEADER_SIZE + index * STRIDE + where
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0x01]))


@pytest.mark.parametrize("index", [0, 1, 255, 256, 300, 511, 512, N_CHUNKS - 2, N_CHUNKS - 1])
@pytest.mark.parametrize("where", [0, 100, C + 3])  # ciphertext, ciphertext, tag
@pytest.mark.parametrize("how", ["range", "views", "views-pipelined", "views-nowait"])
def test_a_flipped_byte_in_any_chunk_fails_and_none_of_its_plaintext_is_handed_out(
    sealed_path: Path, index: int, where: int, how: str
) -> None:
    last = index == N_CHUNKS - 1
    if last and where == C + 3:
        where = len(DATA) - (N_CHUNKS - 1) * C + 3  # the last chunk's tag
    with sealed_path.open("rb") as f:
        state = SealedReader(DEK, f).state  # opened (and its last chunk authenticated) before
    _damage(sealed_path, index, where)
    with sealed_path.open("rb") as f:
        if last:  # a fresh open authenticates the last chunk: it fails at once
            with pytest.raises(IntegrityError):
                SealedReader(DEK, f)
        reader = SealedReader.reopen(state, f)  # a kept object, reopened after the damage
        start = 0 if index == 0 else (index - 1) * C + 17
        if how == "range":
            pieces: Iterator[bytes] | Iterator[memoryview] = reader.read_range(start, len(DATA))
        else:
            pieces = reader.read_views(
                start, len(DATA), pipelined=how == "views-pipelined", nowait=how == "views-nowait"
            )
        got, failed = _collect(pieces)
    assert failed
    assert got == DATA[start : index * C]  # exactly the chunks before it, nothing of it


def test_nowait_announces_reads_from_disk_and_resumes_them(
    sealed_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sealed_path.open("rb") as f:
        state = SealedReader(DEK, f).state
        cached = list(SealedReader.reopen(state, f).read_views(0, len(DATA), nowait=True))
        assert b"".join(cached) == DATA
        monkeypatch.setattr(sealing, "read_cached", lambda fd, buf, offset: False)
        pieces = list(SealedReader.reopen(state, f).read_views(0, len(DATA), nowait=True))
    empties = [i for i, p in enumerate(pieces) if not p]
    assert len(empties) == 4  # three batches and the last chunk, each announced before it
    assert all(pieces[i + 1] for i in empties)
    assert b"".join(pieces) == DATA


def test_read_cached_never_reads_past_the_end_nor_without_a_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    buf = memoryview(bytearray(200))
    with path.open("rb") as f:
        assert not fileread.read_cached(f.fileno(), buf, 0)  # short: not all of it
        assert not fileread.read_cached(None, buf[:10], 0)
        if fileread._NOWAIT is not None:
            assert fileread.read_cached(f.fileno(), buf[:100], 0)  # just written: in memory
            assert bytes(buf[:100]) == b"x" * 100
