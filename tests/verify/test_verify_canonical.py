"""verify.canonical: canonical JSON entries and salted field commitments."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verify.canonical import (
    MAX_ENTRY_BYTES,
    canonical_json,
    check_opening,
    commitment,
    new_salt,
    parse_canonical,
)
from verify.errors import CommitmentError, MalformedError

SALT = bytes(range(32))

# ---------------------------------------------------------------------------------------------
# canonical_json
# ---------------------------------------------------------------------------------------------


def test_keys_sorted_and_no_whitespace() -> None:
    obj = {"b": 1, "a": [True, False, None, {"z": "", "y": -3}], "kind": "acquired"}
    assert canonical_json(obj) == b'{"a":[true,false,null,{"y":-3,"z":""}],"b":1,"kind":"acquired"}'


def test_keys_sorted_by_code_point_not_utf16() -> None:
    # U+FFFF < U+1F600 by code point; UTF-16 ordering (JCS) would put the emoji first.
    obj = {"\U0001f600": 1, "\uffff": 2, "Z": 3, "a": 4, "\u00e9": 5}
    text = canonical_json(obj).decode()
    assert [k for k in json.loads(text)] == ["Z", "a", "\u00e9", "\uffff", "\U0001f600"]


def test_unicode_is_kept_as_utf8() -> None:
    assert canonical_json({"title": "现场执法记录"}) == '{"title":"现场执法记录"}'.encode()
    assert b"\\u" not in canonical_json({"t": "é\u2028"})


def test_control_characters_are_escaped() -> None:
    assert canonical_json({"t": 'a\nb\x01"\\'}) == b'{"t":"a\\nb\\u0001\\"\\\\"}'


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        ({"media": [{"fps": 29.97}]}, r"\$\.media\[0\]\.fps"),
        ({"x": float("nan")}, r"\$\.x"),
        ({"a b": 1.0}, r'\$\["a b"\]'),
        ([1, 2, (3,)], r"\$\[2\]: tuple"),
        ({"blob": b"raw"}, r"\$\.blob: bytes"),
        ({"s": {1, 2}}, r"\$\.s: set"),
    ],
)
def test_non_json_types_rejected_with_path(obj: object, path: str) -> None:
    with pytest.raises(TypeError, match=path):
        canonical_json(obj)


def test_float_message_explains_why() -> None:
    with pytest.raises(TypeError, match="floats are not allowed"):
        canonical_json({"duration": 1.5})


def test_non_string_key_rejected_with_path() -> None:
    with pytest.raises(TypeError, match=r"\$\.a: object key 1 is int"):
        canonical_json({"a": {1: "x"}})


def test_out_of_range_integer_rejected_with_path() -> None:
    canonical_json({"n": 2**63 - 1, "m": -(2**63)})
    with pytest.raises(ValueError, match=r"\$\.n: integer"):
        canonical_json({"n": 2**63})


def test_unpaired_surrogate_rejected_with_path() -> None:
    with pytest.raises(ValueError, match=r"\$\.t\[0\]: string contains an unpaired surrogate"):
        canonical_json({"t": ["\ud800"]})


def test_circular_structure_rejected() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="circular"):
        canonical_json({"loop": loop})
    shared = [1]
    assert canonical_json({"a": shared, "b": shared}) == b'{"a":[1],"b":[1]}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_parse_canonical_round_trip(obj: dict[str, Any]) -> None:
    data = canonical_json(obj)
    assert parse_canonical(data) == obj
    assert canonical_json(json.loads(data)) == data


# ---------------------------------------------------------------------------------------------
# parse_canonical rejects every other spelling
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1}',  # whitespace
        b'{"a":1}\n',  # trailing newline
        b'{"b":1,"a":2}',  # unsorted keys
        b'{"a":1,"a":1}',  # duplicate keys
        b'{"a":1.0}',  # float
        b'{"a":1e3}',
        b'{"a":NaN}',
        b'{"a":-0}',
        b'{"a":"\\u00e9"}',  # escaped non-ASCII that must be literal
        b'{"a":"\\/"}',  # unnecessary escape
        b'{"a":"\\u000a"}',  # \n spelled the long way
        b'{"a":"\\ud800"}',  # unpaired surrogate
        b'{"a":9223372036854775808}',  # beyond int64
        b"\xef\xbb\xbf{}",  # BOM
        b"[]",  # not an object
        b'"x"',
        b"{",
        b"",
        b'{"a":"\xff"}',  # invalid UTF-8
        '{"a":1}'.encode("utf-16"),
        b"[" * 100_000,  # nesting bomb (also over the size limit)
        b'{"a":' + b"[" * 30_000 + b"]" * 30_000 + b"}",  # nesting bomb within the limit
    ],
)
def test_parse_canonical_rejects_non_canonical(data: bytes) -> None:
    with pytest.raises(MalformedError):
        parse_canonical(data)


def test_parse_canonical_enforces_entry_size_limit() -> None:
    entry = canonical_json({"pad": "x" * (MAX_ENTRY_BYTES - 10)})
    assert len(entry) == MAX_ENTRY_BYTES
    assert parse_canonical(entry)["pad"]
    bigger = canonical_json({"pad": "x" * (MAX_ENTRY_BYTES - 9)})
    with pytest.raises(MalformedError, match="more than 65535"):
        parse_canonical(bigger)
    assert parse_canonical(bigger, max_bytes=None)["pad"]


# ---------------------------------------------------------------------------------------------
# Commitments
# ---------------------------------------------------------------------------------------------


def test_commitment_is_the_documented_hash() -> None:
    value = {"officer": "110105", "n": 3}
    want = hashlib.sha256(
        b"evault-commitment-v1\x00officer_id\x00" + SALT + b'{"n":3,"officer":"110105"}'
    ).hexdigest()
    assert commitment("officer_id", value, SALT) == want
    check_opening("officer_id", value, SALT, want)


def test_swapping_fields_breaks_the_opening() -> None:
    c_officer = commitment("officer_id", "110105", SALT)
    c_case = commitment("case_title", "110105", SALT)
    assert c_officer != c_case
    with pytest.raises(CommitmentError, match="'case_title'"):
        check_opening("case_title", "110105", SALT, c_officer)


def test_opening_with_other_value_or_salt_fails() -> None:
    c = commitment("file_name", "clip.mp4", SALT)
    with pytest.raises(CommitmentError, match="'file_name' does not match"):
        check_opening("file_name", "clip2.mp4", SALT, c)
    with pytest.raises(CommitmentError):
        check_opening("file_name", "clip.mp4", new_salt(), c)


def test_field_value_boundary_is_unambiguous() -> None:
    assert commitment("ab", "c", SALT) != commitment("a", "bc", SALT)


def test_bad_openings_are_commitment_errors() -> None:
    c = commitment("f", 1, SALT)
    with pytest.raises(CommitmentError, match="salt"):
        check_opening("f", 1, SALT[:31], c)
    with pytest.raises(CommitmentError, match="64 lowercase hex"):
        check_opening("f", 1, SALT, c.upper())
    with pytest.raises(CommitmentError, match="float"):
        check_opening("f", 1.0, SALT, c)


def test_commitment_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="salt"):
        commitment("f", 1, b"short")
    with pytest.raises(ValueError, match="field name"):
        commitment("a\x00b", 1, SALT)
    with pytest.raises(TypeError):
        commitment("f", 0.5, SALT)


def test_new_salt_is_fresh_32_bytes() -> None:
    a, b = new_salt(), new_salt()
    assert len(a) == len(b) == 32
    assert a != b
