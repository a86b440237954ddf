"""Suggested boxes: a face drawn by the test, moving across a clip, is found and tracked.

Needs the optional detector (opencv-python-headless, the ``detect`` extra); skipped without it.
The face is drawn with OpenCV's own primitives (head, hair, brows, eyes, nose, mouth), so no
picture of anyone is needed; the clip is encoded with ffmpeg and searched through the sandbox.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ingest.media import probe
from ingest.media.suggest import SAMPLE_FPS, Detection, available, suggest, track
from tests.media.media_tools import FFMPEG
from vault.redaction.spec import Frame, box_at, parse_spec

W, H, FPS, SECONDS, S = 640, 360, 25, 4, 110


def face_at(t: float) -> tuple[int, int]:
    """The drawn face's centre at ``t`` seconds: left to right, a little down."""
    return int(150 + 80 * t), int(170 + 8 * t)


def draw(cv2: Any, np: Any, t: float) -> Any:
    img = np.full((H, W), 110, np.uint8)
    cx, cy = face_at(t)
    s = S
    cv2.ellipse(img, (cx, cy), (int(0.42 * s), int(0.55 * s)), 0, 0, 360, 185, -1)
    cv2.ellipse(img, (cx, cy - int(0.42 * s)), (int(0.45 * s), int(0.25 * s)), 0, 180, 360, 40, -1)
    for dx in (-1, 1):
        ex, ey = cx + dx * int(0.18 * s), cy - int(0.1 * s)
        cv2.ellipse(
            img, (ex, ey - int(0.09 * s)), (int(0.12 * s), int(0.03 * s)), 0, 180, 360, 50, -1
        )
        cv2.ellipse(img, (ex, ey), (int(0.09 * s), int(0.045 * s)), 0, 0, 360, 60, -1)
        cv2.circle(img, (ex, ey), int(0.03 * s), 20, -1)
    cv2.ellipse(img, (cx, cy + int(0.12 * s)), (int(0.05 * s), int(0.03 * s)), 0, 0, 360, 120, -1)
    cv2.ellipse(img, (cx, cy + int(0.28 * s)), (int(0.14 * s), int(0.04 * s)), 0, 0, 360, 70, -1)
    return cv2.GaussianBlur(img, (0, 0), s * 0.02)


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cv2 = pytest.importorskip("cv2")
    np = pytest.importorskip("numpy")
    if not available():
        pytest.skip("the detector's cascades are not installed")
    path = tmp_path_factory.mktemp("suggest") / "face.mp4"
    frames = b"".join(draw(cv2, np, i / FPS).tobytes() for i in range(FPS * SECONDS))
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{W}x{H}",
         "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
         "-pix_fmt", "yuv420p", str(path)],
        input=frames, check=True,
    )  # fmt: skip
    return path


def test_the_face_is_suggested_at_nine_tenths_of_the_frames_at_least(face_clip: Path) -> None:
    async def go() -> list[dict[str, Any]]:
        return await suggest(face_clip, await probe(face_clip))

    tracks = asyncio.run(go())
    faces = [t for t in tracks if t["label"].startswith("face")]
    assert faces, tracks
    # the suggestions make a valid spec for this recording as they are
    spec = parse_spec({"version": 1, "boxes": tracks}, Frame(W, H, SECONDS * 1000))
    times = [i * 1000 // SAMPLE_FPS for i in range(SECONDS * SAMPLE_FPS)]
    covered = 0
    for t_ms in times:
        cx, cy = face_at(t_ms / 1000)
        eyes_to_mouth = (cx - 0.3 * S, cy - 0.25 * S, cx + 0.3 * S, cy + 0.35 * S)
        for track_ in spec.boxes:
            box = box_at(track_, t_ms)
            if (
                box
                and box.x <= eyes_to_mouth[0]
                and box.y <= eyes_to_mouth[1]
                and (box.x + box.w >= eyes_to_mouth[2] and box.y + box.h >= eyes_to_mouth[3])
            ):
                covered += 1
                break
    assert covered >= 0.9 * len(times), (covered, len(times), tracks)


def test_tracks_follow_overlapping_boxes_and_drop_one_sample_flukes() -> None:
    def d(t: int, x: int, kind: str = "face") -> Detection:
        return Detection(t, kind, x, 10, 40, 40)

    frames = [
        [d(0, 0), d(0, 300)],
        [d(200, 5), d(200, 200, "plate")],
        [],
        [d(600, 12)],
        [d(800, 15), d(800, 205, "plate")],
    ]
    tracks = track(frames)
    assert [(t.kind, [b.t_ms for b in t.boxes]) for t in tracks] == [
        ("face", [0, 200, 600, 800]),
        ("plate", [200, 800]),
    ]
