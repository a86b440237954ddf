"""The reviewer console end to end in headless Chromium (the system's package, driven by
Playwright for Python; no browser is downloaded), against a running `evault serve` with
seeded principals, cases and real footage. Screenshots go to test-artifacts/console/."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from verify.note import parse_vkey
from verify.report_note import verify_report_response
from verify.tlogproof import parse_tlog_proof

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed (pip install -e .[dev])"
)
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (make test installs it)"),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]
NOT_FOUND_LOAD = re.compile(r"^Failed to load resource: the server responded with a status of 404")


@dataclass
class Console:
    page: Any
    world: Seeded
    errors: list[str] = field(default_factory=list)

    def open(self, hash_: str = "") -> Any:
        return self.page.goto(f"{self.world.svc.url}/console/{hash_}")

    def go(self, hash_: str) -> None:
        self.page.evaluate("h => { window.location.hash = h; }", hash_)

    def sign_in(self, who: str) -> None:
        self.page.fill("#token", self.world.tokens[who])
        self.page.click("form.signin button[type=submit]")
        self.page.wait_for_selector("#signout:not([hidden])")

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def download(self, selector: str) -> bytes:
        with self.page.expect_download() as info:
            self.page.click(selector)
        return Path(info.value.path()).read_bytes()


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with seeded_console(pg_admin_dsn, tmp_path_factory.mktemp("console")) as s:
        yield s


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        yield p


@contextmanager
def _browser(playwright: Any, profile: Path, world: Seeded, locale: str) -> Iterator[Console]:
    context = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_FLAGS,
        locale=locale,
        timezone_id=TIMEZONE,
        viewport={"width": 1280, "height": 900},
        accept_downloads=True,
    )
    try:
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(20_000)
        console = Console(page, world)
        page.on("console", lambda m: m.type == "error" and console.errors.append(m.text))
        page.on("pageerror", lambda e: console.errors.append(f"page error: {e}"))
        yield console
    finally:
        context.close()


@pytest.fixture
def browser(playwright: Any, world: Seeded, tmp_path: Path) -> Iterator[Console]:
    with _browser(playwright, tmp_path / "profile", world, "zh-CN") as c:
        yield c


def test_reviewer_reviews_a_case(browser: Console, world: Seeded) -> None:
    c, page = browser, browser.page
    response = c.open()
    assert response.headers["content-security-policy"].startswith("default-src 'self';")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    c.sign_in("reviewer")
    page.wait_for_selector("#case-table")
    assert page.locator("tr[data-case]").evaluate_all("rs => rs.map(r => r.dataset.case)") == ["C1"]
    page.fill("#case-search", "no-such-case")
    assert page.locator("tr[data-case='C1']").is_hidden()
    page.fill("#case-search", "c1")
    assert page.locator("tr[data-case='C1']").is_visible()
    c.shot("01-cases")

    page.click("tr[data-case='C1'] a")
    page.wait_for_selector(f"tr[data-evidence='{world.e1}'] img.thumb")
    assert page.locator("h1").inner_text() == "某市场监管局现场检查案"
    row = page.locator(f"tr[data-evidence='{world.e1}']")
    assert row.locator("img.thumb").evaluate("i => i.complete && i.naturalWidth > 0")
    cells = row.locator("td").all_inner_texts()
    assert cells[1:5] == ["DEV01", "OFF1", "2026-03-01 09:00:00 GMT+8", "0:04"]
    assert "内部" in cells[5] and "可播放" in cells[6] and "正常" in cells[7]
    page.click(f"[data-timeline='{world.e1}']")
    timeline = page.locator(f"#tl-{world.e1} table")
    timeline.wait_for()
    kinds = timeline.locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert kinds[0] == "采集入库" and "生成衍生文件" in kinds and "关联案件" in kinds
    c.shot("02-case")

    page.click(f"tr[data-evidence='{world.e1}'] a.button")
    page.wait_for_selector("video[data-loaded='1']")
    played = page.evaluate(
        """async () => {
            const v = document.getElementById('proxy-video');
            v.muted = true;
            await v.play();
            await new Promise((r) => setTimeout(r, 1200));
            v.pause();
            return v.currentTime;
        }"""
    )
    assert played > 0.5, played
    page.wait_for_selector("#timeline table")
    proof = c.download("#download-proof").decode()
    assert parse_tlog_proof(proof).index >= 0
    c.shot("03-evidence")

    c.go("#/cases/C1/integrity")
    page.click("#run-report")
    page.wait_for_selector("#verdict.ok")
    assert page.locator("#report-out tr[data-evidence]").count() == 1
    archived = c.download("#download-report")
    report = verify_report_response(archived, parse_vkey(world.vkey))
    assert report["verdict"] == "ok" and report["case_id"] == "C1"
    assert [e["evidence_id"] for e in report["evidence"]] == [world.e1]
    page.select_option("#type-1", "现场检查")
    page.fill("#start-1", "2026-03-01T08:59:58")
    page.fill("#end-1", "2026-03-01T09:00:10")
    page.click("#run-coverage")
    page.wait_for_selector("#coverage-verdict")
    step = page.locator("#coverage-out tr[data-step='0']").inner_text()
    assert "部分覆盖" in step and world.e1[:8] in step
    c.shot("04-integrity")

    page.click("#nav a[data-nav='verify']")
    page.set_input_files("#verify-file", str(world.held))
    page.wait_for_selector("#verify-result[data-held='true']")
    assert page.locator("#verify-progress").evaluate("p => p.value") == 100
    assert page.locator(f"#verify-result tr[data-evidence='{world.e1}']").count() == 1
    held_proof = c.download(f"[data-proof='{world.e1}']").decode()
    assert parse_tlog_proof(held_proof).index == parse_tlog_proof(proof).index
    c.shot("05-verify-held")
    page.set_input_files("#verify-file", str(world.foreign))
    page.wait_for_selector("#verify-result[data-held='false']")
    assert "未收存" in page.locator("#verify-result h2").inner_text()
    c.shot("06-verify-not-held")
    assert c.errors == []

    page.click("#signout")
    page.wait_for_selector("form.signin")
    c.go("#/cases/C1")
    page.wait_for_selector("form.signin")
    assert page.locator("#case-table, tr[data-evidence]").count() == 0


def test_reviewer_without_clearance_sees_no_trace_of_a_classified_item(
    browser: Console, world: Seeded, tmp_path: Path
) -> None:
    c, page = browser, browser.page
    c.open("#/cases")
    c.sign_in("reviewer")
    page.wait_for_selector("#case-table")
    secrets_ = (world.e2, world.e2[:8], "CS", "涉密专案", "DEV02", "OFF2")

    def no_trace() -> None:
        text = page.locator("main").inner_text() + page.content()
        assert not [s for s in secrets_ if s in text.replace("#/cases/CS", "")]

    no_trace()
    c.go("#/cases/C1")
    page.wait_for_selector(f"tr[data-evidence='{world.e1}'] img.thumb")
    assert page.locator("tr[data-evidence]").count() == 1
    page.click(f"[data-timeline='{world.e1}']")
    page.wait_for_selector(f"#tl-{world.e1} table")
    no_trace()
    c.go("#/cases/C1/integrity")
    page.click("#run-report")
    page.wait_for_selector("#verdict")
    assert page.locator("#report-out tr[data-evidence]").count() == 1
    no_trace()
    assert c.errors == []
    for hash_ in ("#/cases/CS", f"#/evidence/{world.e2}", "#/cases/CS/integrity"):
        c.go(hash_)
        page.wait_for_selector("[data-testid='not-found']")
        no_trace()
    c.shot("07-not-found")
    # Verifying the classified file itself tells this reviewer nothing either (a copy under a
    # neutral name: the page shows the name of the file the reviewer chose).
    copy = tmp_path / "handed-over.mp4"
    shutil.copy(world.held_secret, copy)
    c.go("#/verify")
    page.set_input_files("#verify-file", str(copy))
    page.wait_for_selector("#verify-result[data-held='false']")
    no_trace()
    # The only console errors are the browser's notes on the API's 404 answers.
    assert c.errors and all(NOT_FOUND_LOAD.match(e) for e in c.errors), c.errors


def test_legal_reviewer_in_english_by_keyboard(
    playwright: Any, world: Seeded, tmp_path: Path
) -> None:
    with _browser(playwright, tmp_path / "profile", world, "en-GB") as c:
        page = c.page
        c.open()
        assert page.locator("h1").inner_text() == "登录"  # Chinese by default
        page.focus("#token")
        page.keyboard.type(world.tokens["legal"])
        page.keyboard.press("Enter")
        page.wait_for_selector("#case-table")
        page.focus("#lang")
        page.keyboard.press("Enter")
        page.wait_for_selector("html[lang='en']")
        assert page.locator("#nav a[data-nav='cases']").inner_text() == "Cases"
        assert page.locator("#zone").inner_text() == f"Time zone: {TIMEZONE}"
        page.wait_for_selector("#case-table")
        cases = page.locator("tr[data-case]").evaluate_all("rs => rs.map(r => r.dataset.case)")
        assert cases == ["C1", "CS"]
        link = page.locator("tr[data-case='C1'] a")
        for _ in range(12):  # reach the case link with Tab alone
            page.keyboard.press("Tab")
            if link.evaluate("a => a === document.activeElement"):
                break
        else:
            raise AssertionError("the case link is not reachable with Tab")
        page.keyboard.press("Enter")
        page.wait_for_selector(f"tr[data-evidence='{world.e2}'] img.thumb")
        secret = page.locator(f"tr[data-evidence='{world.e2}']").inner_text()
        assert "Secret" in secret and "2026-03-01 09:30:00 GMT+8" in secret
        assert page.locator("tr[data-evidence]").count() == 2
        c.shot("08-case-en")
        # Export: a job on the server, then a download that verifies offline.
        c.go("#/cases/C1/integrity")
        page.click("#export-start")
        page.wait_for_selector("#export-download", timeout=60_000)
        status = page.locator("#export-status").inner_text()
        assert status.startswith("Ready:") and "object" not in status, status
        with page.expect_download() as download:
            page.click("#export-download")
        zipped = tmp_path / "export.zip"
        download.value.save_as(zipped)
        from verify.package_checks import verify_package

        verdict = verify_package(zipped, parse_vkey(world.vkey))
        assert verdict.verdict == "ok", [f.message for f in verdict.findings]
        c.shot("09-export-en")
        assert json.loads(json.dumps(c.errors)) == []
