"""``evault demo``: the whole flow in a minute, against a running ``evault serve``.

It makes a few short synthetic recordings with ffmpeg (test pattern and tone, station-style
names ``<device>_<officer>_<YYYYMMDDhhmmss>.mp4`` for two officers on two recorders), drops them
into the first configured dock of the running service, waits for their receipts and for their
proxies (``media_status = 'ready'``), registers a case, links the recordings, adds a legal
reviewer assigned to the case (an admin may not export content), exports a package as that
reviewer, verifies it offline, and prints where to look: among it the console's address and a
fresh one-day token for the legal reviewer (printed once, like ``evault token create``), so the
same case can be reviewed in the browser at once.

Guarantees: it acts only through the same functions and access decisions as the other commands,
so everything it does is in the ledger like any other work; it never touches files it did not
make (recordings are written beside the dock and renamed into it whole, with fresh content and
names each run); each run registers a new case, so it may be run again. It refuses to start when
no service answers ``/readyz``, or when the service answering serves another ledger (its
``/ledger/vkey`` differs from this data directory's key). Exit status 0 only when the package
verified.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from api.config import Config
from api.runtime import Runtime, open_runtime
from ingest.config import DockConfig
from ingest.receipts import receipt_name
from vault import evidence as evrows
from vault.access import principals, tokens
from vault.cases import links as cases
from vault.errors import ConfigError, NotFound, Unavailable
from vault.keys.signing import load_signer
from vault.policy.decide import Principal, Role
from vault.policy.labels import Label, Level
from vault.review.export import export_case
from verify.package_checks import verify_package
from verify.report import VERDICT_LINES

REVIEWER = "demo-legal-reviewer"
# (device, officer, video source, tone Hz, minutes before now)
RECORDINGS = (
    ("ZFJLY-A01", "31011500123", "testsrc2", 440, 50),
    ("ZFJLY-A01", "31011500123", "smptebars", 660, 35),
    ("ZFJLY-B07", "31011500456", "testsrc2", 880, 20),
    ("ZFJLY-B07", "31011500456", "smptebars", 550, 5),
)
SECONDS = 3
TOKEN_TTL = timedelta(days=1)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="synthetic recordings → dock → case → package → offline verification"
    )
    p.add_argument("--url", help="URL of the running service (default: http://service.listen)")
    p.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for acquisition and media"
    )
    p.add_argument("--out", type=Path, help="package folder (default: <data>/exports/<case>)")
    p.set_defaults(func=demo)


def _say(text: str) -> None:
    print(text, flush=True)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (http URL we were given)
            return int(r.status), r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


async def check_service(url: str, cfg: Config, vkey: str) -> None:
    """Unavailable unless a ready service for this ledger answers at ``url``."""
    start = f"evault --data {cfg.data} serve   (or: make run)"
    try:
        status, body = await asyncio.to_thread(_get, url + "/readyz")
    except (OSError, ValueError) as exc:
        raise Unavailable(f"no evidence-vault service answers at {url} ({exc}); start it first:"
                          f"\n    {start}\nthen run `evault demo` again") from None  # fmt: skip
    if status != 200:
        raise Unavailable(f"the service at {url} is not ready ({status}): {body.strip()}")
    status, served = await asyncio.to_thread(_get, url + "/ledger/vkey")
    if status == 200 and served.strip() != vkey:
        raise ConfigError(
            f"the service at {url} serves another ledger ({served.strip()}); run the demo "
            "with the --data (or --config) of that service"
        )


async def _ffmpeg(ffmpeg: str, out: Path, video: str, hz: int, tag: str, codec: str) -> bool:
    proc = await asyncio.create_subprocess_exec(
        ffmpeg, "-nostdin", "-v", "error", "-y",
        "-f", "lavfi", "-i", f"{video}=size=320x240:rate=15:duration={SECONDS}",
        "-f", "lavfi", "-i", f"sine=frequency={hz}:duration={SECONDS}",
        "-c:v", codec, "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "48k", "-shortest",
        "-metadata", f"comment=evidence-vault demo {tag}", "-movflags", "+faststart", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await proc.communicate()
    return proc.returncode == 0


async def make_recordings(cfg: Config, dock: DockConfig, folder: Path) -> list[Path]:
    """Write the demo's recordings into ``folder``; names carry the dock's local times."""
    ffmpeg = shutil.which(cfg.media.ffmpeg)
    if ffmpeg is None:
        raise ConfigError(f"{cfg.media.ffmpeg} not found: install ffmpeg (make ffmpeg)")
    now = datetime.now(ZoneInfo(dock.timezone))
    tag = secrets.token_hex(4)
    out = []
    for device, officer, video, hz, minutes in RECORDINGS:
        when = (now - timedelta(minutes=minutes)).strftime("%Y%m%d%H%M%S")
        path = folder / f"{device}_{officer}_{when}.mp4"
        ok = await _ffmpeg(ffmpeg, path, video, hz, tag, "libx264")
        if not ok and not await _ffmpeg(ffmpeg, path, video, hz, tag, "mpeg4"):
            raise Unavailable(f"ffmpeg could not make {path.name}")
        out.append(path)
    return out


def _drop(src: Path, dst: Path) -> None:
    """Move a finished recording into the dock whole (a copy if the dock is another mount)."""
    try:
        src.rename(dst)
    except OSError:
        shutil.copyfile(src, dst)


def _receipt(dock_dir: Path, name: str) -> dict[str, Any] | None:
    rname = os.fsdecode(receipt_name(os.fsencode(name)))
    for where in (dock_dir / rname, dock_dir / ".released" / rname):
        try:
            data: dict[str, Any] = json.loads(where.read_bytes())
            return data
        except (FileNotFoundError, ValueError):
            continue
    return None


async def wait_for_receipts(dock_dir: Path, names: list[str], deadline: float) -> list[Any]:
    """The receipts of ``names`` once all are written; Unavailable at the deadline."""
    shown = -1
    while True:
        got = [await asyncio.to_thread(_receipt, dock_dir, n) for n in names]
        done = sum(r is not None for r in got)
        if done != shown:
            _say(f"  acquisition: {done}/{len(names)} receipts")
            shown = done
        if done == len(names):
            return got
        if time.monotonic() > deadline:
            missing = [n for n, r in zip(names, got, strict=True) if r is None]
            raise Unavailable(
                f"no receipt yet for {', '.join(missing)}: is the ingest part running? look at "
                "the service's log and the quarantine folder"
            )
        await asyncio.sleep(0.5)


async def wait_for_media(rt: Runtime, ids: list[uuid.UUID], deadline: float) -> None:
    """Return once every evidence item's media is 'ready'; Unavailable otherwise (also when a
    rendition failed: 'partial' or 'unprocessable', with the reason)."""
    shown = ""
    while True:
        rows = await evrows.media_states(rt.db.pool, ids)
        status = [r["media_status"] for r in rows]
        line = f"  media: {status.count('ready')}/{len(ids)} ready"
        if line != shown:
            _say(line)
            shown = line
        bad = [r for r in rows if r["media_status"] in ("unprocessable", "partial")]
        if bad:
            raise Unavailable(f"media could not be processed: {bad[0]['media_reason']}")
        if status.count("ready") == len(ids):
            return
        if time.monotonic() > deadline:
            raise Unavailable("proxies not ready in time: is the media part running?")
        await asyncio.sleep(0.5)


async def reviewer_for(rt: Runtime, admin: Principal, label: Label) -> Principal:
    """The demo's legal reviewer, created on first use, cleared for ``label``."""
    try:
        return await principals.load(rt.db.pool, REVIEWER)
    except NotFound:
        pass
    spec = principals.PrincipalSpec(
        id=REVIEWER,
        roles=frozenset({Role.LEGAL_REVIEWER}),
        clearance=max(label.level, Level.INTERNAL),
        caveats=label.caveats,
        display_name="演示法制审核员 demo legal reviewer",
    )
    await principals.add(rt.db.pool, rt.ledger, admin, spec)
    return await principals.load(rt.db.pool, REVIEWER)


async def demo(args: argparse.Namespace, cfg: Config) -> int:
    if not cfg.docks:
        raise ConfigError("no dock is configured: the demo drops its recordings into the first")
    dock = cfg.docks[0]
    dock_dir = cfg.path(dock.path)
    url = (args.url or f"http://{cfg.service.listen}").rstrip("/")
    vkey = load_signer(cfg.path(cfg.ledger.key_file)).vkey
    await check_service(url, cfg, vkey)
    _say(f"evidence-vault demo against {url} (data {cfg.data})")
    deadline = time.monotonic() + args.timeout

    staging = Path(await asyncio.to_thread(tempfile.mkdtemp, ".demo-", dir=dock_dir.parent))
    try:
        _say(f"1. making {len(RECORDINGS)} synthetic recordings with ffmpeg")
        files = await make_recordings(cfg, dock, staging)
        for f in files:
            await asyncio.to_thread(_drop, f, dock_dir / f.name)
            _say(f"  dropped {f.name} into dock {dock.id} ({dock_dir})")
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    names = [f.name for f in files]
    _say(f"2. waiting for the service to take them (settle time {dock.settle_seconds:g} s)")
    receipts = await wait_for_receipts(dock_dir, names, deadline)
    ids = [uuid.UUID(r["evidence_id"]) for r in receipts]
    for name, r in zip(names, receipts, strict=True):
        _say(f"  {name}: evidence {r['evidence_id']}, ledger entry {r['ledger_index']}")

    async with open_runtime(cfg) as rt:
        _say("3. waiting for proxies, posters and fingerprints")
        await wait_for_media(rt, ids, deadline)
        admin = await principals.load(rt.db.pool, "admin")
        stamp = datetime.now(ZoneInfo(dock.timezone)).strftime("%Y%m%d-%H%M%S")
        case_id = f"DEMO-{stamp}-{secrets.token_hex(2)}"
        label = Label.parse(dock.label)
        await cases.create(
            rt.db.pool, rt.ledger, admin, case_id, "演示案件：现场检查 demo inspection", label
        )
        for eid in ids:
            await cases.link(rt.db.pool, rt.ledger, admin, case_id, str(eid))
        _say(f"4. registered case {case_id} and linked {len(ids)} recordings")
        await reviewer_for(rt, admin, label)
        await principals.assign(rt.db.pool, rt.ledger, admin, REVIEWER, case_id)
        reviewer = await principals.load(rt.db.pool, REVIEWER)  # now with the assignment
        _say(f"5. legal reviewer {REVIEWER} assigned to {case_id}; exporting as the reviewer")
        out = (args.out or cfg.data / "exports" / case_id).resolve()
        await asyncio.to_thread(out.parent.mkdir, 0o700, True, True)
        content = rt.storage.content
        result = await export_case(
            rt.ledger,
            content,
            reviewer,
            case_id,
            out,
            renditions=["proxy", "poster"],
            timezone=cfg.export.timezone,
        )
        verifier = rt.signer.verifier
        issued = await tokens.create(
            rt.db.pool, rt.ledger, admin, REVIEWER, TOKEN_TTL, comment="evault demo"
        )
    _say(f"  wrote {result.path}: {result.files} files, {result.entries} ledger entries")
    _say("6. verifying the package offline (what evault-verify does)")
    report = await asyncio.to_thread(verify_package, result.path, verifier)
    counts = report.counts
    _say(
        f"  {VERDICT_LINES[report.verdict]}: {counts['files_ok']}/{counts['files']} files, "
        f"{counts['entries_ok']}/{counts['entries']} ledger entries proven"
    )
    _say("")
    _say("where to look:")
    _say(f"  package        {result.path}")
    _say(f"  report         {result.path / 'report.html'}")
    _say(f"  verify again   evault-verify {result.path} --vkey '{vkey}'")
    _say(f"  audit trail    evault --data {cfg.data} audit --case {case_id}")
    _say(f"  the case       evault --data {cfg.data} case show {case_id}")
    _say(f"  service        {url}/readyz  {url}/ledger/checkpoint  {url}/metrics")
    _say(f"  console        {url}/console/   sign in as {REVIEWER} with this token:")
    _say(f"  token          {issued.token}")
    _say(
        f"                 (expires {issued.expires_at:%Y-%m-%d %H:%M} UTC; revoke it with "
        f"evault --data {cfg.data} token revoke {issued.id})"
    )
    return 0 if report.verdict == "ok" else 1
