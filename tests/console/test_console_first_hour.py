"""The console's first hour in headless Chromium: case titles in the list, step types offered
from the configuration, denial reasons in Chinese, no player or download button for an admin
who cannot use them, and footage linked to no case reachable from its own view."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.console_fixtures import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    TIMEZONE,
    Seeded,
    seeded_console,
)
from vault.config_events import DEFAULT_RECORDING_REQUIRED

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed (pip install -e .[dev])"
)
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (make test installs it)"),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with seeded_console(pg_admin_dsn, tmp_path_factory.mktemp("console1h")) as s:
        # a third recording, linked to no case
        shutil.copy(s.foreign, s.svc.data / "docks" / "dock-01" / "foreign.mp4")
        deadline = time.monotonic() + 120
        while True:
            status, _, body = s.get("/v1/evidence?unlinked=true", who="admin")
            items = json.loads(body)["items"] if status == 200 else []
            if items and items[0]["media_status"] == "ready":
                break
            assert time.monotonic() < deadline, items
            time.sleep(0.3)
        yield s


def unlinked_id(world: Seeded) -> str:
    _, _, body = world.get("/v1/evidence?unlinked=true", who="admin")
    (item,) = json.loads(body)["items"]
    return str(item["id"])


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture
def page(playwright: Any, world: Seeded, tmp_path: Path) -> Iterator[Any]:
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_FLAGS,
        locale="zh-CN",
        timezone_id=TIMEZONE,
        viewport={"width": 1280, "height": 900},
    )
    try:
        p = context.pages[0] if context.pages else context.new_page()
        p.set_default_timeout(20_000)
        errors: list[str] = []
        p.on("pageerror", lambda e: errors.append(str(e)))
        p.errors = errors
        yield p
    finally:
        context.close()


def sign_in(page: Any, world: Seeded, who: str, hash_: str = "#/cases") -> None:
    page.goto(f"{world.svc.url}/console/{hash_}")
    page.fill("#token", world.tokens[who])
    page.click("form.signin button[type=submit]")
    page.wait_for_selector("#signout:not([hidden])")


def test_case_list_shows_titles(page: Any, world: Seeded) -> None:
    sign_in(page, world, "legal")
    page.wait_for_selector("#case-table")
    titles = page.locator("tr[data-case] td.case-title").all_inner_texts()
    assert titles == ["某市场监管局现场检查案", "涉密专案"]
    page.fill("#case-search", "涉密")
    assert page.locator("tr[data-case='C1']").is_hidden()
    assert page.locator("tr[data-case='CS']").is_visible()
    assert page.errors == []


def test_step_type_is_chosen_from_the_configured_list(page: Any, world: Seeded) -> None:
    sign_in(page, world, "reviewer", "#/cases/C1/integrity")
    page.wait_for_selector("#type-1 option[value='__other']", state="attached")
    values = page.locator("#type-1 option").evaluate_all("os => os.map(o => o.value)")
    assert values == ["", *DEFAULT_RECORDING_REQUIRED, "__other"]
    assert page.locator("#type-1").evaluate("e => e.tagName") == "SELECT"
    # a typo can no longer pass as a type: "other" must be chosen, then typed
    assert page.locator("#other-1").is_hidden()
    page.select_option("#type-1", "__other")
    assert page.locator("#other-1").is_visible()
    page.fill("#other-1", "案卷归档")
    page.fill("#start-1", "2026-03-01T08:59:58")
    page.fill("#end-1", "2026-03-01T09:00:10")
    page.click("#run-coverage")
    page.wait_for_selector("#coverage-verdict")
    row = page.locator("#coverage-out tr[data-step='0']").inner_text()
    assert "案卷归档" in row and "否" in row  # not a type that requires recording
    page.select_option("#type-1", "听证")
    page.click("#run-coverage")
    page.wait_for_function(
        "() => document.querySelector(\"#coverage-out tr[data-step='0']\")"
        ".innerText.includes('听证')"
    )
    assert "是" in page.locator("#coverage-out tr[data-step='0']").inner_text()
    assert page.errors == []


def test_denial_reason_is_in_chinese(page: Any, world: Seeded) -> None:
    sign_in(page, world, "reviewer", "#/cases/C1/integrity")
    page.click("#export-start")
    page.wait_for_function(
        "() => document.getElementById('export-status').textContent.includes('导出失败')"
    )
    text = page.locator("#export-status").inner_text()
    assert "导出需要法制审核人员角色" in text and "请联系管理员" in text, text
    assert "required" not in text and "ask an administrator" not in text
    # the admin's hint, and a need-to-know denial with its command, the same way
    translated = page.evaluate(
        """async () => {
            const m = await import('/console/static/i18n.js');
            return [
              m.reason('role case_system or legal_reviewer or officer required for download: '
                + 'admin manages principals and does not view footage: add a reviewer (`x`)'),
              m.reason('stream requires need-to-know: assignment to one of its cases: ask an '
                + 'administrator to assign you (`evault principal assign bob CASE`)'),
              m.reason('Not found: no such case'),
              m.reason('something new the console does not know'),
            ];
        }"""
    )
    assert translated[0].startswith("下载需要案件系统 或 法制审核人员 或 执法人员角色。管理员负责")
    assert translated[1] == (
        "播放须知悉必要：您须被分配到其所属的某一案件。"
        "请管理员为您分配案件（`evault principal assign bob CASE`）"
    )
    assert translated[2] == "未找到：没有此案件（或您无权查看）"
    assert translated[3] == "something new the console does not know"


def test_admin_gets_no_player_or_download_it_cannot_use(page: Any, world: Seeded) -> None:
    sign_in(page, world, "admin", f"#/evidence/{world.e1}")
    page.wait_for_selector("#no-player")
    assert "不能播放" in page.locator("#no-player").inner_text()
    assert page.locator("video").count() == 0
    assert page.locator("#download-original").count() == 0
    # the seeded admin is also an auditor (the default configuration): it may verify
    assert page.locator("#download-proof").count() == 1
    assert "DEV01" in page.locator("main").inner_text()  # the metadata is still shown
    # a legal reviewer gets both
    page.click("#signout")
    page.fill("#token", world.tokens["legal"])
    page.click("form.signin button[type=submit]")
    page.wait_for_selector("#signout:not([hidden])")
    page.evaluate(f"() => {{ window.location.hash = '#/evidence/{world.e1}'; }}")
    page.wait_for_selector("video[data-loaded='1']")
    assert page.locator("#download-original").count() == 1
    assert page.errors == []


def test_unlinked_footage_is_reachable(page: Any, world: Seeded) -> None:
    item = unlinked_id(world)
    sign_in(page, world, "admin")
    page.click("#nav a[data-nav='unlinked']")
    page.wait_for_selector("#unlinked-table")
    rows = page.locator("tr[data-evidence]").evaluate_all("rs => rs.map(r => r.dataset.evidence)")
    assert rows == [item]  # E1 and E2 are in cases
    page.click(f"tr[data-evidence='{item}'] a.button")
    page.wait_for_selector("#no-player")
    assert item in page.locator("main").inner_text()
    # a reviewer's unlinked view is empty: it needs a case to see footage at all
    page.click("#signout")
    page.fill("#token", world.tokens["reviewer"])
    page.click("form.signin button[type=submit]")
    page.wait_for_selector("#signout:not([hidden])")
    page.evaluate("() => { window.location.hash = '#/unlinked'; }")
    page.wait_for_selector("#unlinked-none")
    assert page.errors == []


def test_a_link_that_raised_the_label_is_announced(page: Any, world: Seeded) -> None:
    # E2 was internal; linking it to the secret case CS raised it (console_fixtures)
    sign_in(page, world, "legal", f"#/evidence/{world.e2}")
    page.wait_for_selector("video[data-loaded='1']")  # one playback: one access entry
    notice = page.wait_for_selector("p.label-raised")
    text = notice.inner_text()
    assert "CS" in text and "内部" in text and "机密" in text, text
    assert "无法再看到" in text
    # the playback's access is one row, marked as the session's; come back to read it
    page.evaluate("() => { window.location.hash = '#/cases'; }")
    page.wait_for_selector("#case-table")
    page.evaluate(f"() => {{ window.location.hash = '#/evidence/{world.e2}'; }}")
    page.wait_for_selector("table.timeline")
    sessions = page.locator("table.timeline span.session").all_inner_texts()
    assert sessions and all("播放会话" in s for s in sessions), sessions
    # the ledger's real denial reasons read in Chinese too
    reasons = page.evaluate(
        """async () => {
            const m = await import('/console/static/i18n.js');
            return [m.reason('clearance internal below label secret+personal_privacy'),
                    m.reason('not assigned to any of its cases'),
                    m.reason('no such evidence')];
        }"""
    )
    assert reasons[0] == "密级许可为内部，低于密级机密 · 个人隐私", reasons
    assert reasons[1] == "未分配到其所属的任何案件"
    assert reasons[2].startswith("不存在此")
    assert page.errors == []
