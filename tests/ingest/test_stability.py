"""ingest.stability: pure settle logic without I/O; writer detection with real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ingest.stability import (
    Observation,
    StabilityTracker,
    has_writer,
    marker_satisfied,
    open_for_writing,
    settled,
)

linux_proc = pytest.mark.skipif(not Path("/proc/self/fdinfo").is_dir(), reason="needs /proc")


def obs(t: float, size: int = 10, mtime: int = 1, inode: int = 7) -> Observation:
    return Observation(size=size, mtime_ns=mtime, inode=inode, seen_at=t)


def test_ready_only_after_settle_time_unchanged() -> None:
    tr: StabilityTracker[str] = StabilityTracker(settle_s=5)
    assert not tr.observe("a", obs(0))  # first sighting never ready
    assert not tr.observe("a", obs(4.9))
    assert tr.observe("a", obs(5.0))
    assert tr.observe("a", obs(60))


@pytest.mark.parametrize(
    "changed", [obs(3, size=11), obs(3, mtime=2), obs(3, inode=8)], ids=["size", "mtime", "inode"]
)
def test_any_change_restarts_the_wait(changed: Observation) -> None:
    tr: StabilityTracker[str] = StabilityTracker(settle_s=5)
    tr.observe("a", obs(0))
    assert not tr.observe("a", changed)
    assert not tr.observe("a", obs(7.9, changed.size, changed.mtime_ns, changed.inode))
    assert tr.observe("a", obs(8.0, changed.size, changed.mtime_ns, changed.inode))


def test_clock_going_backwards_restarts() -> None:
    tr: StabilityTracker[str] = StabilityTracker(settle_s=5)
    tr.observe("a", obs(100))
    assert not tr.observe("a", obs(50))
    assert not tr.observe("a", obs(54))
    assert tr.observe("a", obs(55))
    tr.observe("b", obs(0))
    tr.observe("b", obs(30))
    assert not tr.observe("b", obs(10))  # behind the last look, though after the first


def test_keys_are_independent_and_forgettable() -> None:
    tr: StabilityTracker[str] = StabilityTracker(settle_s=1)
    tr.observe("a", obs(0))
    tr.observe("b", obs(0.5))
    assert tr.observe("a", obs(1)) and not tr.observe("b", obs(1))
    assert len(tr) == 2 and "a" in tr
    tr.forget("a")
    tr.forget("never seen")
    assert "a" not in tr and not tr.observe("a", obs(10))


def test_zero_settle_still_needs_two_observations() -> None:
    tr: StabilityTracker[str] = StabilityTracker(settle_s=0)
    assert not tr.observe("a", obs(0))
    assert tr.observe("a", obs(0))


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_bad_settle_rejected(bad: float) -> None:
    with pytest.raises(ValueError):
        StabilityTracker(settle_s=bad)


def test_settled_and_from_stat(tmp_path: Path) -> None:
    assert settled(obs(0), obs(2), 2) and not settled(obs(0), obs(1.9), 2)
    assert not settled(obs(0), obs(9, size=1), 2)
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    o = Observation.of(p.stat(), 3.0)
    assert (o.size, o.inode, o.seen_at) == (3, p.stat().st_ino, 3.0)


states = st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 1))


@example(settle=0.0, steps=[(0.0, (0, 0, 0)), (3.0, (0, 0, 0)), (-2.0, (0, 0, 0))])
@given(
    settle=st.floats(0, 10),
    steps=st.lists(st.tuples(st.floats(-1, 5), states), min_size=1, max_size=30),
)
def test_ready_implies_unchanged_for_settle(
    settle: float, steps: list[tuple[float, tuple[int, int, int]]]
) -> None:
    tr: StabilityTracker[str] = StabilityTracker(settle)
    history: list[Observation] = []
    t = 0.0
    for dt, (size, mtime, inode) in steps:
        t += dt
        o = obs(t, size, mtime, inode)
        ready = tr.observe("f", o)
        history.append(o)
        # the run of identical, time-ordered observations ending here
        run = [o]
        for prev in reversed(history[:-1]):
            if not prev.same_state(o) or prev.seen_at > run[-1].seen_at:
                break
            run.append(prev)
        assert ready == (len(run) > 1 and o.seen_at - run[-1].seen_at >= settle)


@contextmanager
def holder(path: Path, flags: str) -> Iterator[subprocess.Popen[str]]:
    """A separate process holding ``path`` open with ``os.<flags>`` until the block ends."""
    code = (
        "import os, sys\n"
        f"fd = os.open(sys.argv[1], {flags})\n"
        "print('open', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "open\n"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


@linux_proc
@pytest.mark.parametrize(
    ("flags", "writing"),
    [
        ("os.O_WRONLY | os.O_APPEND", True),
        ("os.O_RDWR", True),
        ("os.O_RDONLY", False),
    ],
)
def test_has_writer_sees_another_process(tmp_path: Path, flags: str, writing: bool) -> None:
    video = tmp_path / "VID0001.MP4"
    video.write_bytes(b"partial")
    assert not has_writer(video)
    with holder(video, flags):
        assert has_writer(video) is writing
        assert has_writer(os.fsencode(video)) is writing
        st_ = video.stat()
        assert ((st_.st_dev, st_.st_ino) in open_for_writing()) is writing
        moved = tmp_path / "renamed.MP4"
        video.rename(moved)  # still the same open file
        assert has_writer(moved) is writing
        moved.rename(video)
    assert not has_writer(video)


def test_has_writer_best_effort_without_proc(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    with video.open("ab"):
        assert not has_writer(video, proc=tmp_path / "no-proc")
        assert open_for_writing(proc=tmp_path / "no-proc") == set()
    assert not has_writer(tmp_path / "missing.mp4")


def test_marker(tmp_path: Path) -> None:
    video = tmp_path / "VID0001.MP4"
    video.write_bytes(b"x")
    assert marker_satisfied(video, None)
    assert not marker_satisfied(video, ".done")
    (tmp_path / "VID0001.MP4.done").write_bytes(b"")
    assert marker_satisfied(video, ".done")
    assert marker_satisfied(str(video), ".done")
    (tmp_path / "VID0001.MP4.ok").symlink_to(tmp_path / "VID0001.MP4.done")
    assert not marker_satisfied(video, ".ok")  # links are never followed
    raw = os.fsencode(tmp_path) + b"/\xff\xfe.mp4"
    with open(raw + b".done", "wb"):
        pass
    assert marker_satisfied(raw, ".done")
    for bad in ["", "/x", "a\0"]:
        with pytest.raises(ValueError):
            marker_satisfied(video, bad)
