"""Read-ahead hints: windows advised ahead of the reader, never past the end, few system calls,
and reads through real files (where the hint is active) return exactly the plaintext."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
from pathlib import Path

import pytest

from vault.storage.prefetch import ReadAhead
from vault.storage.sealing import SealedReader, seal_stream

MIB = 1 << 20


@pytest.fixture
def advised(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """Records the hints instead of passing them to the kernel (a hint changes no data)."""
    calls: list[tuple[int, int, int]] = []

    def record(fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_WILLNEED
        calls.append((fd, offset, length))

    monkeypatch.setattr(os, "posix_fadvise", record)
    return calls


def test_windows_cover_the_read_ahead_of_the_reader_and_stop_at_the_end(
    advised: list[tuple[int, int, int]],
) -> None:
    ahead = ReadAhead(7, end=20 * MIB, window=8 * MIB)
    for pos in range(0, 20 * MIB + 1, MIB // 4):
        ahead.at(pos)
    spans = [(off, off + n) for _, off, n in advised]
    assert spans[0] == (0, 8 * MIB)
    for (_, b_end), (c_start, _) in itertools.pairwise(spans):
        assert c_start == b_end  # contiguous, no byte advised twice
    assert spans[-1][1] == 20 * MIB  # never past the end
    # one call per half window consumed, at most
    assert len(advised) <= 20 * MIB // (4 * MIB) + 1


def test_a_range_read_starting_midway_advises_from_its_start(
    advised: list[tuple[int, int, int]],
) -> None:
    ahead = ReadAhead(7, end=5 * MIB + 10, window=8 * MIB)
    ahead.at(5 * MIB)
    assert advised == [(7, 5 * MIB, 10)]


def test_no_descriptor_no_hint(advised: list[tuple[int, int, int]]) -> None:
    ahead = ReadAhead(io.BytesIO(b"x" * 100), end=100)
    ahead.at(0)
    assert advised == []


def test_a_refused_hint_is_ignored_and_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    def refuse(fd: int, offset: int, length: int, advice: int) -> None:
        nonlocal calls
        calls += 1
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "posix_fadvise", refuse)
    ahead = ReadAhead(7, end=100 * MIB)
    for pos in range(0, 100 * MIB, MIB):
        ahead.at(pos)
    assert calls == 1


def test_sealed_ranges_from_a_real_file_across_read_batches(tmp_path: Path) -> None:
    data = hashlib.shake_256(b"prefetch").digest(3 * MIB + 12345)
    path = tmp_path / "sealed"
    dek = bytes(range(32))
    with path.open("wb") as out:
        seal_stream(dek, io.BytesIO(data), out, 4096)
    spans = [(0, len(data)), (1, MIB + 7), (MIB - 3, 2 * MIB + 4099), (len(data) - 5000, len(data))]
    with path.open("rb") as f:
        reader = SealedReader(dek, f)
        for start, end in spans:
            assert b"".join(reader.read_range(start, end)) == data[start:end]
