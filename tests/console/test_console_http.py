"""The console's page and assets over HTTP: a strict CSP on every console response, nothing
inline, nothing from another origin, only shipped files served."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from api.console import ASSETS, STATIC
from tests.console.console_fixtures import Seeded, seeded_console

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


class _Inline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {k for k, _ in attrs}
        if tag == "style" or "style" in names:
            self.problems.append(f"inline style in <{tag}>")
        self.problems += [f"handler {k} on <{tag}>" for k in names if k.startswith("on")]
        if tag == "script":
            src = dict(attrs).get("src")
            if not src:
                self.problems.append("inline <script>")
            else:
                self.scripts.append(src)
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("script with a body")


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with seeded_console(pg_admin_dsn, tmp_path_factory.mktemp("console-http"), media=False) as s:
        yield s


def test_page_and_assets_carry_a_strict_csp(world: Seeded) -> None:
    for path in ("/console/", "/console"):
        status, headers, body = world.get(path)
        assert status == 200 and headers["Content-Type"].startswith("text/html"), path
        assert headers["Content-Security-Policy"] == CSP
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Frame-Options"] == "DENY"
        assert b'<script type="module" src="/console/static/app.js">' in body
    status, headers, _ = world.get("/console/static/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert headers["Content-Security-Policy"] == CSP and headers["ETag"]
    status, headers, body = world.get("/console/static/i18n/zh.json")
    assert status == 200 and json.loads(body)["nav.cases"] == "案件"
    # Errors under /console get the headers too, and only shipped files are served.
    for missing in ("/console/static/nope.js", "/console/static/%2e%2e/__init__.py"):
        status, headers, body = world.get(missing)
        assert status == 404, missing
        assert headers["Content-Type"].startswith("application/problem+json")
        assert headers["Content-Security-Policy"] == CSP
    # The API's own responses are not the console's: no page CSP there.
    status, headers, _ = world.get("/v1/cases", who="reviewer")
    assert status == 200 and "Content-Security-Policy" not in headers


def test_revalidation_is_a_304(world: Seeded) -> None:
    import urllib.request

    _, headers, _ = world.get("/console/static/app.css")
    req = urllib.request.Request(
        world.svc.url + "/console/static/app.css", headers={"If-None-Match": headers["ETag"]}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 304


def test_nothing_inline_and_nothing_from_elsewhere() -> None:
    parser = _Inline()
    parser.feed((STATIC / "index.html").read_text())
    assert parser.problems == []
    assert parser.scripts == ["/console/static/app.js"]
    url = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
    for name, asset in ASSETS.items():
        text = asset.body.decode()
        assert not url.search(text.replace("http://www.w3.org/2000/svg", "")), name
        if name.endswith(".js"):
            # Text goes in as text: no HTML parsing of data, no eval, no inline styles.
            for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function"):
                assert bad not in text, (name, bad)
            assert ".setAttribute('style'" not in text, name
    shipped = {p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file()}
    assert set(ASSETS) == shipped
    assert {"index.html", "app.js", "app.css", "i18n/zh.json", "i18n/en.json"} <= shipped


def test_translations_cover_the_same_keys() -> None:
    zh = json.loads((STATIC / "i18n" / "zh.json").read_text())
    en = json.loads((STATIC / "i18n" / "en.json").read_text())
    assert set(zh) == set(en)
    used: set[str] = set()
    for js in STATIC.glob("*.js"):
        used |= set(re.findall(r"[^A-Za-z]t\('([A-Za-z.]+)'", js.read_text()))
    used |= set(re.findall(r'data-i18n[a-z-]*="([a-z.]+)"', (STATIC / "index.html").read_text()))
    assert used and used <= set(zh), sorted(used - set(zh))


def test_static_dir_is_package_data() -> None:
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"console/static/*"' in text and '"console/static/i18n/*"' in text
