"""``vault.storage.pipeline.ahead``: the source's items and errors, in order, with a bounded lead, and a
worker that stops and closes its source when the consumer goes away; and the sealed reader's
large reads through it (where a worker decrypts ahead) keep the attack guarantees."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vault.errors import IntegrityError
from vault.storage.pipeline import ahead
from vault.storage.sealing import AHEAD_BATCHES, HEADER_SIZE, TAG_SIZE, SealedReader, seal_stream

C = 4096
DEK = bytes(range(32))


def test_items_in_order_on_another_thread() -> None:
    seen: set[int] = set()

    def source() -> Iterator[int]:
        for i in range(1000):
            seen.add(threading.get_ident())
            yield i

    assert list(ahead(source(), depth=3)) == list(range(1000))
    assert threading.get_ident() not in seen


def test_error_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise IntegrityError("chunk 2 failed authentication")

    got: list[int] = []
    with pytest.raises(IntegrityError, match="chunk 2"):
        for item in ahead(source()):
            got.append(item)
    assert got == [1, 2]


def test_lead_is_bounded_and_closing_stops_and_closes_the_source() -> None:
    produced = 0
    closed = threading.Event()

    def source() -> Iterator[int]:
        nonlocal produced
        try:
            while True:
                produced += 1
                yield produced
        finally:
            closed.set()

    it = ahead(source(), depth=2)
    assert next(it) == 1
    it.close()  # type: ignore[attr-defined]
    assert closed.is_set()  # closed on return from close(): the source is no longer in use
    assert produced <= 1 + 2 + 1  # consumed + queued + the one being produced


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ahead(iter([1]), depth=0)


def _sealed(size: int) -> tuple[bytes, bytes]:
    data = hashlib.shake_256(b"pipeline").digest(size)
    out = io.BytesIO()
    seal_stream(DEK, io.BytesIO(data), out, C)
    return data, out.getvalue()


def test_a_damaged_chunk_deep_in_a_large_read_yields_exactly_the_chunks_before_it() -> None:
    batch = (1 << 20) // (C + TAG_SIZE)
    chunks = (AHEAD_BATCHES + 2) * batch  # large enough for the worker to decrypt ahead
    data, sealed = _sealed(chunks * C + 100)
    bad_chunk = 2 * batch + 7  # in the middle of the third batch
    damaged = bytearray(sealed)
    damaged[HEADER_SIZE + bad_chunk * (C + TAG_SIZE) + 5] ^= 1
    reader = SealedReader(DEK, io.BytesIO(bytes(damaged)))
    got = bytearray()
    with pytest.raises(IntegrityError, match=f"chunk {bad_chunk} "):
        for piece in reader.read_all():
            got += piece
    assert bytes(got) == data[: bad_chunk * C]
    # undamaged: a large range read through the worker equals the plaintext
    whole = SealedReader(DEK, io.BytesIO(sealed))
    assert b"".join(whole.read_range(5, len(data) - 5)) == data[5:-5]


def test_a_consumer_that_stops_early_leaves_the_reader_usable() -> None:
    data, sealed = _sealed((AHEAD_BATCHES + 1) * (1 << 20))
    reader = SealedReader(DEK, io.BytesIO(sealed))
    it = reader.read_all()
    next(it)
    it.close()  # type: ignore[attr-defined]
    assert b"".join(reader.read_range(C, 3 * C)) == data[C : 3 * C]


def test_closing_a_large_read_early_ends_its_worker_before_the_file_is_closed(
    tmp_path: Path,
) -> None:
    data, sealed = _sealed((AHEAD_BATCHES + 2) * (1 << 20))
    path = tmp_path / "sealed"
    path.write_bytes(sealed)
    with path.open("rb") as f:
        it = SealedReader(DEK, f).read_all()
        assert next(it) == data[:C]
        assert any(t.name == "evault-ahead" for t in threading.enumerate())
        it.close()  # type: ignore[attr-defined]
        assert not any(t.name == "evault-ahead" for t in threading.enumerate())
