"""The fast parse path (lxml, `monitor/parse/fast.py`) against feedparser: the same ParsedFeed
(every entry's guid, link, title, summary, published, author; the feed's title, ttl, warning) or
the same ParseError, on every document of the corpus and of feedparser's own test suite, and
feedparser for every document the fast path is not sure of."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from monitor.model import ParsedFeed
from monitor.parse import ParseError, feeds, parse_feed
from monitor.parse.fast import read_fast
from monitor.settings import Settings
from tests.support.cli import run_monitor
from tests.support.feedserver import FeedServer
from tests.support.paths import CORPUS

DOCUMENTS = sorted(
    path
    for folder in ("feeds", "feedparser-tests")
    for path in (CORPUS / folder).rglob("*")
    if path.is_file() and path.name != "LICENSE"
)
# Differences the comparison accepts, file → reason. None: each one found was fixed in the fast
# path instead, so any difference is a bug of the fast path.
ALLOWED_DIFFERENCES: dict[str, str] = {}
# Real feeds of tests/data/corpus/feeds that feedparser reads, and why the fast path passes them on.
FALLBACK_FEEDS = {
    "feed-rs__jsonfeed_daringfireball_1.0.json": "JSON Feed: our own parser on both paths",
    "feed-rs__jsonfeed_influxdata_1.1.json": "JSON Feed: our own parser on both paths",
    "feed-rs__rss_2.0_relurl_1.xml": "raw <em> inside <description>: feedparser makes it XHTML",
    "feed-rs__rss_2.0_reuters_invalid_1.xml": "truncated: not well-formed",
    "miniflux__cerclepsy_no_encoding_ISO-8859-1.xml": "declared UTF-8, is windows-1252 (bozo)",
    "rss-parser__phys-org-daily-sci-tech-news.rss": "a bare & in a title: not well-formed",
    "rss-parser__uolNoticias.rss": "declared UTF-8, is windows-1252 (bozo)",
}
URL = "https://news.example.org/feed.xml"
RSS = {"content-type": "application/rss+xml"}


def _headers(path: Path) -> dict[str, str]:
    ctype = "application/feed+json" if path.suffix == ".json" else "application/xml"
    return {"content-type": ctype}


def _outcome(body: bytes, headers: dict[str, str], url: str, parser: str) -> object:
    try:
        return parse_feed(body, headers, url, parser=parser)  # type: ignore[arg-type]
    except ParseError as exc:
        return ("ParseError", exc.kind, str(exc))


def _difference(fast: object, slow: object) -> str:
    if not isinstance(fast, ParsedFeed) or not isinstance(slow, ParsedFeed):
        return f"{fast!r:.200} != {slow!r:.200}"
    if (fast.title, fast.ttl_seconds, fast.warning) != (slow.title, slow.ttl_seconds, slow.warning):
        return f"feed {(fast.title, fast.ttl_seconds, fast.warning)!r:.300} != {slow!r:.300}"
    if len(fast.entries) != len(slow.entries):
        return f"{len(fast.entries)} entries != {len(slow.entries)}"
    for i, (a, b) in enumerate(zip(fast.entries, slow.entries, strict=True)):
        for field in a._fields:
            if getattr(a, field) != getattr(b, field):
                return (
                    f"entry {i} {field}: {getattr(a, field)!r:.200} != {getattr(b, field)!r:.200}"
                )
    return "?"


def _fast_used(body: bytes, headers: dict[str, str], url: str) -> bool:
    return read_fast(body, feeds._feedparser_headers(headers, url), url) is not None


def _compare(documents: list[Path]) -> tuple[dict[str, str], int]:
    """Every difference between the two paths (file → first difference), and how many documents
    the fast path read."""
    differences: dict[str, str] = {}
    fast = 0
    for path in documents:
        body, headers = path.read_bytes(), _headers(path)
        url = f"http://127.0.0.1/{path.relative_to(CORPUS)}"
        auto = _outcome(body, headers, url, "auto")
        slow = _outcome(body, headers, url, "feedparser")
        fast += _fast_used(body, headers, url)
        if auto != slow and str(path.relative_to(CORPUS)) not in ALLOWED_DIFFERENCES:
            differences[str(path.relative_to(CORPUS))] = _difference(auto, slow)
    return differences, fast


def test_both_paths_give_the_same_feed_on_every_real_feed() -> None:
    documents = [p for p in DOCUMENTS if p.parent.name == "feeds"]
    differences, fast = _compare(documents)
    assert differences == {}, "\n".join(f"{k}: {v}" for k, v in differences.items())
    assert fast == len(documents) - len(FALLBACK_FEEDS)


@pytest.mark.slow
def test_both_paths_give_the_same_feed_on_every_feedparser_suite_document() -> None:
    documents = [p for p in DOCUMENTS if p.parent.name != "feeds"]
    differences, fast = _compare(documents)
    assert differences == {}, "\n".join(f"{k}: {v}" for k, v in differences.items())
    # the comparison means something only if the fast path read most of the documents
    assert len(documents) > 2000
    assert fast > 1400, fast


def test_the_fast_path_reads_every_clean_real_feed() -> None:
    passed_on = {
        path.name
        for path in sorted((CORPUS / "feeds").iterdir())
        if not _fast_used(path.read_bytes(), _headers(path), f"http://127.0.0.1/{path.name}")
    }
    assert passed_on == set(FALLBACK_FEEDS)


def _rss(items: str, *, channel: str = "", ns: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"{ns}><channel>'
        f"<title>Desk &amp; Wire</title>{channel}{items}</channel></rss>"
    ).encode()


def test_feedparser_rules_hold_on_the_fast_path() -> None:
    """What the fast path must copy from feedparser, checked against values, not just equality."""
    body = _rss(
        "<item><title>AT&amp;T &lt;b&gt;</title><link>/news/1?a=1&amp;b=2</link>"
        '<guid isPermaLink="false">id-1</guid><description>&lt;p&gt;Body&lt;/p&gt;</description>'
        "<content:encoded><![CDATA[<p>Full</p>]]></content:encoded>"
        "<dc:creator>Ana</dc:creator><pubDate>Tue, 02 Mar 2021 23:39:15 +0100</pubDate></item>"
        "<item><title>Second</title><guid>https://news.example.org/2</guid>"
        "<content:encoded>&lt;p&gt;Only content&lt;/p&gt;</content:encoded>"
        "<dc:date>2021-03-04T05:06:07Z</dc:date></item>",
        channel="<ttl>30</ttl>",
        ns=' xmlns:content="http://purl.org/rss/1.0/modules/content/"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"',
    )
    assert _fast_used(body, RSS, URL)
    fast = parse_feed(body, RSS, URL, parser="auto")
    assert fast == parse_feed(body, RSS, URL, parser="feedparser")
    assert (fast.title, fast.ttl_seconds) == ("Desk & Wire", 1800)  # feed titles are text
    first, second = fast.entries
    assert first.title == "AT&amp;T &lt;b&gt;"  # plain text escaped once
    assert first.link == "https://news.example.org/news/1?a=1&b=2"  # resolved against the URL
    assert first.guid == "id-1"  # isPermaLink="false": neither resolved nor a link
    assert first.summary == "<p>Body</p>"  # description before content
    assert first.author == "Ana"
    assert (
        first.published is not None and first.published.isoformat() == "2021-03-02T22:39:15+00:00"
    )
    assert second.link == "https://news.example.org/2"  # a permalink guid is the link
    assert second.summary == "<p>Only content</p>"
    assert second.published is not None and second.published.day == 4  # dc:date as updated


def test_atom_authors_xml_base_and_first_title_on_the_fast_path() -> None:
    body = (
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" '
        b'xmlns:media="http://search.yahoo.com/mrss/">'
        b'<title type="html">A &lt;b&gt;B&lt;/b&gt;</title>'
        b'<entry xml:base="https://cdn.example.net/posts/"><id>tag:x,2024:1</id>'
        b'<title>First</title><media:title>Media</media:title><link href="one.html"/>'
        b'<link rel="enclosure" href="/a.mp3"/><author><name>Bo</name><email>bo@x.org</email>'
        b"</author><updated>2024-05-06T07:08:09+02:00</updated>"
        b'<content type="text">a &lt; b</content></entry></feed>'
    )
    headers = {"content-type": "application/atom+xml"}
    assert _fast_used(body, headers, URL)
    fast = parse_feed(body, headers, URL, parser="auto")
    assert fast == parse_feed(body, headers, URL, parser="feedparser")
    (entry,) = fast.entries
    assert fast.title == "A B"  # type="html": the markup's text only
    assert entry.link == "https://cdn.example.net/posts/one.html"
    assert entry.title == "First"
    assert entry.author == "Bo (bo@x.org)"
    assert entry.guid == "tag:x,2024:1"
    assert entry.summary == "a < b"  # content copied to summary keeps feedparser's (lack of) type


@pytest.mark.parametrize(
    ("why", "body", "headers"),
    [
        ("no content-type: feedparser warns", _rss("<item><title>x</title></item>"), {}),
        (
            "text/plain: not an XML media type",
            _rss("<item><title>x</title></item>"),
            {"content-type": "text/plain"},
        ),
        (
            "text/xml without charset is us-ascii",
            _rss("<item><title>é</title></item>"),
            {"content-type": "text/xml"},
        ),
        ("undefined entity", _rss("<item><title>a&nbsp;b</title></item>"), RSS),
        ("a DOCTYPE", b'<!DOCTYPE rss SYSTEM "x.dtd">' + _rss("<item/>"), RSS),
        ("markup inside a title", _rss("<item><title>a <b>b</b></title></item>"), RSS),
        (
            "base64 content",
            b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><content type="image/png">'
            b"aGk=</content></entry></feed>",
            RSS,
        ),
        ("an XHTML body", _rss("<item><body>x</body></item>"), RSS),
        ("not a feed", b"<?xml version='1.0'?><opml><body/></opml>", RSS),
    ],
)
def test_unclean_documents_go_to_feedparser(why: str, body: bytes, headers: dict[str, str]) -> None:
    assert not _fast_used(body, headers, URL), why
    assert _outcome(body, headers, URL, "auto") == _outcome(body, headers, URL, "feedparser")


def test_invalid_utf8_goes_to_feedparser() -> None:
    body = _rss("<item><title>cafX</title></item>").replace(b"cafX", b"caf\xff")
    assert not _fast_used(body, RSS, URL)
    assert _outcome(body, RSS, URL, "auto") == _outcome(body, RSS, URL, "feedparser")


def test_hostile_documents_are_refused_before_either_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = "x" * 10_000
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "{value}">]>'
        f'<rss version="2.0"><channel><title>{"&a;" * 2000}</title></channel></rss>'
    ).encode()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a parser was reached")

    monkeypatch.setattr(feeds, "read_fast", refuse)
    monkeypatch.setattr("feedparser.parse", refuse)
    with pytest.raises(ParseError) as info:
        parse_feed(body, RSS, URL, parser="auto")
    assert info.value.kind == "rejected_entities"


def test_the_setting_accepts_auto_and_feedparser_only() -> None:
    assert Settings.model_fields["parser"].default == "auto"
    assert Settings(parser="feedparser").parser == "feedparser"  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="parser"):
        Settings(parser="lxml")  # type: ignore[call-arg]


@pytest.mark.slow
def test_monitor_stores_the_same_articles_with_either_parser(tmp_path: Path) -> None:
    """`monitor poll --once --all` over the corpus feeds (local HTTP server, real SQLite) with
    MONITOR_PARSER=auto and =feedparser: the stored articles are the same."""
    listings = {}
    with FeedServer() as server:
        names = [p.rsplit("/", 1)[1] for p in server.add_corpus()]
        for parser in ("auto", "feedparser"):
            folder = tmp_path / parser
            (folder / "watchlists").mkdir(parents=True)
            lines = ["sources:"]
            for i, name in enumerate(names):
                lines += [
                    f"  - id: f{i}",
                    f"    name: {name}",
                    f"    url: {server.url('/feeds/' + name)}",
                ]
            (folder / "watchlists" / "sources.yaml").write_text("\n".join(lines) + "\n")
            env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
            env.update(
                MONITOR_DATABASE_URL=f"sqlite:///{folder / 'm.db'}",
                MONITOR_WATCHLISTS_DIR=str(folder / "watchlists"),
                MONITOR_ALLOW_PRIVATE_HOSTS="127.0.0.1",
                MONITOR_LOG_LEVEL="WARNING",
                MONITOR_PARSER=parser,
            )
            assert run_monitor(env, "db", "upgrade").returncode == 0
            polled = run_monitor(env, "poll", "--once", "--all")
            assert polled.returncode == 1, polled.stdout + polled.stderr  # the truncated feed
            listed = run_monitor(env, "articles", "list", "--format", "jsonl", "--limit", "100000")
            assert listed.returncode == 0, listed.stderr
            rows = [json.loads(line) for line in listed.stdout.splitlines()]
            listings[parser] = sorted(
                (r["source"], r["url"], r["title"], r["summary"], r["published"], r["content_hash"])
                for r in rows
            )
    assert len(listings["auto"]) > 1000
    assert listings["auto"] == listings["feedparser"]
