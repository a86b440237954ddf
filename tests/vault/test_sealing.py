"""Sealed object format: round trips, range reads, confidentiality and every attack of issue 9."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.errors import IntegrityError
from vault.storage.sealing import (
    HEADER_SIZE,
    TAG_SIZE,
    SealedReader,
    SealWriter,
    plaintext_size,
    read_header,
    seal_stream,
    sealed_size,
)

C = 4096  # smallest chunk size: many chunks with little data
DEK = bytes(range(32))
OTHER_DEK = bytes(range(1, 33))


def seal(data: bytes, dek: bytes = DEK, chunk: int = C) -> bytes:
    out = io.BytesIO()
    result = seal_stream(dek, io.BytesIO(data), out, chunk)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.size == len(data)
    sealed = out.getvalue()
    assert len(sealed) == sealed_size(len(data), chunk)
    assert read_header(io.BytesIO(sealed)).object_id == result.object_id
    return sealed


def unseal(sealed: bytes, dek: bytes = DEK) -> bytes:
    return b"".join(SealedReader(dek, io.BytesIO(sealed)).read_all())


def chunk_span(i: int, chunk: int = C) -> slice:
    start = HEADER_SIZE + i * (chunk + TAG_SIZE)
    return slice(start, start + chunk + TAG_SIZE)


def collect(it: Iterator[bytes]) -> tuple[bytes, IntegrityError | None]:
    """Everything yielded before the error, and the error."""
    got = bytearray()
    try:
        for piece in it:
            got += piece
    except IntegrityError as exc:
        return bytes(got), exc
    return bytes(got), None


@pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 5 * C, 5 * C + 17])
def test_round_trip_edges(size: int) -> None:
    data = os.urandom(size)
    sealed = seal(data)
    assert unseal(sealed) == data
    assert SealedReader(DEK, io.BytesIO(sealed)).verify().sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("chunk", [4096, 64 << 10, 4 << 20])
def test_chunk_sizes(chunk: int) -> None:
    data = os.urandom(chunk * 2 + 5)
    assert unseal(seal(data, chunk=chunk)) == data


def test_many_chunks_beyond_one_read_batch() -> None:
    data = os.urandom(700 * C + 3)  # reads go in batches of ~1 MiB (255 chunks of 4 KiB)
    sealed = seal(data)
    r = SealedReader(DEK, io.BytesIO(sealed))
    assert b"".join(r.read_all()) == data
    for a, b in ((100, 600 * C), (254 * C - 1, 256 * C + 1), (509 * C, 700 * C + 3)):
        assert b"".join(r.read_range(a, b)) == data[a:b]


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5 * C + 100), pieces=st.lists(st.integers(1, 3 * C), max_size=8))
def test_round_trip_any_size_any_write_pattern(data: bytes, pieces: list[int]) -> None:
    out = io.BytesIO()
    w = SealWriter(DEK, out, C)
    pos = 0
    for n in pieces:
        w.write(data[pos : pos + n])
        pos += n
    w.write(data[pos:])
    res = w.close()
    assert (res.sha256, res.size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert unseal(out.getvalue()) == data


RANGE_DATA = os.urandom(6 * C + 123)
RANGE_SEALED = seal(RANGE_DATA)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_range_reads_equal_slices(data: st.DataObject) -> None:
    n = len(RANGE_DATA)
    near = st.sampled_from([k * C + d for k in range(8) for d in (-1, 0, 1)]).filter(
        lambda x: 0 <= x <= n
    )
    point = st.one_of(st.integers(0, n), near)
    a, b = sorted((data.draw(point), data.draw(point)))
    r = SealedReader(DEK, io.BytesIO(RANGE_SEALED))
    assert b"".join(r.read_range(a, b)) == RANGE_DATA[a:b]


def test_range_boundaries_exhaustive_small() -> None:
    data = os.urandom(3 * C)
    r = SealedReader(DEK, io.BytesIO(seal(data)))
    for a in (0, 1, C - 1, C, C + 1, 2 * C, 3 * C - 1, 3 * C):
        for b in (a, a + 1, C, 2 * C, 2 * C + 1, 3 * C):
            if a <= b <= 3 * C:
                assert b"".join(r.read_range(a, b)) == data[a:b]
    with pytest.raises(ValueError):
        r.read_range(0, 3 * C + 1)
    with pytest.raises(ValueError):
        r.read_range(5, 4)


def test_range_read_touches_only_needed_chunks() -> None:
    data = os.urandom(6 * C)
    sealed = bytearray(seal(data))
    sealed[chunk_span(1).start + 10] ^= 1  # damage chunk 1 and chunk 4
    sealed[chunk_span(4).start + 10] ^= 1
    r = SealedReader(DEK, io.BytesIO(bytes(sealed)))
    assert b"".join(r.read_range(2 * C + 5, 4 * C)) == data[2 * C + 5 : 4 * C]
    assert b"".join(r.read_range(5 * C, 6 * C)) == data[5 * C :]
    with pytest.raises(IntegrityError):
        b"".join(r.read_range(4 * C - 1, 4 * C + 1))


def test_size_functions() -> None:
    for chunk in (4096, 65536):
        for p in [0, 1, chunk - 1, chunk, chunk + 1, 7 * chunk, 7 * chunk + 3]:
            assert plaintext_size(sealed_size(p, chunk), chunk) == p
    valid = {sealed_size(p, C) for p in range(4 * C)}
    for s in range(0, max(valid) + 1):
        if s in valid:
            assert sealed_size(plaintext_size(s, C), C) == s
        else:
            with pytest.raises(IntegrityError):
                plaintext_size(s, C)
    for bad in (0, 1000, 2048, 3 << 12, 8 << 20):
        with pytest.raises(ValueError):
            sealed_size(1, bad)


@pytest.mark.parametrize("chunk", [C, 1 << 20, 4 << 20])
def test_writer_memory_is_bounded(chunk: int) -> None:
    out = io.BytesIO()
    w = SealWriter(DEK, out, chunk)
    w.write(bytes(12 << 20))
    pending = sealed_size(12 << 20, chunk) - len(out.getvalue())
    assert 0 < pending <= (1 << 20) + 2 * (chunk + TAG_SIZE)  # a chunk + one ~1 MiB batch
    w.close()
    assert len(out.getvalue()) == sealed_size(12 << 20, chunk)
    with pytest.raises(ValueError):
        w.write(b"x")


def test_no_plaintext_on_disk() -> None:
    marker = hashlib.sha512(b"known plaintext run").digest()  # 64 bytes
    text = (b"officer 0042 case 2026-117 " * 40 + marker) * 200 + bytes(50_000)
    sealed = seal(text)
    body = sealed[HEADER_SIZE:]
    assert marker not in sealed
    assert all(marker[i : i + 8] not in sealed for i in range(0, 57))
    assert b"officer 0042" not in sealed
    for shift in (0, HEADER_SIZE):  # same file offset, and same offset within the body
        a, b = (sealed, text) if shift == 0 else (body, text)
        n = min(len(a), len(b))
        equal = sum(1 for x, y in zip(a[:n], b[:n], strict=True) if x == y)
        assert equal < 2 * n / 256 + 100  # chance level is n/256


# --- attacks: each must fail with IntegrityError and yield nothing of the damaged chunk ---

ATTACK_DATA = os.urandom(5 * C + 100)  # chunks 0..4 full, chunk 5 final (100 bytes)


@pytest.fixture
def sealed() -> bytearray:
    return bytearray(seal(ATTACK_DATA))


def assert_fails_from(blob: bytes, first_bad: int, dek: bytes = DEK) -> None:
    """Opening fails, or reading yields exactly the chunks before ``first_bad`` then fails."""
    try:
        reader = SealedReader(dek, io.BytesIO(blob))
    except IntegrityError:
        return
    got, err = collect(reader.read_all())
    assert err is not None
    assert got == ATTACK_DATA[: first_bad * C]


@pytest.mark.parametrize(
    "offset",
    [0, 8, 9, 15, 16, 31, HEADER_SIZE, HEADER_SIZE + C - 1, HEADER_SIZE + C, -1, -17, -16],
)
def test_bit_flip_anywhere(sealed: bytearray, offset: int) -> None:
    for bit in (0, 7):
        bad = bytearray(sealed)
        bad[offset] ^= 1 << bit
        first_bad = max(0, (offset % len(bad) - HEADER_SIZE) // (C + TAG_SIZE))
        assert_fails_from(bytes(bad), first_bad)


def test_bit_flip_in_middle_chunk_yields_only_earlier_chunks(sealed: bytearray) -> None:
    sealed[chunk_span(2).start + 100] ^= 0x40
    reader = SealedReader(DEK, io.BytesIO(bytes(sealed)))
    got, err = collect(reader.read_all())
    assert err is not None and "chunk 2" in str(err)
    assert got == ATTACK_DATA[: 2 * C]
    with pytest.raises(IntegrityError):
        b"".join(reader.read_range(2 * C + 200, 2 * C + 300))


@pytest.mark.parametrize("keep_chunks", [1, 3, 5])
def test_truncated_at_chunk_boundary(sealed: bytearray, keep_chunks: int) -> None:
    cut = bytes(sealed[: chunk_span(keep_chunks).start])
    assert plaintext_size(len(cut), C) == keep_chunks * C  # a valid-looking length...
    with pytest.raises(IntegrityError):  # ...caught by the final flag when opening
        SealedReader(DEK, io.BytesIO(cut))


@pytest.mark.parametrize("cut", [1, 16, 17, 100, 2000])
def test_truncated_mid_chunk(sealed: bytearray, cut: int) -> None:
    with pytest.raises(IntegrityError):
        SealedReader(DEK, io.BytesIO(bytes(sealed[: chunk_span(3).start + cut])))
    with pytest.raises(IntegrityError):
        SealedReader(DEK, io.BytesIO(bytes(sealed[: len(sealed) - cut])))


def test_too_short_or_empty() -> None:
    for blob in (b"", b"EVSEAL1\0", seal(b"")[:-1]):
        with pytest.raises(IntegrityError):
            SealedReader(DEK, io.BytesIO(blob))


def test_extended_with_a_chunk(sealed: bytearray) -> None:
    extra = bytes(sealed[chunk_span(1)])
    with pytest.raises(IntegrityError):
        SealedReader(DEK, io.BytesIO(bytes(sealed) + extra))


def test_two_chunks_swapped(sealed: bytearray) -> None:
    a, b = chunk_span(1), chunk_span(3)
    sealed[a], sealed[b] = sealed[b], sealed[a]
    assert_fails_from(bytes(sealed), 1)


@pytest.mark.parametrize("other_dek", [DEK, OTHER_DEK])
def test_chunk_from_another_object(sealed: bytearray, other_dek: bytes) -> None:
    other = seal(ATTACK_DATA, dek=other_dek)  # even the same plaintext
    sealed[chunk_span(2)] = other[chunk_span(2)]
    assert_fails_from(bytes(sealed), 2)
    last = slice(chunk_span(5).start, None)
    tail = bytearray(seal(ATTACK_DATA))
    tail[last] = other[last]
    with pytest.raises(IntegrityError):
        SealedReader(DEK, io.BytesIO(bytes(tail)))


@pytest.mark.parametrize("other_dek", [DEK, OTHER_DEK])
def test_header_swapped(sealed: bytearray, other_dek: bytes) -> None:
    other = seal(ATTACK_DATA, dek=other_dek)
    sealed[:HEADER_SIZE] = other[:HEADER_SIZE]
    assert_fails_from(bytes(sealed), 0)
    assert_fails_from(bytes(sealed), 0, dek=other_dek)


def test_wrong_key(sealed: bytearray) -> None:
    with pytest.raises(IntegrityError):
        SealedReader(OTHER_DEK, io.BytesIO(bytes(sealed)))


def test_header_is_checked() -> None:
    good = seal(b"x" * 10)
    for pos, value in ((0, 0x41), (8, 2), (9, 11), (9, 23), (10, 1)):
        bad = bytearray(good)
        bad[pos] = value
        with pytest.raises(IntegrityError):
            SealedReader(DEK, io.BytesIO(bytes(bad)))


def test_real_files(tmp_path: os.PathLike[str]) -> None:
    data = os.urandom(3 * 65536 + 7)
    path = os.path.join(tmp_path, "obj")
    with open(path, "wb") as dst:
        res = seal_stream(DEK, io.BytesIO(data), dst)
    assert res.size == len(data)
    with open(path, "rb") as f:
        r = SealedReader(DEK, f)
        assert r.size == len(data) and r.chunk_size == 65536
        assert b"".join(r.read_all()) == data
        assert b"".join(r.read_range(65530, 65540)) == data[65530:65540]


# -- read_views: a piece per I/O batch, decrypted in place --------------------------------


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_views_equal_range_reads(data: st.DataObject) -> None:
    n = len(RANGE_DATA)
    a, b = sorted((data.draw(st.integers(0, n)), data.draw(st.integers(0, n))))
    r = SealedReader(DEK, io.BytesIO(RANGE_SEALED))
    assert b"".join(r.read_views(a, b)) == RANGE_DATA[a:b]


def test_views_stay_valid_and_span_batches() -> None:
    data = os.urandom(700 * C + 3)  # several ~1 MiB batches: decrypted a batch ahead
    r = SealedReader(DEK, io.BytesIO(seal(data)))
    for a, b in ((0, 700 * C + 3), (100, 600 * C), (254 * C - 1, 256 * C + 1)):
        pieces = list(r.read_views(a, b))  # every piece kept until the end: none is reused
        assert len(pieces) < (b - a) // C  # about a batch each, not a chunk each
        assert b"".join(pieces) == data[a:b]
    with pytest.raises(ValueError):
        r.read_views(0, 700 * C + 4)


@pytest.mark.parametrize("bad", [0, 2, 4])
def test_attack_views_of_a_damaged_chunk_hand_out_only_earlier_chunks(
    sealed: bytearray, bad: int
) -> None:
    sealed[chunk_span(bad).start + 100] ^= 0x40
    reader = SealedReader(DEK, io.BytesIO(bytes(sealed)))
    got, err = collect(reader.read_views(0, len(ATTACK_DATA)))  # type: ignore[arg-type]
    assert err is not None and f"chunk {bad}" in str(err)
    assert got == ATTACK_DATA[: bad * C] == collect(reader.read_range(0, len(ATTACK_DATA)))[0]
    got, err = collect(reader.read_views(C + 7, len(ATTACK_DATA)))  # type: ignore[arg-type]
    if bad == 0:  # not overlapped: the range is served
        assert err is None and got == ATTACK_DATA[C + 7 :]
    else:
        assert err is not None and got == ATTACK_DATA[C + 7 : bad * C]
