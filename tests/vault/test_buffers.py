"""Reusable buffers (vault.storage.buffers): never handed out while a view of them lives."""

from __future__ import annotations

import pytest

from vault.storage import buffers


@pytest.fixture(autouse=True)
def _empty_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from an empty pool (reads in earlier tests leave buffers of every size in it)."""
    monkeypatch.setattr(buffers, "_free", [])


def test_a_buffer_with_a_live_view_is_not_handed_out_again() -> None:
    buf = buffers.take(1 << 20)
    piece = memoryview(buf)[10:20]  # e.g. a piece still queued in a transport
    buffers.give(buf)
    other = buffers.take(1 << 20)
    assert other is not buf
    piece[0] = 7  # the consumer's view still works and no one else writes there
    assert buf[10] == 7
    piece.release()
    assert buffers.take(1 << 20) is buf  # no view left: reused
    buffers.give(other)


def test_sizes_and_bounds() -> None:
    small = buffers.take(100)
    buffers.give(small)
    assert len(buffers.take(1 << 20)) >= 1 << 20  # a free buffer too small is not used
    huge = bytearray(buffers.MAX_SIZE + 1)
    buffers.give(huge)
    assert all(buffers.take(buffers.MAX_SIZE + 1) is not huge for _ in range(2))
    kept = [bytearray(1 << 10) for _ in range(buffers.KEEP + 5)]
    for b in kept:
        buffers.give(b)
    assert len(buffers._free) <= buffers.KEEP
