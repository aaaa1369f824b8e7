"""Hostile documents served by a real local HTTP server, through the real poll (fetch → parse →
normalize → store) on both databases: each ends in its classified state, the good sources of
the same tick are stored, and what is stored is clean."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from monitor.app import App
from monitor.service import Service
from monitor.settings import Settings
from monitor.store import articles, db
from monitor.store.tables import SourceRow
from tests.support.feedserver import FeedServer, rss


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def _bomb(prolog: str, *, declaration: str = "", refs: int = 2000) -> str:
    value = "x" * 10 * 1024
    return (
        f'<?xml version="1.0"{declaration}?>{prolog}<!DOCTYPE rss [<!ENTITY a "{value}">]>'
        f'<rss version="2.0"><channel><title>t</title><item><title>{"&a;" * refs}</title>'
        "<guid>1</guid></item></channel></rss>"
    )


JSON_FEED = (
    b'{"version": "https://jsonfeed.org/version/1.1", "title": "j", "items": ['
    b'{"id": "j1", "title": "Far future zone", "url": "https://x.example/j1",'
    b' "date_published": "9999-12-31T23:59:59-01:00"},'
    b'{"id": "j2", "title": "Dated", "url": "https://x.example/j2",'
    b' "date_published": "2024-05-01T10:00:00Z"},'
    b'{"id": "j3", "title": "\\u001b]0;json\\u0007 title \\u009b31m",'
    b' "content_text": "body\\r\\nline\\u0000 two\\tend\\u0085"}]}'
)
HTML_PAGE = (
    b"<html><head><title>Section</title></head><body>"
    b"<article><h2>Overflowing</h2><a href='/h1'>1</a>"
    b"<time datetime='9999-12-31T23:59:59-01:00'></time></article>"
    b"<article><h2>Fine</h2><a href='/h2'>2</a><time datetime='2024-05-01T10:00:00Z'></time>"
    b"</article></body></html>"
)


def _service(tmp: Path, url: str, server: FeedServer) -> Service:
    folder = tmp / "watchlists"
    folder.mkdir()
    feeds = {
        "good": "/good.xml",
        "comment-bomb": "/comment-bomb.xml",
        "pi-bomb": "/pi-bomb.xml",
        "utf7-bomb": "/utf7-bomb.xml",
        "subset": "/subset.xml",
        "nested": "/nested.xml",
        "jsonfeed": "/feed.json",
        "controls": "/controls.xml",
        "future": "/future.xml",
    }
    lines = ["sources:"]
    for source_id, path in feeds.items():
        lines += [f"  - id: {source_id}", f"    name: {source_id}", f"    url: {server.url(path)}"]
    lines += [
        "  - id: page",
        "    name: page",
        f"    url: {server.url('/page.html')}",
        "    kind: html",
        '    selectors: {item: "article", title: "h2", link: "a[href]", date: "time"}',
    ]
    (folder / "sources.yaml").write_text("\n".join(lines) + "\n")
    return _prepared(url, folder)


def test_hostile_documents_end_classified_and_the_rest_of_the_tick_is_stored(
    server: FeedServer, tmp_path: Path, db_url: str
) -> None:
    server.add("/good.xml", rss([("g1", "Launch report")]))
    # 2,000 references to a 10 KB entity: 20 MB of title once expanded, gzipped on the wire
    server.add("/comment-bomb.xml", _bomb("<!-- <a -->").encode(), gzip=True)
    server.add("/pi-bomb.xml", _bomb("<?pi <a ?>").encode())
    utf7 = _bomb("", declaration=' encoding="utf-7"').replace("<!ENTITY", "+ADw-!ENTITY")
    server.add("/utf7-bomb.xml", utf7.encode(), "application/xml")
    server.add(
        "/subset.xml",
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ELEMENT rss ANY>]><rss version="2.0"/>',
    )
    server.add("/nested.xml", b'<?xml version="1.0"?><rss>' + b"<a>" * 400_000, gzip=True)
    server.add("/feed.json", JSON_FEED, "application/feed+json")
    server.add("/page.html", HTML_PAGE, "text/html; charset=utf-8")
    server.add(
        "/controls.xml",
        rss([("c1", "Clean&#27;]0;owned&#7; title \x1b[2J")]).replace(
            b"<description>", "<description>line&#27;[31m red\u009b0m\x07".encode()
        ),
    )
    server.add(
        "/future.xml",
        rss([("f1", "From the future")]).replace(
            b"</item>", b"<pubDate>Thu, 31 Dec 2099 00:00:00 GMT</pubDate></item>", 1
        ),
    )
    service = _service(tmp_path, db_url, server)
    try:
        reports = {r.source_id: r for r in asyncio.run(service.poller.poll_due(force=True))}
        asyncio.run(service.aclose())
        with Session(service.engine) as session:
            rows = {row.id: row for row in session.query(SourceRow)}
            stored = {
                a.article.entry_key: a
                for a in articles.list_articles(session, since=None)
            }
    finally:
        service.engine.dispose()

    statuses = {source_id: report.label for source_id, report in reports.items()}
    assert statuses == {
        "good": "ok",
        "comment-bomb": "error:rejected_entities",  # parsed and expanded before
        "pi-bomb": "error:rejected_entities",
        "utf7-bomb": "error:rejected_entities",
        "subset": "error:rejected_entities",
        "nested": "error:too_complex",  # ~10 s of CPU per tick before
        "jsonfeed": "ok",  # failed whole on OverflowError before
        "page": "ok",
        "controls": "ok",
        "future": "ok",
    }
    assert rows["nested"].last_status == "too_complex" and not rows["nested"].error_transient
    assert "deeper than 256 levels" in (rows["nested"].last_error or "")
    assert "not ASCII-compatible" in (rows["utf7-bomb"].last_error or "")

    dated = datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert stored["guid:j1"].article.published is None
    assert stored["guid:j2"].article.published == dated
    by_title = {a.article.title: a.article for a in stored.values()}
    assert by_title["Overflowing"].published is None
    assert by_title["Fine"].published == dated

    (controls,) = [a.article for a in stored.values() if a.source_id == "controls"]
    assert controls.title == "Clean]0;owned title [2J"  # ESC, BEL and CSI (C1) are gone
    # feedparser itself reads a raw C1 in XML as windows-1252 (U+009B is "›")
    assert controls.text == "line[31m red›0mClean]0;owned title [2J text"
    # JSON Feed hands C0 and C1 through as they are: normalize drops them
    assert stored["guid:j3"].article.title == "]0;json title 31m"
    assert stored["guid:j3"].article.text == "body line two end"
    for article in stored.values():
        text = article.article.title + article.article.text
        assert not any((ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F for c in text)


def test_an_article_dated_2099_is_stored_as_published_when_first_seen(
    server: FeedServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    server.add(
        "/future.xml",
        rss([("f1", "From the future")]).replace(
            b"</item>", b"<pubDate>Thu, 31 Dec 2099 00:00:00 GMT</pubDate></item>", 1
        ),
    )
    folder = tmp_path / "watchlists"
    folder.mkdir()
    (folder / "sources.yaml").write_text(
        f"sources:\n  - id: future\n    name: future\n    url: {server.url('/future.xml')}\n"
    )
    service = _prepared(url, folder)
    try:
        asyncio.run(service.poller.poll_due(force=True))
        asyncio.run(service.aclose())
        with Session(service.engine) as session:
            (item,) = articles.list_articles(session, since=None)
    finally:
        service.engine.dispose()
    assert item.article.published is not None
    assert item.article.published.year == item.first_seen.year  # not 2099


def _prepared(url: str, folder: Path) -> Service:
    """A migrated database and a prepared service over the local sources in `folder`."""
    db.upgrade(url)
    settings = Settings(
        database_url=url,  # type: ignore[arg-type]
        watchlists_dir=folder,
        allow_private_hosts=["127.0.0.1"],
        http_port=-1,
    )
    service = Service(App(settings))
    service.prepare(exclusive=False)
    return service
