"""The admin console over real HTTP: a migrated SQLite database seeded with corpus articles,
a writable copy of the shipped watchlists, and the service's own listener.

Covers who may see and change what (sessions, the desk role, CSRF, no desk data without a
login), what the pages say (hostile text escaped, sources' advice, alerts' reasons), drafts
(validation with line numbers, the backtest's gain/lose against the saved version, atomic
save and reload, conflicts and read-only folders keep the draft), and the poll history.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.console.auth import COOKIE, Role, Sessions
from monitor.console.draft import check_draft, save_atomically
from monitor.model import PollStatus
from monitor.query.matcher import compile_matcher
from monitor.store import console as store
from monitor.store import sources as source_store
from monitor.store.articles import read_articles
from monitor.store.sources import POLL_EVENTS_KEPT, SourceUpdate
from monitor.web import WebServer
from tests.support import console as support
from tests.support.console import ADMIN, DESK


@dataclass
class Served:
    server: WebServer
    service: support.ConsoleService
    folder: Path
    ids: dict[str, int]

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    support.prepared(url)
    folder = support.watchlist_folder(tmp_path / "watchlists", examples=False)
    service = support.make_service(url, folder)
    ids = support.seed(service.engine)
    server = await support.start(service)
    try:
        yield Served(server, service, folder, ids)
    finally:
        await server.stop()
        service.engine.dispose()


def bearer(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(session: aiohttp.ClientSession, base: str, token: str) -> int:
    async with session.post(
        base + "/login", data={"token": token, "next": "/"}, allow_redirects=False
    ) as resp:
        return resp.status


async def csrf_of(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        html = await resp.text()
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def jar() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


# --- sessions --------------------------------------------------------------------------------


def test_session_cookies_are_signed_expire_and_die_with_their_token() -> None:
    sessions = Sessions({Role.ADMIN: "a-token", Role.DESK: "d-token"}, 3600)
    cookie, made = sessions.issue(Role.DESK, now=1000.0)
    checked = sessions.check(cookie, now=1001.0)
    assert checked is not None and checked.role is Role.DESK and not checked.can_write
    assert sessions.check(cookie, now=1000.0 + 3601) is None  # expired
    body, _, sig = cookie.partition(".")
    forged = body.replace(body[:4], body[:4][::-1]) + "." + sig
    assert sessions.check(forged, now=1001.0) is None
    # A desk cookie relabelled as admin fails: each role signs with its own key.
    import base64
    import json

    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data["r"] = "admin"
    relabelled = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    assert sessions.check(f"{relabelled}.{sig}", now=1001.0) is None
    rotated = Sessions({Role.ADMIN: "a-token", Role.DESK: "new-desk-token"}, 3600)
    assert rotated.check(cookie, now=1001.0) is None
    assert sessions.csrf_ok(made, sessions.csrf(made))
    other = sessions.issue(Role.DESK, now=1000.0)[1]
    assert not sessions.csrf_ok(other, sessions.csrf(made))  # bound to its session


async def test_nothing_without_a_login(served: Served) -> None:
    """Every console path redirects to /login or refuses, and no seeded desk data leaks."""
    paths = [
        "/",
        "/watchlists",
        "/watchlists/missile-tests",
        "/watchlists/missile-tests/edit",
        "/watchlists/new",
        "/watchlists/missile-tests/quality",
        "/watchlists/missile-tests/recent",
        "/sources",
        "/sources/dailynk",
        "/alerts",
        f"/alerts/{served.ids['dead']}",
        "/stories",
        f"/stories/{served.ids['story']}",
        f"/articles/{served.ids['hostile']}",
        "/status",
    ]
    async with aiohttp.ClientSession() as session:
        for path in paths:
            async with session.get(served.url + path, allow_redirects=False) as resp:
                body = await resp.text()
                assert resp.status in (302, 401), path
                if resp.status == 302:
                    assert resp.headers["Location"].startswith("/login?next="), path
                for secret in ("North Korea fires", "dailynk.com", "#nk-desk", "channel_not_found"):
                    assert secret not in body, (path, secret)
        for path in ("/api/draft", f"/alerts/{served.ids['dead']}/retry", "/watchlists/new"):
            async with session.post(served.url + path, json={}) as resp:
                assert resp.status == 401, path
        async with session.get(served.url + "/", headers=bearer("wrong")) as resp:
            assert resp.status == 401
        async with session.get(served.url + "/login") as resp:  # the form itself is public
            assert resp.status == 200 and "Token" in await resp.text()


async def test_login_sets_a_strict_cookie_and_bad_tokens_are_throttled(served: Served) -> None:
    async with jar() as session:
        async with session.post(
            served.url + "/login",
            data={"token": ADMIN, "next": "//evil.example/x"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/"  # no open redirect
            set_cookie = resp.headers["Set-Cookie"]
            assert COOKIE in set_cookie and "HttpOnly" in set_cookie
            assert "SameSite=Strict" in set_cookie
        async with session.get(served.url + "/") as resp:
            assert resp.status == 200 and "Overview" in await resp.text()
    async with aiohttp.ClientSession() as session:
        statuses = [await login(session, served.url, "guess") for _ in range(11)]
        assert statuses[:10] == [401] * 10 and statuses[10] == 429
        assert await login(session, served.url, ADMIN) == 429  # even the right one, for now


async def test_forms_need_the_csrf_token_and_the_same_origin(served: Served) -> None:
    dead = served.ids["dead"]
    async with jar() as session:
        assert await login(session, served.url, ADMIN) == 303
        token = await csrf_of(session, f"{served.url}/alerts/{dead}")
        async with session.post(f"{served.url}/alerts/{dead}/retry", data={"csrf": "x"}) as resp:
            assert resp.status == 403 and "CSRF" in await resp.text()
        async with session.post(
            f"{served.url}/alerts/{dead}/retry",
            data={"csrf": token},
            headers={"Origin": "https://evil.example"},
        ) as resp:
            assert resp.status == 403
        detail = store.get_alert(served.service.engine, dead)
        assert detail is not None and detail.alert.status == "dead"  # nothing happened
        async with session.post(
            f"{served.url}/alerts/{dead}/retry", data={"csrf": token}, allow_redirects=False
        ) as resp:
            assert resp.status == 303
    detail = store.get_alert(served.service.engine, dead)
    assert detail is not None and detail.alert.status == "pending" and detail.alert.attempts == 0


async def test_the_desk_role_reads_but_cannot_change(served: Served) -> None:
    dead = served.ids["dead"]
    async with jar() as session:
        assert await login(session, served.url, DESK) == 303
        async with session.get(f"{served.url}/alerts/{dead}") as resp:
            html = await resp.text()
            assert resp.status == 200 and 'id="retry"' not in html and "read-only" in html
        token = await csrf_of(session, f"{served.url}/alerts/{dead}")
        async with session.post(f"{served.url}/alerts/{dead}/retry", data={"csrf": token}) as r:
            assert r.status == 403
        async with session.get(f"{served.url}/watchlists/missile-tests/edit") as resp:
            assert 'value="save"' not in await resp.text()
        text = (served.folder / "missile-tests.yaml").read_text()
        form = {"csrf": token, "action": "save", "yaml": text + "# desk\n", "days": "1"}
        async with session.post(f"{served.url}/watchlists/missile-tests/edit", data=form) as r:
            assert r.status == 403
    assert (served.folder / "missile-tests.yaml").read_text() == text
    async with aiohttp.ClientSession() as session:  # scripts: Bearer, no CSRF needed
        async with session.post(f"{served.url}/alerts/{dead}/retry", headers=bearer(DESK)) as resp:
            assert resp.status == 403
        async with session.post(
            f"{served.url}/alerts/{dead}/retry", headers=bearer(ADMIN), allow_redirects=False
        ) as resp:
            assert resp.status == 303


async def test_the_console_is_off_without_tokens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    support.prepared(url)
    folder = support.watchlist_folder(tmp_path / "w", examples=False)
    service = support.make_service(url, folder, admin=None, desk=None)
    server = await support.start(service)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url + "/", headers=bearer()) as resp:
                assert resp.status == 404 and "MONITOR_ADMIN_TOKEN" in await resp.text()
            async with session.get(server.url + "/livez") as resp:
                assert resp.status == 200
    finally:
        await server.stop()
        service.engine.dispose()


# --- pages -----------------------------------------------------------------------------------


async def test_hostile_article_text_is_escaped_on_every_page(served: Served) -> None:
    ids = served.ids
    pages = [
        "/",
        f"/alerts/{ids['dead']}",
        f"/articles/{ids['hostile']}",
        "/alerts",
        "/watchlists/missile-tests",
        "/sources/kcna",
        "/watchlists/missile-tests/recent",
    ]
    async with aiohttp.ClientSession() as session:
        for path in pages:
            async with session.get(served.url + path, headers=bearer()) as resp:
                html = await resp.text()
                assert resp.status == 200, path
                assert "<img src=x" not in html and "<script>window" not in html, path
                assert 'href="javascript:' not in html, path
                if path in pages[:3]:
                    assert "&lt;img src=x onerror=" in html, path
                assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
                assert "script-src 'self'" in resp.headers["Content-Security-Policy"]


async def test_a_failing_source_says_why_and_what_to_do(served: Served) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(served.url + "/sources/dailynk", headers=bearer()) as resp:
            html = await resp.text()
        assert "403 access forbidden" in html and "User-Agent" in html  # the advice
        assert "SECRET-KEY-1" not in html and "[redacted]" in html
        assert html.count('<td class="bad">http_4xx</td>') == 6  # the history
        async with session.get(served.url + "/sources?health=failing", headers=bearer()) as r:
            listing = await r.text()
        assert "dailynk" in listing and ">kcna<" not in listing
        async with session.get(served.url + "/", headers=bearer()) as resp:
            overview = await resp.text()
        for wanted in (
            "dailynk",
            "38north",
            "old-un",
            "410 Gone",
            "channel_not_found",
            "replica-b",
            "1 dead alert",
        ):
            assert wanted in overview, wanted


async def test_an_article_page_says_which_watchlists_match_and_why_not(served: Served) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{served.url}/articles/{served.ids['hostile']}", headers=bearer()) as resp,
    ):
        html = await resp.text()
    assert re.search(r"missile-tests</a></td>\s*<td class=\"ok\">matches: score", html)
    assert re.search(r"un-mission</a></td>\s*<td class=\"muted\">no match: no ", html)


async def test_a_story_lists_outlets_and_languages(served: Served) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{served.url}/stories/{served.ids['story']}", headers=bearer()) as resp,
    ):
        html = await resp.text()
    assert "KCNA Watch" in html and "Yonhap" in html and "English" in html


# --- drafts ----------------------------------------------------------------------------------


def test_a_draft_is_checked_with_the_loaders_line_numbers(tmp_path: Path) -> None:
    folder = support.watchlist_folder(tmp_path, examples=False)
    text = (folder / "missile-tests.yaml").read_text()
    ok = check_draft(folder, "missile-tests", text, {"kcna"})
    assert ok.ok and ok.watchlist is not None and ok.watchlist.path == folder / "missile-tests.yaml"
    broken = text.replace("query: |", "querry: |")
    bad = check_draft(folder, "missile-tests", broken, None)
    assert not bad.ok
    line = text.splitlines().index("query: |") + 1
    assert any(e.line == line and "did you mean 'query'" in e.message for e in bad.errors)
    unknown = check_draft(folder, "x", "query: a\nsources: [kcna, nowhere]\n", {"kcna"})
    assert [(e.line, "nowhere" in e.message) for e in unknown.errors] == [(2, True)]
    assert not check_draft(folder, "Bad Name", "query: a\n", None).ok
    assert not check_draft(folder, "sources", "query: a\n", None).ok


def test_saving_is_atomic_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "w.yaml"
    target.write_text("query: a\n")
    target.chmod(0o640)
    save_atomically(tmp_path, "w", "query: b")
    assert target.read_text() == "query: b\n" and target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["w.yaml"]  # no temp file left


async def draft_stream(
    session: aiohttp.ClientSession, base: str, token: str, **body: str
) -> list[dict[str, Any]]:
    import json

    async with session.post(
        base + "/api/draft", json=body, headers={"X-CSRF-Token": token}
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("application/x-ndjson")
        return [json.loads(line) async for line in resp.content if line.strip()]


async def test_a_draft_backtest_counts_what_it_would_gain_and_lose(served: Served) -> None:
    text = (served.folder / "missile-tests.yaml").read_text()
    narrower = text.replace(
        text[text.index("query: |") : text.index("signals:")],
        'query: |\n  title:"North Korea" AND title:missile*\n',
    )
    async with jar() as session:
        await login(session, served.url, ADMIN)
        token = await csrf_of(session, served.url + "/watchlists/missile-tests/edit")
        bad = await draft_stream(
            session,
            served.url,
            token,
            id="missile-tests",
            yaml=text.replace("query: |", "query: |\n  (oops"),
            days="7",
        )
        assert [m["type"] for m in bad] == ["check"] and not bad[0]["ok"]
        # The line of the broken text inside the query, not just the key's.
        assert bad[0]["errors"][0]["line"] == text.splitlines().index("query: |") + 2
        messages = await draft_stream(
            session, served.url, token, id="missile-tests", yaml=narrower, days="7"
        )
        # The next keystroke reuses the saved version's verdicts: the same counts.
        again = await draft_stream(
            session, served.url, token, id="missile-tests", yaml=narrower + "# typing\n", days="7"
        )
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "check" and messages[0]["ok"] and "progress" in kinds
    result = next(m for m in messages if m["type"] == "result")
    # The same counts, computed here straight from the stored articles.
    since = datetime.now(UTC) - timedelta(days=7)
    articles = read_articles(served.service.engine, since=since)
    old = compile_matcher([served.service.registry.watchlists["missile-tests"]])
    draft = check_draft(served.folder, "missile-tests", narrower, None).watchlist
    assert draft is not None
    new = compile_matcher([draft])
    before = {a.id for a in articles if old.match(a.article)}
    after = {a.id for a in articles if new.match(a.article)}
    assert result["scanned"] == len(articles)
    assert (result["alerts"], result["gained"], result["lost"]) == (
        len(after),
        len(after - before),
        len(before - after),
    )
    assert result["lost"] > 0
    repeat = next(m for m in again if m["type"] == "result")
    assert {k: repeat[k] for k in ("alerts", "gained", "lost", "scanned")} == {
        k: result[k] for k in ("alerts", "gained", "lost", "scanned")
    }
    assert f"lose {len(before - after)}" in result["html"]


async def test_saving_writes_the_file_and_reloads_it(served: Served) -> None:
    path = served.folder / "missile-tests.yaml"
    text = path.read_text()
    changed = text.replace("min_confidence: 0.5", "min_confidence: 0.5\nmin_score: 3")
    async with jar() as session:
        await login(session, served.url, ADMIN)
        token = await csrf_of(session, served.url + "/watchlists/missile-tests/edit")
        base = re.search(
            r'name="base" value="([^"]+)"',
            await (await session.get(served.url + "/watchlists/missile-tests/edit")).text(),
        )
        assert base is not None
        form = {
            "csrf": token,
            "base": base.group(1),
            "action": "save",
            "yaml": changed,
            "days": "1",
        }
        async with session.post(served.url + "/watchlists/missile-tests/edit", data=form) as r:
            html = await r.text()
            assert r.status == 200 and str(r.url).endswith("/watchlists/missile-tests?saved=1")
            assert "reloaded: this version is live" in html
    assert path.read_text() == changed
    assert served.service.registry.watchlists["missile-tests"].min_score == 3


async def test_a_failed_save_keeps_the_draft(served: Served) -> None:
    path = served.folder / "un-mission.yaml"
    text = path.read_text()
    draft = text + "# my unsaved thought <b>\n"
    async with jar() as session:
        await login(session, served.url, ADMIN)
        edit = served.url + "/watchlists/un-mission/edit"
        token = await csrf_of(session, edit)
        base = re.search(r'name="base" value="([^"]+)"', await (await session.get(edit)).text())
        assert base is not None
        path.write_text(text + "# edited in git meanwhile\n")  # someone else changed it
        form = {"csrf": token, "base": base.group(1), "action": "save", "yaml": draft, "days": "1"}
        async with session.post(edit, data=form) as resp:
            html = await resp.text()
            assert resp.status == 409 and "changed on disk" in html
            assert "# my unsaved thought &lt;b&gt;" in html and 'data-kept="1"' in html
        invalid = {**form, "yaml": "query: (\n"}
        async with session.post(edit, data=invalid) as resp:
            html = await resp.text()
            assert resp.status == 422 and "query: (" in html and "line 1" in html
        async with session.post(edit, data={**form, "action": "download"}) as resp:
            assert resp.headers["Content-Disposition"] == 'attachment; filename="un-mission.yaml"'
            assert await resp.text() == draft
    assert "# edited in git meanwhile" in path.read_text()


async def test_a_read_only_folder_offers_the_download(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    import monitor.console.draft as draft_module

    def refuse(*_a: object, **_k: object) -> tuple[int, str]:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(draft_module.tempfile, "mkstemp", refuse)
    text = (served.folder / "un-mission.yaml").read_text()
    async with jar() as session:
        await login(session, served.url, ADMIN)
        edit = served.url + "/watchlists/un-mission/edit"
        page = await (await session.get(edit)).text()
        assert "is not writable here" in page
        token = await csrf_of(session, edit)
        base = re.search(r'name="base" value="([^"]+)"', page)
        assert base is not None
        form = {"csrf": token, "base": base.group(1), "action": "save", "yaml": text + "#x\n"}
        async with session.post(edit, data=form) as resp:
            html = await resp.text()
            assert resp.status == 503 and "Download the YAML" in html and "#x" in html


async def test_a_new_watchlist_is_created_and_loaded(served: Served) -> None:
    async with jar() as session:
        await login(session, served.url, ADMIN)
        token = await csrf_of(session, served.url + "/watchlists/new")
        form = {
            "csrf": token,
            "id": "nuclear-tests",
            "action": "save",
            "days": "1",
            "yaml": 'query: "nuclear test"\nalert:\n  slack: ["#nk-desk"]\n',
        }
        async with session.post(served.url + "/watchlists/new", data=form) as resp:
            assert resp.status == 200
            assert str(resp.url).endswith("/watchlists/nuclear-tests?saved=1")
        async with session.post(served.url + "/watchlists/new", data=form) as resp:
            assert resp.status == 409  # never overwrites an existing file
    assert "nuclear-tests" in served.service.registry.watchlists


# --- poll history ----------------------------------------------------------------------------


def test_polls_worth_remembering_are_recorded_and_capped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    support.prepared(url)
    from monitor.model import SourceConfig
    from monitor.store import db

    engine = db.make_engine(url)
    now = datetime.now(UTC)
    source_store.sync_from_config(engine, [SourceConfig("s", "S", "https://x.example/f")], now)

    def poll(status: PollStatus, failures_before: int, failures: int, **kw: object) -> None:
        [claim] = source_store.claim(
            engine, owner="me", now=now, lease_seconds=60, limit=1, force=True
        )
        claim = replace(claim, failures=failures_before)
        update = SourceUpdate(
            status=status, polled_at=datetime.now(UTC), next_poll_at=now, failures=failures, **kw
        )  # type: ignore[arg-type]
        assert source_store.complete(engine, claim, owner="me", update=update)

    poll(PollStatus.NOT_MODIFIED, 0, 0)  # quiet and healthy: only counted
    poll(PollStatus.ERROR, 0, 1, error_kind="timeout", error="timed out https://x/?k=SECRET")
    poll(PollStatus.NOT_MODIFIED, 1, 0)  # the recovery
    events = store.poll_events(engine, "s")
    assert [e.status for e in events] == ["not_modified", "timeout"]
    assert "SECRET" not in (events[1].error or "") and events[1].failures == 1
    for _ in range(POLL_EVENTS_KEPT + 5):
        poll(PollStatus.OK, 0, 0, last_new_entries=1)
    assert len(store.poll_events(engine, "s", limit=1000)) == POLL_EVENTS_KEPT
    engine.dispose()


async def test_a_slow_fragment_is_computed_once_for_concurrent_callers(served: Served) -> None:
    started = time.perf_counter()

    async def fetch(session: aiohttp.ClientSession) -> str:
        url = served.url + "/watchlists/missile-tests/recent"
        async with session.get(url, headers=bearer()) as resp:
            return await resp.text()

    async with aiohttp.ClientSession() as session:
        pages = await asyncio.gather(*[fetch(session) for _ in range(3)])
    assert len(set(pages)) == 1 and "Would alert" in pages[0]
    assert time.perf_counter() - started < 30


async def test_the_watchlists_page_shows_the_desks_precision(served: Served) -> None:
    """Desk labels from Slack or email show as precision over 7 and 30 days."""
    from monitor.model import FeedbackAction
    from monitor.store import feedback

    target = feedback.alert_target(served.service.engine, served.ids["sent"])
    assert target is not None
    now = datetime.now(UTC)
    for n, action in enumerate([FeedbackAction.RELEVANT, FeedbackAction.NOT_RELEVANT]):
        engine = served.service.engine
        other = target if n == 0 else feedback.alert_target(engine, served.ids["dead"])
        assert other is not None
        feedback.record(
            served.service.engine,
            other,
            action,
            user_id=f"U{n}",
            user_name=f"desk{n}",
            via="slack",
            request_key=f"r{n}",
            now=now,
        )
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{served.url}/watchlists", headers=bearer()) as response,
    ):
        page = await response.text()
    wid = target.watchlist_id
    row = page[page.index(f"<b>{wid}</b>") :].split("</tr>", 1)[0]
    if target.watchlist_id == other.watchlist_id:
        assert "0.50 (1/2) / 0.50 (1/2)" in row
    else:
        assert "1.00 (1/1) / 1.00 (1/1)" in row
