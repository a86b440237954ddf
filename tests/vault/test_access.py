"""Access decisions: decide() against a separately written reference, no-leak reasons, attacks."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.errors import Forbidden, NotFound
from vault.policy.decide import (
    ADMIN_FOOTAGE_HINT,
    INACTIVE_REASON,
    NOT_FOUND,
    NOT_FOUND_REASON,
    Action,
    Decision,
    Principal,
    Role,
    Target,
    TargetKind,
    decide,
    effective_label,
    rendition_label,
    visible,
)
from vault.policy.labels import PUBLIC_LABEL, Caveat, Label, Level

T = TypeVar("T")
KINDS: list[TargetKind] = ["evidence", "rendition", "case", "ledger", "system", "dock"]
CASES = ["c1", "c2", "c3"]
OFFICERS = [None, "o1", "o2"]
DOCKS = ["d1", "d2"]
INTERNAL = Label(Level.INTERNAL)


# --------------------------------------------------------------------------------------------
# Naive reference, written from the DESIGN §5 text and the brief, deliberately NOT table-driven:
# one explicit branch per action, role names as plain strings.
# --------------------------------------------------------------------------------------------


def reference_allowed(p: Principal, action: str, t: Target) -> bool:
    if p.active is not True:
        return False
    # "clearance ≥ level" — applies to everyone, admin included
    if p.clearance.value < t.label.level.value:
        return False
    # "object's caveats ⊆ principal's caveats"
    for caveat in t.label.caveats:
        if caveat not in p.caveats:
            return False
    roles = {r.value for r in p.roles}
    recorded_it = (
        (t.kind == "evidence" or t.kind == "rendition")
        and t.officer_id is not None
        and p.officer_id is not None
        and t.officer_id == p.officer_id
    )
    assigned = False
    for case in t.cases:
        if case in p.cases:
            assigned = True
    need_to_know = assigned or recorded_it
    # "the publicity role reads only redacted copies released to it" (in its cases)
    released_to_it = t.kind == "rendition" and t.released and assigned
    publicity_reads = action in ("list", "read_metadata", "stream", "download")
    if "publicity" in roles and released_to_it and publicity_reads:
        return True

    if action == "upload":
        if t.kind != "dock":
            return False
        if "dock" not in roles:
            return False
        return t.dock_id is not None and t.dock_id in p.dock_ids
    if action == "administer":
        if t.kind not in ("system", "dock", "ledger"):
            return False
        return "admin" in roles
    if action == "list" or action == "read_metadata":
        if "case_system" in roles or "auditor" in roles or "admin" in roles:
            return True
        return need_to_know and (
            "officer" in roles or "reviewer" in roles or "legal_reviewer" in roles
        )
    if action == "stream":
        if t.kind not in ("evidence", "rendition"):
            return False
        if "case_system" in roles:
            return True
        return need_to_know and (
            "officer" in roles or "reviewer" in roles or "legal_reviewer" in roles
        )
    if action == "download":
        if t.kind not in ("evidence", "rendition"):
            return False
        if "case_system" in roles:
            return True
        if "legal_reviewer" in roles and need_to_know:
            return True
        return "officer" in roles and recorded_it
    if action == "export":
        if t.kind not in ("evidence", "case"):
            return False
        return "legal_reviewer" in roles and need_to_know
    if action == "link":
        if t.kind not in ("evidence", "case"):
            return False
        return "case_system" in roles or "admin" in roles
    if action == "label":
        if t.kind not in ("evidence", "rendition", "case"):
            return False
        if "admin" in roles:
            return True
        return "legal_reviewer" in roles and need_to_know
    if action == "verify":
        if t.kind not in ("evidence", "rendition", "case", "ledger"):
            return False
        if "auditor" in roles:
            return True
        return need_to_know and ("reviewer" in roles or "legal_reviewer" in roles)
    return False


# --------------------------------------------------------------------------------------------
# Strategies: deliberately tiny domains so collisions (same case, same officer) are frequent.
# --------------------------------------------------------------------------------------------


def subsets(xs: Sequence[T], max_size: int | None = None) -> st.SearchStrategy[frozenset[T]]:
    """Subsets drawn as one bitmask: one draw per set keeps 10,000 examples fast."""
    masks = st.integers(min_value=0, max_value=(1 << len(xs)) - 1)
    if max_size is not None:
        masks = masks.filter(lambda m: m.bit_count() <= max_size)
    return masks.map(lambda m: frozenset(x for i, x in enumerate(xs) if m >> i & 1))


label_st = st.builds(Label, st.sampled_from(list(Level)), subsets(list(Caveat)))
principal_st = st.builds(
    Principal,
    id=st.just("p"),
    clearance=st.sampled_from(list(Level)),
    caveats=subsets(list(Caveat)),
    roles=subsets(list(Role), max_size=3),
    cases=subsets(CASES, max_size=2),
    officer_id=st.sampled_from(OFFICERS),
    dock_ids=subsets(DOCKS),
    active=st.sampled_from([True, True, True, False]),
)
target_st = st.builds(
    Target,
    kind=st.sampled_from(KINDS),
    label=label_st,
    cases=subsets(CASES, max_size=2),
    officer_id=st.sampled_from(OFFICERS),
    dock_id=st.sampled_from([None, *DOCKS]),
    released=st.booleans(),
)


def check_against_reference(p: Principal, action: Action, t: Target) -> Decision:
    got = decide(p, action, t)
    want = reference_allowed(p, action.value, t)
    assert got.allowed == want, (p, action, t, got)
    if got.allowed:
        assert got.reason == "allowed"
    elif not p.active:
        assert got.reason == INACTIVE_REASON
    elif not reference_allowed(p, "list", t):
        # no-leak: anything the caller cannot list is reported exactly like a missing thing
        assert got.reason == NOT_FOUND_REASON, (p, action, t, got)
    else:
        assert got.reason != NOT_FOUND_REASON
        assert got.reason  # says what is missing
    assert visible(p, t) == reference_allowed(p, "list", t)
    return got


def align(p: Principal, t: Target) -> Target:
    """Lower the target's label into the principal's reach, so allowed outcomes are common."""
    level = min(t.label.level, p.clearance)
    return replace(t, label=Label(level, t.label.caveats & p.caveats))


@st.composite
def triples(draw: st.DrawFn) -> tuple[Principal, Action, Target]:
    p = draw(principal_st)
    t = draw(target_st)
    return p, draw(st.sampled_from(list(Action))), align(p, t) if draw(st.booleans()) else t


@settings(max_examples=10_000, deadline=None)
@given(triples())
def test_decide_agrees_with_reference(triple: tuple[Principal, Action, Target]) -> None:
    check_against_reference(*triple)


def _random_triple(rng: random.Random) -> tuple[Principal, Action, Target]:
    def subset(xs: list[object], k: int) -> frozenset[object]:
        return frozenset(rng.sample(xs, rng.randint(0, k)))

    p = Principal(
        id="p",
        clearance=rng.choice(list(Level)),
        caveats=subset(list(Caveat), 2),  # type: ignore[arg-type]
        roles=subset(list(Role), 2),  # type: ignore[arg-type]
        cases=subset(list(CASES), 2),  # type: ignore[arg-type]
        officer_id=rng.choice(OFFICERS),
        dock_ids=subset(list(DOCKS), 2),  # type: ignore[arg-type]
        active=rng.random() < 0.9,
    )
    t = Target(
        kind=rng.choice(KINDS),
        label=Label(rng.choice(list(Level)), subset(list(Caveat), 2)),  # type: ignore[arg-type]
        cases=subset(list(CASES), 2),  # type: ignore[arg-type]
        officer_id=rng.choice(OFFICERS),
        dock_id=rng.choice([None, *DOCKS]),
    )
    return p, rng.choice(list(Action)), align(p, t) if rng.random() < 0.5 else t


def test_reference_comparison_is_not_vacuous() -> None:
    """A seeded sweep: zero disagreements, and every action is both allowed and denied often."""
    rng = random.Random(20_240_501)
    allowed: Counter[Action] = Counter()
    denied: Counter[Action] = Counter()
    for _ in range(20_000):
        p, action, t = _random_triple(rng)
        d = check_against_reference(p, action, t)
        (allowed if d.allowed else denied)[action] += 1
    for action in Action:
        assert allowed[action] >= 10, (action, allowed)
        assert denied[action] >= 10, (action, denied)


# --------------------------------------------------------------------------------------------
# Fixtures for the named attacks
# --------------------------------------------------------------------------------------------


def person(
    *roles: Role,
    clearance: Level = Level.SECRET,
    caveats: frozenset[Caveat] = frozenset(),
    cases: frozenset[str] = frozenset({"c1"}),
    officer_id: str | None = None,
    active: bool = True,
    dock_ids: frozenset[str] = frozenset(),
) -> Principal:
    return Principal(
        id="u",
        clearance=clearance,
        caveats=caveats,
        roles=frozenset(roles),
        cases=cases,
        officer_id=officer_id,
        dock_ids=dock_ids,
        active=active,
    )


def evidence(label: str = "secret", cases: frozenset[str] = frozenset({"c1"})) -> Target:
    return Target("evidence", Label.parse(label), cases=cases, officer_id="o9")


def _all_denied_as_not_found(p: Principal, t: Target) -> None:
    assert not visible(p, t)
    for action in Action:
        assert decide(p, action, t) == NOT_FOUND, action


def test_one_level_below_sees_nothing() -> None:
    lr = person(Role.LEGAL_REVIEWER, Role.AUDITOR, Role.ADMIN, clearance=Level.SECRET)
    assert decide(lr, Action.DOWNLOAD, evidence("secret")).allowed  # control: at level
    _all_denied_as_not_found(lr, evidence("top_secret"))


def test_missing_caveat_sees_nothing() -> None:
    lr = person(
        Role.LEGAL_REVIEWER,
        Role.AUDITOR,
        clearance=Level.TOP_SECRET,
        caveats=frozenset({Caveat.COMMERCIAL_SECRET}),
    )
    assert decide(lr, Action.STREAM, evidence("secret+commercial_secret")).allowed  # control
    _all_denied_as_not_found(lr, evidence("internal+personal_privacy"))
    _all_denied_as_not_found(lr, evidence("public+commercial_secret+personal_privacy"))


def test_unassigned_officer_cannot_stream() -> None:
    officer = person(Role.OFFICER, cases=frozenset({"c2"}), officer_id="o1")
    t = evidence("internal", cases=frozenset({"c1"}))
    assert decide(officer, Action.STREAM, t) == NOT_FOUND
    assert not visible(officer, t)
    # control: the same officer streams what is in their case, or what they recorded
    assert decide(officer, Action.STREAM, evidence("internal", frozenset({"c1", "c2"}))).allowed
    own = Target("evidence", Label.parse("internal"), officer_id="o1")
    assert decide(officer, Action.STREAM, own).allowed


def test_officer_downloads_only_own_recordings() -> None:
    officer = person(Role.OFFICER, cases=frozenset({"c1"}), officer_id="o1")
    in_case = Target("evidence", Label.parse("internal"), frozenset({"c1"}), officer_id="o2")
    assert decide(officer, Action.STREAM, in_case).allowed
    denied = decide(officer, Action.DOWNLOAD, in_case)
    assert not denied.allowed
    assert denied.reason == "download is limited to the recording officer"
    own = Target("rendition", Label.parse("internal"), officer_id="o1")
    assert decide(officer, Action.DOWNLOAD, own).allowed
    nobody = person(Role.OFFICER, cases=frozenset({"c1"}), officer_id=None)
    unattributed = Target("evidence", Label.parse("internal"), frozenset({"c1"}))
    assert not decide(nobody, Action.DOWNLOAD, unattributed).allowed  # None never matches None


def test_inactive_admin_denied() -> None:
    admin = person(Role.ADMIN, clearance=Level.TOP_SECRET, active=False)
    system = Target("system", PUBLIC_LABEL)
    for action in Action:
        for t in (system, evidence("public")):
            d = decide(admin, action, t)
            assert not d.allowed
            assert d.reason == INACTIVE_REASON
    assert decide(person(Role.ADMIN), Action.ADMINISTER, system).allowed  # control


def test_only_admin_administers() -> None:
    system = Target("system", PUBLIC_LABEL)
    everyone_else = person(*(r for r in Role if r is not Role.ADMIN), clearance=Level.TOP_SECRET)
    assert not decide(everyone_else, Action.ADMINISTER, system).allowed


def test_admin_is_not_cleared_for_top_secret_content() -> None:
    admin = person(Role.ADMIN, clearance=Level.SECRET)
    _all_denied_as_not_found(admin, evidence("top_secret"))
    cleared = person(Role.ADMIN, clearance=Level.TOP_SECRET, cases=frozenset())
    ts = evidence("top_secret")
    assert decide(cleared, Action.READ_METADATA, ts).allowed  # metadata, case-independent
    for action in (Action.STREAM, Action.DOWNLOAD, Action.EXPORT):
        d = decide(cleared, action, ts)
        assert not d.allowed
        assert d.reason.startswith("role ") and "required" in d.reason


def test_dock_cannot_upload_to_other_dock() -> None:
    dock = person(Role.DOCK, clearance=Level.INTERNAL, dock_ids=frozenset({"d1"}))
    mine = Target("dock", INTERNAL, dock_id="d1")
    other = Target("dock", INTERNAL, dock_id="d2")
    assert decide(dock, Action.UPLOAD, mine).allowed
    assert decide(dock, Action.UPLOAD, other) == NOT_FOUND
    assert decide(dock, Action.UPLOAD, Target("dock", INTERNAL)) == NOT_FOUND
    # a dock id on a non-dock target does not make it uploadable
    assert not decide(dock, Action.UPLOAD, Target("evidence", INTERNAL, dock_id="d1")).allowed
    # docks push; they never read
    for action in Action:
        if action is not Action.UPLOAD:
            assert not decide(dock, action, mine).allowed


def test_upload_needs_the_dock_role() -> None:
    admin = person(Role.ADMIN, dock_ids=frozenset({"d1"}))
    d = decide(admin, Action.UPLOAD, Target("dock", INTERNAL, dock_id="d1"))
    assert not d.allowed
    assert d.reason == "role dock required for upload"


def test_label_only_admin_or_legal_reviewer_within_clearance() -> None:
    t = evidence("secret")
    assert decide(person(Role.LEGAL_REVIEWER), Action.LABEL, t).allowed
    assert decide(person(Role.ADMIN, cases=frozenset()), Action.LABEL, t).allowed
    d = decide(person(Role.REVIEWER), Action.LABEL, t)
    assert d == Decision(False, "role admin or legal_reviewer required for label")
    assert decide(person(Role.ADMIN, clearance=Level.CONFIDENTIAL), Action.LABEL, t) == NOT_FOUND
    unassigned = person(Role.LEGAL_REVIEWER, cases=frozenset({"c2"}))
    assert decide(unassigned, Action.LABEL, t) == NOT_FOUND


def test_case_system_cannot_export() -> None:
    cs = person(Role.CASE_SYSTEM, clearance=Level.TOP_SECRET, cases=frozenset())
    t = evidence("secret", cases=frozenset({"c7"}))
    assert decide(cs, Action.DOWNLOAD, t).allowed  # case-independent
    assert decide(cs, Action.LINK, t).allowed
    assert decide(cs, Action.EXPORT, t) == Decision(
        False, "role legal_reviewer required for export"
    )


@pytest.mark.parametrize("action", [Action.STREAM, Action.DOWNLOAD, Action.EXPORT])
def test_admin_asking_for_footage_is_told_how_to_delegate(action: Action) -> None:
    """Separation of duties stays (admin never sees footage); the error says what to do."""
    admin = person(Role.ADMIN, clearance=Level.TOP_SECRET, cases=frozenset())
    d = decide(admin, action, evidence("secret"))
    assert not d.allowed and d.reason.startswith("role ") and "evault" not in d.reason
    assert d.hint == ADMIN_FOOTAGE_HINT
    with pytest.raises(Forbidden) as exc:
        d.raise_if_denied()
    for step in (
        "admin manages principals and does not view footage",
        "`evault principal add ID --role reviewer`",
        "`evault principal assign ID CASE`",
        "`evault token create ID`",
    ):
        assert step in exc.value.detail
    assert exc.value.detail.startswith(d.reason)


def test_other_denials_say_whom_to_ask_and_invisible_ones_say_nothing() -> None:
    d = decide(person(Role.REVIEWER), Action.DOWNLOAD, evidence("secret"))
    assert d.hint == "ask an administrator for a principal with that role"
    assert d.reason == "role case_system or legal_reviewer or officer required for download"
    # an auditor lists everything; streaming as a reviewer still needs the assignment
    d = decide(person(Role.REVIEWER, Role.AUDITOR, cases=frozenset()), Action.STREAM, evidence())
    assert d.reason.startswith("stream requires need-to-know")
    assert d.hint == "ask an administrator to assign you (`evault principal assign u CASE`)"
    # no-leak: a target the caller may not list gets no reason and no hint
    hidden = decide(person(Role.ADMIN, clearance=Level.INTERNAL), Action.STREAM, evidence())
    assert hidden == NOT_FOUND and hidden.hint == ""


def test_auditor_is_case_independent_but_bound_by_clearance_and_caveats() -> None:
    auditor = person(Role.AUDITOR, clearance=Level.SECRET, cases=frozenset())
    t = evidence("secret", cases=frozenset({"c7"}))
    assert decide(auditor, Action.VERIFY, t).allowed
    assert decide(auditor, Action.READ_METADATA, t).allowed
    assert decide(auditor, Action.STREAM, t) == Decision(
        False, "role case_system or legal_reviewer or officer or reviewer required for stream"
    )
    _all_denied_as_not_found(auditor, evidence("top_secret"))
    _all_denied_as_not_found(auditor, evidence("secret+personal_privacy"))


def test_case_independence_does_not_spill_across_roles() -> None:
    """An auditor who is also an officer sees everything but streams only need-to-know."""
    both = person(Role.AUDITOR, Role.OFFICER, cases=frozenset({"c2"}), officer_id="o1")
    t = evidence("internal", cases=frozenset({"c1"}))
    assert visible(both, t)
    d = decide(both, Action.STREAM, t)
    assert d == Decision(False, "stream requires need-to-know: assignment to one of its cases")


def test_action_must_apply_to_kind() -> None:
    cs = person(Role.CASE_SYSTEM)
    d = decide(cs, Action.STREAM, Target("ledger", PUBLIC_LABEL))
    assert d == Decision(False, "stream does not apply to a ledger")


def test_no_leak_reasons_are_byte_identical() -> None:
    reviewer = person(Role.REVIEWER, clearance=Level.SECRET, cases=frozenset({"c1"}))
    above_clearance = decide(reviewer, Action.STREAM, evidence("top_secret"))
    missing_caveat = decide(reviewer, Action.STREAM, evidence("secret+commercial_secret"))
    not_assigned = decide(reviewer, Action.STREAM, evidence("secret", frozenset({"c2"})))
    does_not_exist = NOT_FOUND
    reasons = {
        d.reason.encode() for d in (above_clearance, missing_caveat, not_assigned, does_not_exist)
    }
    assert reasons == {NotFound().detail.encode()}
    for d in (above_clearance, missing_caveat, not_assigned, does_not_exist):
        assert d == NOT_FOUND
        with pytest.raises(NotFound) as info:
            d.raise_if_denied()
        assert info.value.detail == NotFound().detail
    with pytest.raises(Forbidden):
        decide(reviewer, Action.DOWNLOAD, evidence("secret")).raise_if_denied()
    decide(reviewer, Action.STREAM, evidence("secret")).raise_if_denied()


def test_decision_is_not_a_condition() -> None:
    with pytest.raises(TypeError):
        bool(NOT_FOUND)


@given(label_st, st.one_of(st.none(), label_st))
def test_rendition_label_never_below_source(source: Label, requested: Label | None) -> None:
    got = rendition_label(source, requested)
    assert got.dominates(source)
    if requested is not None:
        assert got.dominates(requested)
        assert got == source.join(requested)
    else:
        assert got == source


def test_rendition_label_examples() -> None:
    source = Label.parse("secret+personal_privacy")
    assert rendition_label(source, PUBLIC_LABEL) == source
    assert rendition_label(source, None) == source
    assert rendition_label(source, Label.parse("top_secret")) == Label.parse(
        "top_secret+personal_privacy"
    )


def test_case_raises_evidence_label() -> None:
    ev = Label.parse("internal")
    cases = [Label.parse("secret"), Label.parse("confidential+commercial_secret")]
    eff = effective_label(ev, cases)
    assert eff == Label.parse("secret+commercial_secret")
    assert effective_label(ev, []) == ev
    assert effective_label(ev, iter(cases)) == eff  # any iterable, consumed once
    # the raised label is what decide() enforces: without the case's caveat, the officer
    # assigned to the case no longer sees the evidence at all
    officer = person(Role.OFFICER, clearance=Level.SECRET, cases=frozenset({"c1"}))
    assert decide(officer, Action.STREAM, Target("evidence", ev, frozenset({"c1"}))).allowed
    assert decide(officer, Action.STREAM, Target("evidence", eff, frozenset({"c1"}))) == NOT_FOUND


@given(label_st, st.lists(label_st, max_size=4))
def test_effective_label_dominates_all(ev: Label, cases: list[Label]) -> None:
    eff = effective_label(ev, cases)
    assert eff.dominates(ev)
    assert all(eff.dominates(c) for c in cases)


def released_copy(label: str = "internal", cases: frozenset[str] = frozenset({"c1"})) -> Target:
    return Target("rendition", Label.parse(label), cases=cases, officer_id="o9", released=True)


def test_publicity_reads_released_copies_in_its_cases_and_nothing_else() -> None:
    pub = person(Role.PUBLICITY, clearance=Level.INTERNAL)
    for action in (Action.LIST, Action.READ_METADATA, Action.STREAM, Action.DOWNLOAD):
        assert decide(pub, action, released_copy()).allowed, action
    assert decide(pub, Action.LABEL, released_copy()).reason == (
        "role admin or legal_reviewer required for label"
    )
    unreleased = replace(released_copy(), released=False)
    for hidden in (
        evidence("internal"),  # the original
        unreleased,  # a redacted copy not released
        released_copy("secret"),  # released, but above its clearance
        released_copy(cases=frozenset({"c2"})),  # released in a case it is not assigned to
        Target("case", INTERNAL, cases=frozenset({"c1"})),
    ):
        _all_denied_as_not_found(pub, hidden)
    assert decide(pub, Action.LIST, evidence("internal")).why == "not a released redacted copy"
    # a reviewer denied a download is not told to become publicity
    d = decide(person(Role.REVIEWER), Action.DOWNLOAD, unreleased)
    assert "publicity" not in d.reason
