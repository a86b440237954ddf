"""Redacted copies over real HTTP, a real worker, real ffmpeg and PostgreSQL.

A reviewer asks for a redacted copy of a linked recording; the worker renders it; the copy is a
``redacted`` rendition whose ``redacted`` ledger entry names the original's ``acquired`` entry,
the spec's hash, the exact ffmpeg arguments and version and the copy's hash; the original is
untouched and ``fsck --state`` finds the tables agreeing with the ledger.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.config import load
from api.runtime import open_runtime
from ingest.media.suggest import available
from tests.api.http_fixtures import Reply, World, seeded_service
from vault.redaction.spec import parse_spec, spec_sha256

SPEC = {
    "version": 1,
    "effect": "pixelate",
    "boxes": [
        {
            "label": "bystander",
            "keyframes": [
                {"t_ms": 0, "x": 10, "y": 10, "w": 40, "h": 30},
                {"t_ms": 1500, "x": 100, "y": 60, "w": 40, "h": 30},
            ],
        }
    ],
    "mute_ranges": [{"start_ms": 500, "end_ms": 1000}],
}


def _video(path: Path) -> bytes:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=160x120:r=10:d=2",
         "-f", "lavfi", "-i", "sine=d=2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-shortest", str(path)],
        check=True,
        timeout=60,
    )  # fmt: skip
    return path.read_bytes()


def _wait(w: World, location: str, who: str, done: tuple[str, ...]) -> dict[str, object]:
    deadline = time.monotonic() + 90
    while True:
        job = w.call("GET", location, who=who).json()
        if job.get("status") in done or time.monotonic() > deadline:
            return dict(job)
        time.sleep(0.3)


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("redact-http")
    with seeded_service(pg_admin_dsn, tmp / "data") as w:
        data = _video(tmp / "v.mp4")
        r = w.upload("dock1", "v.mp4", data)
        assert r.status == 201, r.body
        w.evidence["v"] = r.json()
        w.content["v"] = data
        ev = str(r.json()["evidence_id"])
        body = json.dumps({"evidence_id": ev}).encode()
        assert w.call("POST", "/v1/cases/C1/evidence", who="casesys", body=body).status == 201
        deadline = time.monotonic() + 90
        while w.call("GET", f"/v1/evidence/{ev}", who="reviewer").json().get("probe") is None:
            assert time.monotonic() < deadline, "never probed"
            time.sleep(0.3)
        yield w


def _entry(w: World, index: int) -> dict[str, object]:
    async def read() -> bytes:
        cfg = load(None, str(w.svc.data), environ=w.svc.env)
        async with open_runtime(cfg) as rt:
            return await rt.ledger.entry(index)

    return dict(json.loads(asyncio.run(read())))


def _decisions_from(w: World, start: int | None = None) -> tuple[int, list[tuple[str, str]]]:
    """(the ledger's size, (kind, action) of its accessed/denied entries from ``start`` on)."""

    async def read() -> tuple[int, list[tuple[str, str]]]:
        cfg = load(None, str(w.svc.data), environ=w.svc.env)
        async with open_runtime(cfg) as rt:
            size = await rt.ledger.size()
            out = []
            for i in range(size if start is None else start, size):
                body = json.loads(await rt.ledger.entry(i))
                if body["kind"] in ("accessed", "denied"):
                    out.append((body["kind"], body["action"]))
            return size, out

    return asyncio.run(read())


def test_a_bad_spec_is_a_400_naming_each_field(world: World) -> None:
    ev = str(world.evidence["v"]["evidence_id"])
    bad = json.loads(json.dumps(SPEC))
    bad["boxes"][0]["keyframes"][1]["x"] = 130  # 130 + 40 > 160: outside the picture
    bad["mute_ranges"][0]["end_ms"] = 9000  # past the 2 s recording
    r = world.call("POST", f"/v1/evidence/{ev}/redactions", who="reviewer",
                   body=json.dumps(bad).encode())  # fmt: skip
    problem = r.problem()
    assert r.status == 400 and problem["type"].endswith("/invalid-redaction-spec")
    fields = {e["field"]: e["detail"] for e in problem["errors"]}
    assert "frame width 160" in fields["boxes[0].keyframes[1].x"]
    assert "beyond the duration" in fields["mute_ranges[0].end_ms"]


def test_refusals_leave_no_accessed_entry(world: World) -> None:
    """A bad spec (400) is refused before the entry: none; a caller allowed to stream the item
    but not to ask for a copy (403) leaves a ``denied`` entry, never an ``accessed`` one."""
    ev = str(world.evidence["v"]["evidence_id"])
    bad = json.loads(json.dumps(SPEC))
    bad["mute_ranges"][0]["end_ms"] = 9000
    start, _ = _decisions_from(world)
    r = world.call("POST", f"/v1/evidence/{ev}/redactions", who="reviewer",
                   body=json.dumps(bad).encode())  # fmt: skip
    assert r.status == 400, r.body
    r = world.call("POST", f"/v1/evidence/{ev}/redactions", who="casesys",
                   body=json.dumps(SPEC).encode())  # fmt: skip
    assert r.status == 403, r.body
    assert _decisions_from(world, start)[1] == [("denied", "stream")]


def test_only_reviewers_and_legal_reviewers_may_ask(world: World) -> None:
    ev = str(world.evidence["v"]["evidence_id"])
    body = json.dumps(SPEC).encode()
    for who in ("admin", "casesys", "officer"):
        r = world.call("POST", f"/v1/evidence/{ev}/redactions", who=who, body=body)
        assert r.status in (403, 404), (who, r.status, r.body)
    assert world.call("POST", f"/v1/evidence/{ev}/redactions", who="dock1", body=body).status in (
        403,
        404,
    )
    absent = "00000000-0000-4000-8000-000000000000"
    r = world.call("POST", f"/v1/evidence/{absent}/redactions", who="reviewer", body=body)
    assert r.status == 404


def test_redacted_copy_is_recorded_with_its_chain(world: World) -> None:
    w = world
    ev = str(w.evidence["v"]["evidence_id"])
    r = w.call("POST", f"/v1/evidence/{ev}/redactions", who="reviewer",
               body=json.dumps(SPEC).encode())  # fmt: skip
    assert r.status == 202, r.body
    location = r.headers["location"]
    assert location.startswith("/v1/redactions/")
    want_hash = spec_sha256(parse_spec(SPEC))
    assert r.json()["spec_sha256"] == want_hash
    job = _wait(w, location, "reviewer", ("done", "failed"))
    assert job["status"] == "done", job
    assert w.call("GET", location, who="legal").status == 200  # may read the evidence
    assert w.call("GET", location, who="dock1").status == 404
    copy = w.call("GET", str(job["rendition"]), who="reviewer")
    assert copy.status == 200 and copy.headers["content-type"] == "video/mp4"
    original = w.call("GET", f"/v1/evidence/{ev}/content", who="legal")
    assert original.body == w.content["v"]  # the original is untouched
    detail = w.call("GET", f"/v1/evidence/{ev}", who="reviewer").json()
    (rendition,) = [x for x in detail["renditions"] if x["id"] == job["rendition_id"]]
    assert rendition["kind"] == "redacted" and rendition["label"] == detail["label"]
    assert rendition["sha256"] == hashlib.sha256(copy.body).hexdigest()
    entry = _entry(w, int(rendition["ledger_index"]))
    assert entry["kind"] == "redacted" and entry["rendition"] == "redacted"
    assert entry["original_entry"] == detail["ledger_index"]
    assert entry["input_sha256"] == w.evidence["v"]["sha256"]
    assert entry["output_sha256"] == rendition["sha256"]
    assert entry["spec_sha256"] == want_hash and entry["spec_version"] == 1
    args = entry["args"]
    assert isinstance(args, list) and "-filter_complex" in args and "{input}" in args
    assert str(entry["ffmpeg"])[:1].isdigit()
    acquired = _entry(w, int(detail["ledger_index"]))
    assert acquired["kind"] == "acquired" and acquired["sha256"] == entry["input_sha256"]
    # the tables agree with the ledger, the redacted copy's row included
    assert w.svc.evault("ledger", "fsck", "--state").returncode == 0


def test_a_package_of_the_redacted_copy_alone_verifies_offline(
    world: World, tmp_path: Path
) -> None:
    w = world
    ev = str(w.evidence["v"]["evidence_id"])
    r = w.call("POST", f"/v1/evidence/{ev}/redactions", who="legal",
               body=json.dumps(SPEC).encode())  # fmt: skip
    job = _wait(w, r.headers["location"], "legal", ("done", "failed"))
    assert job["status"] == "done", job
    out = tmp_path / "shared"
    w.svc.evault("export", "C1", "--out", str(out), "--renditions", "redacted",
                 "--no-originals", "--as", "legal")  # fmt: skip
    vkey = w.svc.evault("ledger", "vkey").stdout.strip()
    manifest = json.loads((out / "manifest.json").read_bytes())
    kinds = {f["kind"] for f in manifest["files"]}
    assert kinds == {"redacted", "redaction-spec"}  # no original, no other rendition
    assert not any(f["sha256"] == w.evidence["v"]["sha256"] for f in manifest["files"])
    done = subprocess.run(
        [sys.executable, "-m", "verify", str(out), "--vkey", vkey],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "NOT included" in done.stdout
    # the same package with the copy's bytes altered is rejected, naming the attack
    copy = next(f for f in manifest["files"] if f["kind"] == "redacted")
    target = out / copy["path"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    bad = subprocess.run(
        [sys.executable, "-m", "verify", str(out), "--vkey", vkey, "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    codes = {f["code"] for f in json.loads(bad.stdout)["findings"]}
    assert bad.returncode != 0 and "redacted-copy-tampered" in codes


def test_suggestions_are_a_job_for_reviewers_or_a_503_without_the_detector(world: World) -> None:
    w = world
    ev = str(w.evidence["v"]["evidence_id"])
    path = f"/v1/evidence/{ev}/redaction-suggestions"
    assert w.call("POST", path, who="casesys").status == 403
    r = w.call("POST", path, who="reviewer")
    if not available():  # the service runs with this interpreter's packages
        assert r.status == 503 and "detect" in r.problem()["detail"]
        return
    assert r.status == 202, r.body
    job = _wait(w, r.headers["location"], "reviewer", ("done", "failed"))
    assert job["status"] == "done", job
    assert isinstance(job["boxes"], list)  # a test pattern: nothing to suggest, or a valid track
    parse_spec({"version": 1, "boxes": job["boxes"], "mute_ranges": [
        {"start_ms": 0, "end_ms": 1}]})  # fmt: skip
    assert w.call("GET", str(r.headers["location"]), who="dock1").status == 404


def test_a_legal_reviewer_releases_a_copy_below_its_originals_label(world: World) -> None:
    """(Last: it links the recording to the secret case.) Linked to the secret case, the original and its redacted copy are hidden from the
    reviewer (cleared for internal); the legal reviewer's release at internal makes the copy,
    and only the copy, readable to them, as its own ledger entry."""
    w = world
    ev = str(w.evidence["v"]["evidence_id"])
    r = w.call("POST", f"/v1/evidence/{ev}/redactions", who="legal",
               body=json.dumps(SPEC).encode())  # fmt: skip
    job = _wait(w, r.headers["location"], "legal", ("done", "failed"))
    assert job["status"] == "done", job
    copy_id = str(job["rendition_id"])
    body = json.dumps({"evidence_id": ev}).encode()
    assert w.call("POST", "/v1/cases/CS/evidence", who="admin", body=body).status == 201
    assert w.call("GET", f"/v1/renditions/{copy_id}/content", who="reviewer").status == 404
    assert w.call("GET", f"/v1/evidence/{ev}/content", who="reviewer").status == 404
    internal = json.dumps({"label": "internal"}).encode()
    # a reviewer may not release; a legal reviewer may not release above their clearance
    assert w.call("POST", f"/v1/renditions/{copy_id}/release", who="reviewer",
                  body=internal).status in (403, 404)  # fmt: skip
    too_high = json.dumps({"label": "top_secret"}).encode()
    assert w.call("POST", f"/v1/renditions/{copy_id}/release", who="legal",
                  body=too_high).status == 403  # fmt: skip
    r = w.call("POST", f"/v1/renditions/{copy_id}/release", who="legal", body=internal)
    assert r.status == 201, r.body
    released = r.json()
    got = w.call("GET", released["content"], who="reviewer")
    assert got.status == 200
    copy = w.call("GET", f"/v1/renditions/{copy_id}/content", who="legal")
    assert got.body == copy.body  # the same bytes, released
    # the original and the unreleased copy stay hidden from the reviewer
    assert w.call("GET", f"/v1/evidence/{ev}/content", who="reviewer").status == 404
    assert w.call("GET", f"/v1/renditions/{copy_id}/content", who="reviewer").status == 404
    # a released copy is not released again, and the original is no redacted copy
    assert w.call("POST", f"/v1/renditions/{released['rendition_id']}/release", who="legal",
                  body=internal).status == 400  # fmt: skip
    entry = _entry(w, int(released["ledger_index"]))
    assert entry["kind"] == "released" and entry["copy"] == copy_id
    assert entry["label"] == "internal" and str(entry["previous"]).startswith("secret")
    assert "by" in dict(entry["commitments"])  # type: ignore[arg-type]
    assert w.svc.evault("ledger", "fsck", "--state").returncode == 0


def _add_publicity(w: World, pid: str, cases: tuple[str, ...]) -> None:
    """A principal of role publicity, cleared for internal, assigned to ``cases``."""
    from datetime import timedelta

    from vault.access import principals, tokens
    from vault.policy.decide import Role
    from vault.policy.labels import Level

    async def add() -> str:
        cfg = load(None, str(w.svc.data), environ=w.svc.env)
        async with open_runtime(cfg) as rt:
            db, ledger = rt.db.pool, rt.ledger
            admin = await principals.load(db, "admin")
            spec = principals.PrincipalSpec(
                id=pid, roles=frozenset({Role.PUBLICITY}), clearance=Level.INTERNAL
            )
            await principals.add(db, ledger, admin, spec)
            for case in cases:
                await principals.assign(db, ledger, admin, pid, case, force=True)
            return (await tokens.create(db, ledger, admin, pid, timedelta(days=1))).token

    w.tokens[pid] = asyncio.run(add())


def _bare(r: Reply) -> dict[str, object]:
    """A problem without its request id: what a caller can compare."""
    return {k: v for k, v in r.problem().items() if k != "request_id"}


def test_publicity_reads_only_copies_released_to_it(world: World) -> None:
    """(After the release test: the recording is in the secret case CS.) A publicity principal
    assigned to the cases reads the released copy, and gets the very Not found of a missing
    rendition for the original, for the unreleased copy and for the item's metadata; one not
    assigned to the cases does not get the released copy either (need to know is not released)."""
    w = world
    ev = str(w.evidence["v"]["evidence_id"])
    _add_publicity(w, "pub", ("C1", "CS"))
    _add_publicity(w, "pub_elsewhere", ("C9",))
    r = w.call("POST", f"/v1/evidence/{ev}/redactions", who="legal",
               body=json.dumps(SPEC).encode())  # fmt: skip
    job = _wait(w, r.headers["location"], "legal", ("done", "failed"))
    assert job["status"] == "done", job
    copy_id = str(job["rendition_id"])
    absent = w.call("GET", "/v1/renditions/00000000-0000-4000-8000-000000000000/content",
                    who="pub")  # fmt: skip
    assert absent.status == 404
    unreleased = w.call("GET", f"/v1/renditions/{copy_id}/content", who="pub")
    assert (unreleased.status, _bare(unreleased)) == (404, _bare(absent))  # no leak
    internal = json.dumps({"label": "internal"}).encode()
    r = w.call("POST", f"/v1/renditions/{copy_id}/release", who="legal", body=internal)
    assert r.status == 201, r.body
    released = r.json()
    deadline = time.monotonic() + 10  # the service learns of the new principal within seconds
    while (got := w.call("GET", released["content"], who="pub")).status != 200:
        assert time.monotonic() < deadline, (got.status, got.body)
        time.sleep(0.3)
    assert got.body == w.call("GET", f"/v1/renditions/{copy_id}/content", who="legal").body
    # never the original, never the unreleased copy, not even the item's metadata
    missing_ev = w.call("GET", "/v1/evidence/00000000-0000-4000-8000-000000000000", who="pub")
    assert missing_ev.status == 404
    for path in (f"/v1/evidence/{ev}/content", f"/v1/evidence/{ev}"):
        r = w.call("GET", path, who="pub")
        assert r.status == 404 and _bare(r) == _bare(missing_ev), path
    again = w.call("GET", f"/v1/renditions/{copy_id}/content", who="pub")
    assert (again.status, _bare(again)) == (404, _bare(absent))
    # nor may it ask for a copy, release one, or list evidence
    assert w.call("POST", f"/v1/evidence/{ev}/redactions", who="pub",
                  body=json.dumps(SPEC).encode()).status == 404  # fmt: skip
    assert w.call("POST", f"/v1/renditions/{released['rendition_id']}/release", who="pub",
                  body=internal).status in (403, 404)  # fmt: skip
    listed = w.call("GET", "/v1/evidence", who="pub")
    assert listed.status == 200 and ev not in listed.body.decode()
    # it lists released copies only: this one (and the earlier release), never the copy itself
    listed_copies = w.call("GET", "/v1/released", who="pub").json()["released"]
    ids = {c["rendition_id"] for c in listed_copies}
    assert released["rendition_id"] in ids and copy_id not in ids
    detail = w.call("GET", f"/v1/evidence/{ev}", who="legal").json()
    kinds = {r["id"]: r["kind"] for r in detail["renditions"]}
    assert {kinds[i] for i in ids} == {"released"}
    assert all(c["content"] == f"/v1/renditions/{c['rendition_id']}/content" for c in listed_copies)
    # need to know is not released: a publicity principal outside the cases sees nothing
    assert w.call("GET", released["content"], who="pub_elsewhere").status == 404
    assert w.call("GET", "/v1/released", who="pub_elsewhere").json() == {"released": []}
