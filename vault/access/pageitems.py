"""Listed items verified once per process: an evidence row together with its link history.

A listing selects, per item, the evidence row and its whole link history with the linked cases'
rows (``filters.history_column``), and verifies all of them before deciding on the item: the
evidence row's tag, each link row's and case row's tag, each case row's currency (the access
mirror's floor), then the fold of the history into the current links. ``verify_items`` does
that for the rows of a page and returns, per item that verifies, what the decision needs.

Most pages are read again and again, unchanged. ``ItemMemo`` remembers, per evidence row tag, a
keyed fingerprint (``HostMac.fingerprint``) of everything the item was selected as, and what its
verification derived: an item selected again with the same fingerprint is the same verified
item. Only what can change without any selected value changing is checked again on every read:
each linked case's floor in the access mirror (a case row put back to an earlier genuine value
carries the same values it once had).

Guarantees:

- A derived item is returned only for a row whose every selected value (evidence columns, tag,
  history with the cases' rows and their tags) has the fingerprint of a row that verified in
  full in this process, and whose cases are current in the mirror as of this read.
- A row that does not verify is left out and raises the alarm (``evidence.alarm`` /
  ``AccessState.alarm``), as the full path always did; it is never remembered.
- Bounded: at most ``ITEMS_MAX`` items per process (the oldest quarter is forgotten beyond it).
"""

from __future__ import annotations

import itertools
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vault import evidence as evrows
from vault.access import state as access_state
from vault.access.filters import LINK_CASE, LINK_CASE_IDX, fold_history, label_of
from vault.db import Db
from vault.keys.hostmac import HostMac
from vault.policy.decide import Target, effective_label
from vault.policy.labels import Label

__all__ = ["ITEMS_MAX", "Item", "ItemMemo", "verify_items"]

ITEMS_MAX = 1 << 17
"""Items remembered per process by ``ItemMemo``."""


@dataclass(frozen=True, slots=True)
class Item:
    """What the verified rows of one listed item say.

    ``links``: the cases it is currently linked to, with their labels, sorted by case id;
    ``target``: the item as an ``evidence`` target (effective label, those cases, its officer);
    ``floors``: (case id, index of the case row) for every case in its history, re-checked
    against the mirror on every read."""

    links: tuple[tuple[str, Label], ...]
    target: Target
    floors: tuple[tuple[str, int], ...]

    @property
    def linked(self) -> dict[str, Label]:
        return dict(self.links)


class ItemMemo:
    """Verified items by evidence row tag (see the module docstring); one per access state."""

    def __init__(self, mac: HostMac) -> None:
        self._mac = mac
        self._items: dict[bytes, tuple[bytes, Item]] = {}

    def fingerprint(self, row: Sequence[Any], history_at: int) -> bytes | None:
        """The keyed fingerprint of a selected row whose column ``history_at`` is the history
        (an array of records); None if it has a value no fingerprint is made of."""
        history = tuple(map(tuple, row[history_at] or ()))
        return self._mac.fingerprint((*row[:history_at], history, *row[history_at + 1 :]))

    def get(self, tag: bytes | None, fingerprint: bytes | None) -> Item | None:
        if tag is None or fingerprint is None:
            return None
        found = self._items.get(tag)
        if found is None or found[0] != fingerprint:
            return None
        return found[1]

    def put(self, tag: bytes, fingerprint: bytes, item: Item) -> None:
        items = self._items
        if len(items) >= ITEMS_MAX:
            for old in list(itertools.islice(items, ITEMS_MAX // 4)):
                del items[old]
        items[bytes(tag)] = (fingerprint, item)


_MEMOS: weakref.WeakKeyDictionary[access_state.AccessState, ItemMemo] = weakref.WeakKeyDictionary()


def _memo(state: access_state.AccessState) -> ItemMemo:
    """The memo of ``state`` (one per access state: its key, its database)."""
    memo = _MEMOS.get(state)
    if memo is None:
        memo = _MEMOS[state] = ItemMemo(state.mac)
    return memo


def _current(state: access_state.AccessState, item: Item) -> bool:
    floor = state.mirror.floor
    return all(idx >= floor("cases", (case,)) for case, idx in item.floors)


async def verify_items(
    db: Db, mac: HostMac, rows: Sequence[Any], history_at: int
) -> list[tuple[Any, Item]]:
    """The rows of ``rows`` (evidence rows selected with ``filters.history_column`` at
    ``history_at`` and the tag columns) that verify, in order, each with its ``Item``; the
    others are left out and raise the alarm. ``db``: where the alarm's event is written and the
    mirror refreshed from (``access_state.ready``)."""
    state = await access_state.ready(db)
    memo = _memo(state)
    found: list[Item | None] = []
    prints: list[bytes | None] = []
    misses: list[Any] = []
    for r in rows:
        fp = memo.fingerprint(r, history_at)
        item = memo.get(r["tag"], fp)
        if item is not None and not _current(state, item):
            item = None
        found.append(item)
        prints.append(fp)
        if item is None:
            misses.append(r)
    if misses:
        fresh = await _verify(db, mac, misses, history_at)
        for i, r in enumerate(rows):
            if found[i] is None and r["id"] in fresh:
                item = found[i] = fresh[r["id"]]
                fp = prints[i]
                if fp is not None and r["tag"] is not None:
                    memo.put(r["tag"], fp, item)
    return [(r, item) for r, item in zip(rows, found, strict=True) if item is not None]


async def _verify(
    db: Db, mac: HostMac, rows: Sequence[Any], history_at: int
) -> dict[uuid.UUID, Item]:
    """The full path: each row's tag (``evidence.check_page``), then its history's rows and
    fold (``filters.fold_history``); items whose rows all verify, by evidence id."""
    good = await evrows.check_page(db, mac, rows, remember=False)
    if not good:
        return {}
    links, _ever, bad = await fold_history(db, {r["id"]: r[history_at] for r in good})
    out: dict[uuid.UUID, Item] = {}
    for r in good:
        eid = r["id"]
        if eid in bad:
            continue
        cases = links[eid]
        own = label_of(r["label_level"], r["label_caveats"])
        floors = {h[LINK_CASE]: h[LINK_CASE_IDX] for h in r[history_at] or ()}
        out[eid] = Item(
            links=tuple(sorted(cases.items())),
            target=Target(
                "evidence", effective_label(own, cases.values()), frozenset(cases), r["officer_id"]
            ),
            floors=tuple(sorted(floors.items())),
        )
    return out
