"""`evault localize`: a suspect copy against the original's fingerprint, from the vault or a package.

Ranges must cover exactly the altered seconds, give or take one segment (1000 ms here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.forensics.localize import (
    Localization,
    localize,
    original_from_package,
    original_from_vault,
)
from ingest.media import Limits, Tools
from tests.localize.localize_fixtures import REMUXES, init_data, make_recordings, vault_with
from vault.access import principals
from vault.cases import links as cases
from vault.errors import IntegrityError, NotFound
from vault.policy.decide import Role
from vault.policy.labels import Label, Level
from vault.review.export import export_case

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
SEG = 1000
TOOLS, LIMITS = Tools(), Limits()


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_recordings(tmp_path_factory.mktemp("recordings"))


def covers(ranges: tuple[tuple[int, int], ...], start: int, end: int) -> bool:
    """``ranges`` cover [start, end) and stay within one segment of it."""
    if not ranges:
        return False
    inside = all(start - SEG <= a and b <= end + SEG for a, b in ranges)
    covered = all(any(a <= t < b for a, b in ranges) for t in range(start, end, SEG // 10))
    return inside and covered


def evault(data: Path, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EVAULT_DATABASE_DSN=dsn)
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "--data", str(data), *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def check_copies(results: dict[str, Localization]) -> None:
    spliced = results["spliced.mp4"].comparison
    assert spliced.verdict == "altered" and spliced.same_recording
    assert covers(spliced.video_ranges, 3000, 4000), spliced.video_ranges
    assert spliced.audio_ranges == () and spliced.exact_audio is True
    assert "video     differs 00:03.000–00:04.000" in results["spliced.mp4"].text()
    assert results["spliced.mp4"].exit_code == 3
    # Only the fourth second was re-encoded: every other decoded frame is the original's.
    assert covers(spliced.exact_video_ranges, 3000, 4000), spliced.exact_video_ranges
    assert "video: identical except 00:03.000–00:04.000" in results["spliced.mp4"].text()

    overlaid = results["overlaid.mp4"]
    assert overlaid.comparison.verdict == "altered"
    assert covers(overlaid.comparison.video_ranges, 3000, 4000)
    assert overlaid.comparison.audio_ranges == ()
    assert "video: none identical (re-encoded)" in overlaid.text()

    silenced = results["silenced.mp4"]
    c = silenced.comparison
    assert c.verdict == "altered" and covers(c.audio_ranges, 2000, 4000), c.audio_ranges
    assert c.video_ranges == () and c.exact_video is True  # video stream-copied: frames equal
    assert "audio     differs 00:02.000–00:04.000" in silenced.text()
    assert "decoded   video: identical to the original's" in silenced.text()

    # A lossless remux into any container is IDENTICAL, never "re-encoded". Matroska and
    # MPEG-TS keep the AAC priming (1024 samples) that the MP4's edit list trims: the copy's
    # decoded audio is aligned on the original's and the shift is reported, not hidden.
    for name in REMUXES:
        remux = results[name]
        c = remux.comparison
        assert c.verdict == "identical" and remux.exit_code == 0, (name, remux.text())
        assert c.exact_video is True and c.exact_audio is True, name
        assert "IDENTICAL" in remux.text() and "re-encoded" not in remux.text(), name
        primed = name in ("remux.mkv", "remux.ts")
        assert remux.audio_shift == (1024 if primed else 0), (name, remux.audio_shift)
        assert ("aligned   audio: the copy decodes 1024 samples" in remux.text()) == primed
        assert remux.to_json()["audio"]["shift_samples"] == remux.audio_shift

    proxy = results["proxy.mp4"]
    assert proxy.comparison.verdict == "similar" and proxy.exit_code == 1
    assert proxy.comparison.exact_video is False and proxy.comparison.video_ranges == ()
    assert "RE-ENCODED" in proxy.text() and "video: none identical (re-encoded)" in proxy.text()

    other = results["other.mp4"]
    assert other.comparison.verdict == "different" and not other.comparison.same_recording
    assert other.exit_code == 4 and "NOT THE SAME RECORDING" in other.text()


async def test_copies_against_the_vault_fingerprint(
    pg_dsn: str, tmp_path: Path, rec: dict[str, Path]
) -> None:
    data = tmp_path / "data"
    cfg = init_data(data, pg_dsn)
    async with vault_with(cfg, rec["original.mp4"]) as v:
        pool, ledger = v.rt.db.pool, v.rt.ledger
        admin = await principals.load(pool, "admin")  # admin + auditor: may verify
        eid = v.receipt.evidence_id
        original = await original_from_vault(pool, ledger, v.content, admin, eid)
        assert original.evidence_id == eid and len(original.fingerprint.segments) >= 7
        names = ["spliced.mp4", "overlaid.mp4", "silenced.mp4", *REMUXES, "proxy.mp4", "other.mp4"]
        check_copies(
            {n: await localize(original, rec[n], tools=TOOLS, limits=LIMITS) for n in names}
        )

        # The vault's own proxy: a remux of this H.264/AAC original (identical), or a transcode.
        row = await pool.fetchrow(
            "SELECT sha256, ledger_idx FROM renditions WHERE evidence_id = $1::uuid AND"
            " kind = 'proxy'",
            eid,
        )
        method = json.loads(await ledger.entry(row["ledger_idx"]))["method"]
        obj = await v.content.open(row["sha256"])
        proxy_copy = tmp_path / "vault-proxy.mp4"
        proxy_copy.write_bytes(b"".join(obj.read_range(0, obj.size)))
        obj.close()
        got = await localize(original, proxy_copy, tools=TOOLS, limits=LIMITS)
        assert got.comparison.verdict == ("identical" if method == "remux" else "similar")

        # Need-to-know holds: an officer of another case sees nothing, and is recorded.
        spec = principals.PrincipalSpec("off-li", frozenset({Role.OFFICER}), Level.SECRET)
        await principals.add(pool, ledger, admin, spec)
        officer = await principals.load(pool, "off-li")
        denied_before = await pool.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE kind='denied'"
        )
        with pytest.raises(NotFound):
            await original_from_vault(pool, ledger, v.content, officer, eid)
        denied = await pool.fetchval("SELECT count(*) FROM ledger_entries WHERE kind='denied'")
        assert denied == denied_before + 1

        # The command, as a person runs it.
        out = evault(data, pg_dsn, "localize", str(rec["spliced.mp4"]), "--evidence", eid)
        assert out.returncode == 3, out.stdout + out.stderr
        assert "ALTERED" in out.stdout and "00:03.000–00:04.000" in out.stdout
        # A lossless Matroska remux, as reported: identical (exit 0), with the alignment.
        mkv = evault(data, pg_dsn, "localize", str(rec["remux.mkv"]), "--evidence", eid)
        assert mkv.returncode == 0, mkv.stdout + mkv.stderr
        assert "IDENTICAL" in mkv.stdout and "none identical" not in mkv.stdout
        none = evault(
            data, pg_dsn, "localize", str(rec["other.mp4"]), "--evidence", eid, "--as", "off-li"
        )
        assert none.returncode == 2 and "not found" in none.stderr.lower()

        # A stored fingerprint that no longer matches its record is refused, not used.
        fp_sha = await pool.fetchval(
            "SELECT sha256 FROM renditions WHERE evidence_id = $1::uuid AND kind='fingerprint'", eid
        )
        path = v.content.blobs.path_of(fp_sha)
        path.chmod(0o600)
        path.write_bytes(path.read_bytes().replace(b'"frames":', b'"frames": ', 1))
        with pytest.raises(IntegrityError):
            await original_from_vault(pool, ledger, v.content, admin, eid)


async def test_copies_against_a_package_fingerprint(
    pg_dsn: str, tmp_path: Path, rec: dict[str, Path]
) -> None:
    data = tmp_path / "data"
    cfg = init_data(data, pg_dsn)
    async with vault_with(cfg, rec["original.mp4"]) as v:
        pool, ledger = v.rt.db.pool, v.rt.ledger
        admin = await principals.load(pool, "admin")
        await cases.create(pool, ledger, admin, "CASE-7", "某案", Label.parse("internal"))
        await cases.link(pool, ledger, admin, "CASE-7", v.receipt.evidence_id)
        spec = principals.PrincipalSpec("lr-zhao", frozenset({Role.LEGAL_REVIEWER}), Level.SECRET)
        await principals.add(pool, ledger, admin, spec)
        await principals.assign(pool, ledger, admin, "lr-zhao", "CASE-7")
        reviewer = await principals.load(pool, "lr-zhao")
        pkg = tmp_path / "pkg"
        await export_case(ledger, v.content, reviewer, "CASE-7", pkg, renditions=["fingerprint"])
        zipped = tmp_path / "pkg.zip"
        await export_case(ledger, v.content, reviewer, "CASE-7", zipped, as_zip=True,
                          renditions=["fingerprint"])  # fmt: skip
        bare = tmp_path / "bare"
        await export_case(ledger, v.content, reviewer, "CASE-7", bare)
        vkey = ledger.verifier.vkey
    index = v.receipt.ledger_index

    original = original_from_package(pkg, index)
    assert original.evidence_id == v.receipt.evidence_id
    names = ["spliced.mp4", "overlaid.mp4", "silenced.mp4", *REMUXES, "proxy.mp4", "other.mp4"]
    check_copies({n: await localize(original, rec[n], tools=TOOLS, limits=LIMITS) for n in names})
    assert original_from_package(zipped, index).fingerprint == original.fingerprint

    out = evault(data, pg_dsn, "localize", str(rec["silenced.mp4"]), "--package", str(pkg),
                 "--index", str(index), "--vkey", vkey, "--json")  # fmt: skip
    assert out.returncode == 3, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["verdict"] == "altered" and report["video"]["decoded_identical"] is True
    assert [(r["start"], r["end"]) for r in report["audio"]["differs"]] == [
        ("00:02.000", "00:04.000")
    ]

    with pytest.raises(NotFound, match="entries"):
        original_from_package(pkg, index + 1000)
    with pytest.raises(NotFound, match="--renditions fingerprint"):
        original_from_package(bare, index)
    fp_file = next((pkg / "files").glob("*.json"))
    fp_file.write_bytes(fp_file.read_bytes().replace(b'"frames":', b'"frames": ', 1))
    with pytest.raises(IntegrityError, match="manifest"):
        original_from_package(pkg, index)
    tampered = evault(data, pg_dsn, "localize", str(rec["silenced.mp4"]), "--package", str(pkg),
                      "--index", str(index), "--vkey", vkey)  # fmt: skip
    assert tampered.returncode == 2 and "does not verify" in tampered.stderr
