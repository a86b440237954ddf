"""The redaction editor in headless Chromium: draw a moving box on the proxy, mark a mute,
submit, and the service makes the redacted copy the spec describes (real service, real
ffmpeg, the system's Chromium). A spec the API refuses shows each field at fault."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.console_fixtures import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_FLAGS,
    TIMEZONE,
    Seeded,
    seeded_console,
)

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed (pip install -e .[dev])"
)
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (make test installs it)"),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with seeded_console(pg_admin_dsn, tmp_path_factory.mktemp("console-redact")) as s:
        yield s


@pytest.fixture
def page(world: Seeded, tmp_path: Path) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, locale="en-GB", timezone_id=TIMEZONE,
            viewport={"width": 1280, "height": 900},
        )  # fmt: skip
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{world.svc.url}/console/")
            page.fill("#token", world.tokens["reviewer"])
            page.click("form.signin button[type=submit]")
            page.wait_for_selector("#signout:not([hidden])")
            yield page
            assert errors == []
        finally:
            context.close()


def _seek(page: Any, seconds: float) -> None:
    page.evaluate(
        """s => new Promise(done => { const v = document.getElementById('redact-video');
        v.addEventListener('seeked', () => done(), {once: true}); v.currentTime = s; })""",
        seconds,
    )


def _drag(page: Any, fx: float, fy: float, tx: float, ty: float) -> None:
    """Drag over the canvas from (fx, fy) to (tx, ty), fractions of its displayed size."""
    r = page.locator("#redact-canvas").bounding_box()
    page.mouse.move(r["x"] + fx * r["width"], r["y"] + fy * r["height"])
    page.mouse.down()
    page.mouse.move(r["x"] + tx * r["width"], r["y"] + ty * r["height"], steps=4)
    page.mouse.up()


def _get(world: Seeded, path: str) -> Any:
    status, _, body = world.get(path, "reviewer")
    assert status == 200, (path, status, body[:200])
    return json.loads(body)


def test_reviewer_draws_a_moving_box_marks_a_mute_and_gets_the_copy(
    page: Any, world: Seeded
) -> None:
    page.evaluate("h => { window.location.hash = h; }", f"#/evidence/{world.e1}")
    page.click("#redact-link")
    page.wait_for_selector("#redact-video[data-loaded='1']")
    assert page.locator("#redact-canvas").get_attribute("width") == "320"  # original pixels
    _seek(page, 0.5)
    _drag(page, 0.1, 0.1, 0.3, 0.35)
    _seek(page, 2.0)
    _drag(page, 0.5, 0.4, 0.7, 0.65)
    assert page.locator("#redact-tracks li").count() == 1
    assert "2" in page.locator("#redact-tracks li").inner_text()
    _seek(page, 1.0)
    page.click("#redact-mute-start")
    _seek(page, 1.5)
    page.click("#redact-mute-end")
    assert page.locator("#redact-mute-ranges li").count() == 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "redact-editor.png"), full_page=True)
    page.select_option("#redact-effect", "pixelate")
    page.click("#redact-submit")
    page.wait_for_selector("#redact-result[data-state='done']", timeout=120_000)
    job = _get(world, f"/v1/redactions/{page.locator('#redact-result').get_attribute('data-job')}")
    spec = job["spec"]
    (track,) = spec["boxes"]
    frames = track["keyframes"]
    assert [k["t_ms"] for k in frames] == [500, 2000]
    assert 20 <= frames[0]["x"] <= 45 and 55 <= frames[0]["w"] <= 75  # 10-30 % of 320
    assert 150 <= frames[1]["x"] <= 170 and 85 <= frames[1]["y"] <= 110  # 50 %, 40 % of 240
    assert spec["mute_ranges"] == [{"start_ms": 1000, "end_ms": 1500}]
    assert spec["effect"] == "pixelate"
    detail = _get(world, f"/v1/evidence/{world.e1}")
    assert job["rendition_id"] in {r["id"] for r in detail["renditions"] if r["kind"] == "redacted"}


def test_reviewer_moves_a_box_by_dragging_it_and_marks_a_tone(page: Any, world: Seeded) -> None:
    """A box shown at the current time is dragged, not redrawn: the moved box becomes a
    keyframe of the same track at that time, its size kept; a tone range is marked too."""
    page.evaluate("h => { window.location.hash = h; }", f"#/evidence/{world.e1}/redact")
    page.wait_for_selector("#redact-video[data-loaded='1']")
    _seek(page, 0.5)
    _drag(page, 0.1, 0.1, 0.3, 0.35)  # drawn: about x 32-96, y 24-84
    _seek(page, 2.0)  # the lone keyframe's box still shows here
    _drag(page, 0.2, 0.2, 0.6, 0.5)  # grabbed inside it, moved by 40 % and 30 %
    assert page.locator("#redact-tracks li").count() == 1  # moved, no new track
    assert "2" in page.locator("#redact-tracks li").inner_text()
    _seek(page, 1.0)
    page.click("#redact-tone-start")
    _seek(page, 1.5)
    page.click("#redact-tone-end")
    assert page.locator("#redact-tone-ranges li").count() == 1
    page.click("#redact-submit")
    page.wait_for_selector("#redact-result[data-state='done']", timeout=120_000)
    job = _get(world, f"/v1/redactions/{page.locator('#redact-result').get_attribute('data-job')}")
    (track,) = job["spec"]["boxes"]
    first, last = track["keyframes"]
    assert (first["t_ms"], last["t_ms"]) == (500, 2000)
    assert (last["w"], last["h"]) == (first["w"], first["h"])  # moved, not resized
    assert 120 <= last["x"] - first["x"] <= 136  # 40 % of 320 = 128
    assert 64 <= last["y"] - first["y"] <= 80  # 30 % of 240 = 72
    assert job["spec"]["tone_ranges"] == [{"start_ms": 1000, "end_ms": 1500}]


def test_a_refused_spec_shows_each_field(page: Any, world: Seeded) -> None:
    page.evaluate("h => { window.location.hash = h; }", f"#/evidence/{world.e1}/redact")
    page.wait_for_selector("#redact-video[data-loaded='1']")
    page.click("#redact-submit")  # nothing drawn: the spec hides nothing
    page.wait_for_selector("#redact-result[data-state='refused']")
    assert "boxes" in page.locator("#redact-errors").inner_text()
    time.sleep(0)  # keep the page open until the assertions above ran
