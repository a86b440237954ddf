"""In-process cost of encoding an evidence list page: the wire models (``summary_wire`` plus
``msgspec.json.encode``, as ``GET /v1/evidence`` answers now) against the hand-built dicts and
``json.dumps`` it used before (kept here as the baseline), in the same run, on the same items.

Usage: python -m bench.wire [--items 100] [--pages 3000] [--rounds 5]
Prints microseconds per page for each, the best of the rounds, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from api import models as W
from api.routes_evidence import summary_wire
from api.wire import respond
from vault.access.listing import EvidenceSummary
from vault.policy.labels import Caveat, Label, Level


def _items(n: int) -> list[EvidenceSummary]:
    t0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    labels = [Label(Level.INTERNAL), Label(Level.SECRET, frozenset({Caveat.PERSONAL_PRIVACY}))]
    return [
        EvidenceSummary(
            id=str(uuid.uuid4()),
            sha256=uuid.uuid4().hex * 2,
            size=10_000_000 + i,
            file_name=f"DOCK1_{i:06d}.mp4",
            dock_id="dock1",
            device_id=f"dev{i % 50}",
            officer_id=f"O{i % 200}",
            recorded_at=t0 + timedelta(seconds=i, microseconds=i),
            acquired_at=t0 + timedelta(hours=1, seconds=i),
            label=labels[i % 2],
            category="ordinary",
            media_status="ready",
            disposed_at=None,
            cases=(f"C{i % 30}",),
        )
        for i in range(n)
    ]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


_LABELS: dict[Label, Any] = {}  # as the route cached them


def _label_json(label: Label) -> Any:
    out = _LABELS.get(label)
    if out is None:
        out = _LABELS[label] = label.to_json()
    return out


def _before(s: EvidenceSummary) -> dict[str, Any]:
    """The serializer the route had before the wire models."""
    return {
        "id": s.id,
        "sha256": s.sha256,
        "size": s.size,
        "file_name": s.file_name,
        "dock_id": s.dock_id,
        "device_id": s.device_id,
        "officer_id": s.officer_id,
        "recorded_at": _iso(s.recorded_at),
        "acquired_at": _iso(s.acquired_at),
        "label": _label_json(s.label),
        "category": s.category,
        "media_status": s.media_status,
        "disposed_at": _iso(s.disposed_at),
        "cases": list(s.cases),
    }


def old_page(items: list[EvidenceSummary]) -> bytes:
    body = {"items": [_before(s) for s in items], "next_cursor": "abc"}
    return json.dumps(body).encode()  # what aiohttp's web.json_response does


def new_page(items: list[EvidenceSummary]) -> bytes:
    body = respond(W.EvidencePage([summary_wire(s) for s in items], "abc")).body
    assert isinstance(body, bytes)
    return body


def _best(
    fn: Callable[[list[EvidenceSummary]], bytes], items: Any, pages: int, rounds: int
) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(pages):
            fn(items)
        best = min(best, (time.perf_counter() - t) / pages)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--pages", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    items = _items(a.items)
    old, new = json.loads(old_page(items)), json.loads(new_page(items))
    for o, n in zip(old["items"], new["items"], strict=True):  # the same instants and values
        for k in ("recorded_at", "acquired_at"):
            assert datetime.fromisoformat(o.pop(k)) == datetime.fromisoformat(n.pop(k))
        assert o == n
    before = _best(old_page, items, a.pages, a.rounds)
    after = _best(new_page, items, a.pages, a.rounds)
    print(f"{a.items} items per page, best of {a.rounds} x {a.pages} pages")
    print(f"dicts + json.dumps     : {before:8.1f} us/page")
    print(f"Structs + msgspec      : {after:8.1f} us/page")
    print(f"ratio new/old          : {after / before:8.2f}")


if __name__ == "__main__":
    main()
