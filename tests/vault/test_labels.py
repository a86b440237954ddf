"""Labels: order, lattice laws, encodings, encryption rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault.errors import BadRequest
from vault.policy.labels import INTERNAL_LABEL, PUBLIC_LABEL, Caveat, Label, Level

labels = st.builds(
    Label, st.sampled_from(list(Level)), st.frozensets(st.sampled_from(list(Caveat)))
)


def test_levels_are_ordered_as_design_section_5() -> None:
    order = ["public", "internal", "confidential", "secret", "top_secret"]
    assert [level.slug for level in sorted(Level)] == order
    assert [level.zh for level in sorted(Level)] == ["公开", "内部", "秘密", "机密", "绝密"]
    assert Level.PUBLIC < Level.INTERNAL < Level.CONFIDENTIAL < Level.SECRET < Level.TOP_SECRET


def test_caveat_names() -> None:
    assert Caveat.COMMERCIAL_SECRET.zh == "商业秘密"
    assert Caveat.PERSONAL_PRIVACY.zh == "个人隐私"
    assert str(Caveat.PERSONAL_PRIVACY) == "personal_privacy"


@pytest.mark.parametrize("level", list(Level))
def test_level_parse_roundtrip(level: Level) -> None:
    assert Level.parse(level.slug) is level


@pytest.mark.parametrize("text", ["", "SECRET", "secret ", "3", "机密", "top-secret", "Public"])
def test_level_parse_rejects_anything_but_a_slug(text: str) -> None:
    with pytest.raises(BadRequest):
        Level.parse(text)


def test_constants() -> None:
    assert Label(Level.PUBLIC, frozenset()) == PUBLIC_LABEL
    assert Label(Level.INTERNAL, frozenset()) == INTERNAL_LABEL


def test_label_checks_types() -> None:
    with pytest.raises(TypeError):
        Label(3, frozenset())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Label(Level.SECRET, {Caveat.PERSONAL_PRIVACY})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Label(Level.SECRET, frozenset({"personal_privacy"}))  # type: ignore[arg-type]


@given(labels, labels)
def test_join_commutative(a: Label, b: Label) -> None:
    assert a.join(b) == b.join(a)


@given(labels, labels, labels)
def test_join_associative(a: Label, b: Label, c: Label) -> None:
    assert a.join(b).join(c) == a.join(b.join(c))


@given(labels)
def test_join_idempotent_and_public_is_bottom(a: Label) -> None:
    assert a.join(a) == a
    assert a.join(PUBLIC_LABEL) == a
    assert a.dominates(a)
    assert a.dominates(PUBLIC_LABEL)


@given(labels, labels, labels)
def test_join_is_least_upper_bound(a: Label, b: Label, c: Label) -> None:
    j = a.join(b)
    assert j.dominates(a)
    assert j.dominates(b)
    if c.dominates(a) and c.dominates(b):
        assert c.dominates(j)
    assert a.dominates(b) == (a.join(b) == a)


@given(labels, labels)
def test_dominates_is_antisymmetric(a: Label, b: Label) -> None:
    if a.dominates(b) and b.dominates(a):
        assert a == b


def test_caveats_are_not_ordered_by_level() -> None:
    privacy = Label(Level.INTERNAL, frozenset({Caveat.PERSONAL_PRIVACY}))
    secret = Label(Level.TOP_SECRET)
    assert not secret.dominates(privacy)
    assert not privacy.dominates(secret)
    assert privacy.join(secret) == Label(Level.TOP_SECRET, frozenset({Caveat.PERSONAL_PRIVACY}))


@given(labels)
def test_str_parse_roundtrip(a: Label) -> None:
    assert Label.parse(str(a)) == a


@given(labels)
def test_json_roundtrip(a: Label) -> None:
    data = a.to_json()
    assert Label.from_json(data) == a
    caveats = data["caveats"]
    assert isinstance(caveats, list)
    assert caveats == sorted(caveats)


def test_short_form_examples() -> None:
    both = frozenset({Caveat.PERSONAL_PRIVACY, Caveat.COMMERCIAL_SECRET})
    assert str(Label(Level.SECRET, both)) == "secret+commercial_secret+personal_privacy"
    assert Label.parse("secret+personal_privacy+commercial_secret") == Label(Level.SECRET, both)
    assert str(PUBLIC_LABEL) == "public"
    assert Label(Level.SECRET, both).to_json() == {
        "level": "secret",
        "caveats": ["commercial_secret", "personal_privacy"],
    }
    assert Label(Level.SECRET, both).zh == "机密（商业秘密、个人隐私）"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "+",
        "secret+",
        "+secret",
        "personal_privacy",
        "secret+personal_privacy+personal_privacy",
        "secret+nda",
        "secret personal_privacy",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(BadRequest):
        Label.parse(text)


@pytest.mark.parametrize(
    "data",
    [
        None,
        "secret",
        {"level": "secret"},
        {"level": "secret", "caveats": [], "extra": 1},
        {"level": 3, "caveats": []},
        {"level": "secret", "caveats": "personal_privacy"},
        {"level": "secret", "caveats": ["personal_privacy", "personal_privacy"]},
        {"level": "secret", "caveats": [1]},
        {"level": "ultra", "caveats": []},
    ],
)
def test_from_json_rejects(data: object) -> None:
    with pytest.raises(BadRequest):
        Label.from_json(data)


@given(labels)
def test_from_wire_takes_the_short_form_and_the_object(a: Label) -> None:
    assert Label.from_wire(str(a)) == a
    assert Label.from_wire(a.to_json()) == a


def test_from_wire_examples() -> None:
    secret_pp = Label(Level.SECRET, frozenset({Caveat.PERSONAL_PRIVACY}))
    assert Label.from_wire("secret+personal_privacy") == secret_pp
    assert Label.from_wire({"level": "secret", "caveats": ["personal_privacy"]}) == secret_pp
    assert Label.from_wire("internal", "--label") == INTERNAL_LABEL


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (5, "label: a label is a string such as 'secret+personal_privacy'"),
        (None, "label: a label is a string"),
        (["secret"], "label: a label is a string"),
        ("internal+nda", "label: unknown caveat 'nda'"),
        ("Secret", "label: unknown level 'Secret'"),
        ("secret+personal_privacy+personal_privacy", "label: caveat personal_privacy given twice"),
        ({"level": "secret"}, 'label: label must be an object with exactly "level" and "caveats"'),
        ({"level": "ultra", "caveats": []}, "label: unknown level 'ultra'"),
    ],
)
def test_from_wire_rejects_naming_the_field(value: object, detail: str) -> None:
    with pytest.raises(BadRequest) as exc:
        Label.from_wire(value)
    assert exc.value.detail.startswith(detail), exc.value.detail
    with pytest.raises(BadRequest, match=r"^--label: "):
        Label.from_wire(value, "--label")


def test_error_does_not_echo_huge_input() -> None:
    with pytest.raises(BadRequest) as info:
        Level.parse("x" * 10_000)
    assert len(info.value.detail) < 200


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("public", False),
        ("internal", False),
        ("confidential", True),
        ("secret", True),
        ("top_secret", True),
        ("public+personal_privacy", True),
        ("internal+commercial_secret", True),
    ],
)
def test_needs_encryption(label: str, expected: bool) -> None:
    assert Label.parse(label).needs_encryption is expected


@given(labels, labels)
def test_needs_encryption_is_monotone(a: Label, b: Label) -> None:
    if a.needs_encryption:
        assert a.join(b).needs_encryption
