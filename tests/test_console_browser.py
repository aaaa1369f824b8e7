"""The console in a real browser: Playwright driving Debian's chromium (never a downloaded
browser; `scripts/test` installs the package) against the service's own listener.

An admin logs in, opens a watchlist, changes its query, sees the preview change as they type
(errors with line numbers, then "would gain …, lose …"), saves, and sees the new version live;
a hostile article title renders as text; an unsaved draft survives a reload; a dead alert is
retried with its button; the desk role gets no Save button.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from monitor.web import WebServer
from tests.support import console as support
from tests.support.console import ADMIN, DESK, HOSTILE_TITLE

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NARROW_QUERY = "(@dprk OR @kim) AND (missile* OR launch*)"  # narrower; the model still trains


@dataclass
class Site:
    server: WebServer
    service: support.ConsoleService
    folder: Path
    ids: dict[str, int]


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    support.prepared(url)
    folder = support.watchlist_folder(tmp_path / "watchlists")  # with examples: models judge
    service = support.make_service(url, folder)
    ids = support.seed(service.engine)
    server = await support.start(service)
    try:
        yield Site(server, service, folder, ids)
    finally:
        await server.stop()
        service.engine.dispose()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    assert CHROMIUM.exists(), "install Debian's chromium (scripts/test does it)"
    from playwright.async_api import async_playwright

    profile = tempfile.mkdtemp(prefix="monitor-chromium-")
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            await context.close()
            shutil.rmtree(profile, ignore_errors=True)


async def log_in(page: Any, base: str, token: str, path: str = "/") -> None:
    await page.goto(base + path)
    assert "/login" in page.url
    await page.fill("input[name=token]", token)
    await page.click("button:has-text('Log in')")
    await page.wait_for_url(re.compile(re.escape(base + path) + r"$"))


def replace_query(text: str, query: str) -> str:
    start, end = text.index("query: |"), text.index("signals:")
    return text[:start] + f"query: |\n  {query}\n" + text[end:]


async def test_an_admin_changes_a_watchlist_and_knows_what_it_will_catch(
    site: Site, browser: Any
) -> None:
    base = site.server.url
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    await page.goto(base + "/watchlists/missile-tests")
    await page.fill("input[name=token]", "not-the-token")
    await page.click("button:has-text('Log in')")
    assert "not the admin or desk token" in await page.inner_text("main")
    await page.fill("input[name=token]", ADMIN)
    await page.click("button:has-text('Log in')")
    await page.wait_for_url(base + "/watchlists/missile-tests")

    await page.click("text=Edit and backtest")
    await page.wait_for_selector("#diff")
    first = await page.inner_text("#diff")
    assert "would gain 0, lose 0" in first, first

    saved = (site.folder / "missile-tests.yaml").read_text()
    await page.fill("#yaml", replace_query(saved, "(" + NARROW_QUERY))
    item = page.locator("#error-list li").first
    await item.wait_for()
    assert re.match(r"line \d+: ", await item.inner_text()), await item.inner_text()

    draft = replace_query(saved, NARROW_QUERY)
    await page.fill("#yaml", draft)
    await page.wait_for_function(
        "() => /lose [1-9]/.test((document.querySelector('#diff') || {}).textContent || '')"
    )
    diff = await page.inner_text("#diff")
    lost = int(re.search(r"lose (\d+)", diff).group(1))  # type: ignore[union-attr]
    assert lost > 0 and await page.locator("#results mark").count() > 0
    assert await page.locator("#valid").is_visible()

    await page.click("#save")
    await page.wait_for_url(base + "/watchlists/missile-tests?saved=1")
    assert "this version is live" in await page.inner_text(".flash")
    assert (await page.inner_text("#live-query")).strip() == NARROW_QUERY
    assert (site.folder / "missile-tests.yaml").read_text() == draft
    assert site.service.registry.watchlists["missile-tests"].query.strip() == NARROW_QUERY
    leftover = await page.evaluate("localStorage.getItem('monitor-draft:missile-tests')")
    assert leftover is None  # the saved draft is no longer kept aside
    assert errors == []


async def test_a_hostile_title_renders_as_text(site: Site, browser: Any) -> None:
    base = site.server.url
    page = await browser.new_page()
    await log_in(page, base, ADMIN, f"/articles/{site.ids['hostile']}")
    heading = page.locator("h1.title")
    assert await heading.inner_text() == HOSTILE_TITLE
    assert await page.locator("h1.title img, h1.title b").count() == 0
    assert await page.evaluate("window.__pwned === undefined")
    assert await page.locator("a[href^='javascript:']").count() == 0
    await page.goto(base + "/")
    assert HOSTILE_TITLE in await page.inner_text("main")
    assert await page.evaluate("window.__pwned === undefined")


async def test_an_unsaved_draft_survives_a_reload(site: Site, browser: Any) -> None:
    base = site.server.url
    page = await browser.new_page()
    await log_in(page, base, ADMIN, "/watchlists/un-mission/edit")
    await page.wait_for_selector("#diff")
    text = await page.input_value("#yaml")
    await page.fill("#yaml", text + "# half-written thought\n")
    await page.reload()
    await page.click("#restore")
    assert (await page.input_value("#yaml")).endswith("# half-written thought\n")
    assert (site.folder / "un-mission.yaml").read_text() == text  # nothing was saved


async def test_a_dead_alert_is_retried_and_the_desk_cannot_save(site: Site, browser: Any) -> None:
    base = site.server.url
    page = await browser.new_page()
    await log_in(page, base, ADMIN, f"/alerts/{site.ids['dead']}")
    assert "channel_not_found" in await page.inner_text(".flash")
    await page.click("#retry")
    await page.wait_for_url(re.compile(r"retried=1"))
    assert "pending" in await page.inner_text("h1")
    await page.click("button:has-text('Log out')")
    await page.wait_for_url(re.compile(r"/login"))

    await log_in(page, base, DESK, "/watchlists/missile-tests/edit")
    assert "read-only" in await page.inner_text("header")
    assert await page.locator("#save").count() == 0
    await page.wait_for_selector("#diff")  # a desk login may still preview
