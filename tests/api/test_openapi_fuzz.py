"""Schemathesis against the running service's own OpenAPI document, with every check (as
``--checks all``), positive and negative data, unexpected methods (the coverage phase), over
every route, with the token of each role: no server error, no answer outside the document
(status, content type, headers, body schema), and no input the document allows refused or one
it forbids accepted. Bounded (examples per operation, one worker), seeded, loopback only."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.http_fixtures import World, seeded_service

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is not installed (pip install -e .[dev])"
)
from schemathesis.config._checks import (  # noqa: E402
    POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES as POSITIVE_STATUSES,
)
from schemathesis.engine import Status, events  # noqa: E402

SEED = int(os.environ.get("EVAULT_SCHEMATHESIS_SEED", "20261126"))
# Per operation and role, so the module stays under 90 s on two busy cores. The coverage phase
# (boundaries, missing and wrong-typed parameters, unexpected methods) is not bounded by it and
# takes most of the time: it runs (with the stateful phase) as admin, whose token reaches every
# handler; every role gets the examples and the fuzzing phases.
MAX_EXAMPLES = int(os.environ.get("EVAULT_SCHEMATHESIS_EXAMPLES", "3"))
ROLES = ["admin", "reviewer", "legal", "auditor", "casesys", "dock1"]
FULL_ROLES = {"admin"}
# Rules the service enforces between fields or on values it issued, which JSON Schema cannot
# state: a request valid by the schema may be refused with 400 for exactly these (each named in
# the operation's documented 400 answer). Any other refusal of a schema-valid request fails.
RELATIONS = {
    ("GET", "/v1/evidence"): "cursor: a next_cursor the service handed out",
    ("GET", "/v1/ledger/consistency"): "old <= new",
    ("POST", "/v1/evidence/{id}/clips"): "start_ms < end_ms",
    ("POST", "/v1/cases/{id}/coverage"): "each step ends after it starts",
    ("POST", "/v1/verify"): "a body or ?sha256=, not both",
    # Not a relation: Python's str.isprintable, which a pattern states only as a class of some
    # 700 code point ranges that makes generation several times slower.
    ("PUT", "/v1/cases/{id}"): "a new case id: 1 to 128 printable characters",
}
# The document itself: schemathesis does not test the operation it loads the schema from.
UNTESTED = {"GET /openapi.json"}


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with seeded_service(pg_admin_dsn, tmp_path_factory.mktemp("fuzz") / "data") as w:
        r = w.upload("dock1", "one.mp4", os.urandom(2000))
        assert r.status == 201
        link = json.dumps({"evidence_id": r.json()["evidence_id"]}).encode()
        assert w.call("POST", "/v1/cases/C1/evidence", who="casesys", body=link).status == 201
        yield w


def _config(world: World, who: str) -> Any:
    from schemathesis.config import SchemathesisConfig

    phases = ["examples", "coverage", "fuzzing", "stateful"]
    if who not in FULL_ROLES:  # the others: positive and negative data on every operation
        phases.remove("coverage")
        phases.remove("stateful")
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "workers": 1,  # hypothesis' lambda descriptions call ast.parse, unsafe in threads
            "base-url": world.svc.url,
            "headers": {"Authorization": f"Bearer {world.tokens[who]}"},
            "request-timeout": 20,
            "continue-on-failure": True,
            "cache": {"enabled": False},
            # NUL is refused in every string (400, before any handler): stated in the API's
            # problem types, not per string in the schema.
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "no-shrink": True,
                "allow-x00": False,
            },
            "phases": {
                p: {"enabled": p in phases} for p in ["examples", "coverage", "fuzzing", "stateful"]
            },
            "operations": [
                {
                    "include-method": method,
                    "include-path": path,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": [*POSITIVE_STATUSES, "400"]
                        }
                    },
                }
                for method, path in RELATIONS
            ],
        }
    )


def _run(world: World, who: str) -> tuple[set[str], list[str]]:
    """Run every phase as ``who``; (operations exercised, failures as text)."""
    schema = schemathesis.openapi.from_url(
        world.svc.url + "/openapi.json", config=_config(world, who)
    )
    tested: set[str] = set()
    failures: list[str] = []
    start = time.monotonic()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.PhaseFinished):
            print(f"{who}: {event.phase.name} done at {time.monotonic() - start:.1f} s")
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            for case_id, checks in event.recorder.checks.items():
                tested.add(event.recorder.label)
                for check in checks:
                    if check.status == Status.FAILURE:
                        case = event.recorder.cases[case_id].value
                        info = check.failure_info
                        title = info.failure.title if info is not None else ""
                        inter = event.recorder.interactions.get(case_id)
                        if inter is not None and inter.response is not None:
                            title += f" -> {inter.response.status_code} {(inter.response.content or b'')[:160]!r}"
                        failures.append(
                            f"{who} {event.recorder.label} [{check.name}] {title}: "
                            f"{case.method} {case.formatted_path} query={case.query} "
                            f"body={str(case.body)[:200]}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"{who} error: {getattr(event, 'value', None) or event}")
    return tested, failures


def test_fuzz_every_route_as_every_role(world: World) -> None:
    doc = world.call("GET", "/openapi.json").json()
    operations = {f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m in ops}
    failures: list[str] = []
    for who in ROLES:
        tested, found = _run(world, who)
        failures += found
        missing = operations - tested - UNTESTED
        assert not missing, f"{who}: operations never exercised: {sorted(missing)}"
    unique = sorted(set(failures))
    assert not unique, f"{len(unique)} failures:\n" + "\n".join(unique[:200])
    assert world.call("GET", "/readyz").status == 200  # and the service is still healthy
