"""The tlog-tiles read paths over real HTTP, checked the way an independent tlog client would."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from tests.api.service_fixtures import running_service
from verify.checkpoint import open_checkpoint
from verify.merkle import leaf_hash, root_from_leaf_hashes
from verify.note import parse_vkey
from verify.tiles import decode_entry_bundle, entries_path, tile_path


def get(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET ``url``, with a bearer token when given (entry bundles need one)."""
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_client_rebuilds_root_from_served_tiles(tmp_path: Path, pg_dsn: str) -> None:
    with running_service(tmp_path / "data", pg_dsn) as svc:
        notes = [f"note {i}" for i in range(300)]
        for start in range(0, 300, 100):
            svc.evault("ledger", "note", *notes[start : start + 100])
        vkey = svc.evault("ledger", "vkey").stdout.strip()
        token = svc.evault("token", "create", "admin").stdout.strip()
        status, headers, body = get(svc.url + "/ledger/checkpoint")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert "max-age=1" in headers["Cache-Control"]
        cp = open_checkpoint(body.decode(), parse_vkey(vkey))
        assert 300 <= cp.size < 512  # the notes, plus the entries of the service's own start
        width = cp.size - 256
        # Full level-0 tile (256 leaves), the partial one, and the level-1 partial.
        status, headers, full = get(f"{svc.url}/ledger/{tile_path(0, 0)}")
        assert status == 200 and len(full) == 8192 and "immutable" in headers["Cache-Control"]
        _, _, part = get(f"{svc.url}/ledger/{tile_path(0, 1, width)}")
        assert len(part) == width * 32
        _, _, rest = get(f"{svc.url}/ledger/{entries_path(1, width)}", token)
        texts = [e for e in decode_entry_bundle(rest) if b'"kind":"note"' in e]
        assert texts and texts[-1].count(b"note 299") == 1
        status, headers, bundle = get(f"{svc.url}/ledger/{entries_path(0)}", token)
        assert status == 200 and headers["Cache-Control"].startswith("private")
        entries = decode_entry_bundle(bundle)
        assert [leaf_hash(e) for e in entries] == [full[i : i + 32] for i in range(0, 8192, 32)]
        leaves = [full[i : i + 32] for i in range(0, 8192, 32)] + [
            part[i : i + 32] for i in range(0, len(part), 32)
        ]
        assert root_from_leaf_hashes(leaves) == cp.root_hash


NONCANONICAL_OR_ABSENT = [
    "tile/0/1",  # beyond the tree
    "tile/0/000.p/99",  # wider than the stored partial tile
    "tile/0/0.p/0",  # empty tiles are never served
    "tile/0/0.p/256",  # a full tile has no width suffix
    "tile/0/x000/000",  # non-canonical index encoding
    "tile/../../etc/passwd",  # path traversal attempt
]


def test_missing_or_noncanonical_tiles_are_404_problems(tmp_path: Path, pg_dsn: str) -> None:
    with running_service(tmp_path / "data", pg_dsn) as svc:
        svc.evault("ledger", "note", "one")
        token = svc.evault("token", "create", "admin").stdout.strip()
        for path in [*NONCANONICAL_OR_ABSENT, "tile/entries/5", "tile/entries/000.p/0"]:
            status, headers, body = get(f"{svc.url}/ledger/{path}", token)
            assert status == 404, path
            assert headers["Content-Type"].startswith("application/problem+json"), path
            assert json.loads(body)["status"] == 404, path
