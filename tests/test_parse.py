"""parse_feed: RSS/Atom/JSON Feed bytes with real headers → ParsedFeed, or a ParseError."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.normalize import normalize_entry
from monitor.parse import ParseError, parse_feed
from monitor.parse.common import LINK_CAP, SUMMARY_CAP, TITLE_CAP
from monitor.parse.entities import check_entities
from tests.support.parsers import (  # each_parser: every test on both parse paths
    each_parser,  # noqa: F401
    no_parser_reached,
)
from tests.support.paths import FEEDS

RSS = {"content-type": "application/rss+xml; charset=utf-8"}
URL = "https://news.example.org/feeds/nk/"


def rss(items: str, channel: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>Desk</title><link>https://news.example.org/</link>{channel}{items}"
        "</channel></rss>"
    ).encode()


def item(title: str = "T", link: str = "/a", guid: str | None = "g", desc: str = "d") -> str:
    guid_xml = f"<guid isPermaLink='false'>{guid}</guid>" if guid is not None else ""
    return (
        f"<item><title>{title}</title><link>{link}</link>{guid_xml}"
        f"<description>{desc}</description></item>"
    )


# --------------------------------------------------------------------------- RSS / Atom


def test_rss_fields_ttl_and_relative_links() -> None:
    body = rss(
        item(
            title="AT&amp;T &lt;b&gt; deal",
            link="/2021/07/story?utm_source=rss",
            guid="tag:news.example.org,2021:1",
            desc="&lt;p&gt;Kim &amp;amp; Moon&lt;/p&gt;<![CDATA[<p>second</p>]]>",
        ).replace("</item>", "<pubDate>Tue, 27 Jul 2021 09:15:00 +0900</pubDate></item>"),
        channel="<ttl>30</ttl>",
    )
    parsed = parse_feed(body, RSS, URL)
    assert parsed.title == "Desk"
    assert parsed.ttl_seconds == 1800
    assert parsed.warning is None
    (entry,) = parsed.entries
    assert entry.guid == "tag:news.example.org,2021:1"
    assert entry.link == "https://news.example.org/2021/07/story?utm_source=rss"
    # An RSS title is text/plain to feedparser: it is escaped so every field is an HTML fragment.
    assert entry.title == "AT&amp;T &lt;b&gt; deal"
    assert entry.published == datetime(2021, 7, 27, 0, 15, tzinfo=UTC)
    article = normalize_entry(entry, "desk")
    assert article.title == "AT&T <b> deal"
    assert article.text == "Kim & Moon\nsecond"
    assert article.url == "https://news.example.org/2021/07/story"
    assert article.entry_key == "guid:tag:news.example.org,2021:1"


def test_atom_entry_and_feed_title() -> None:
    body = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://blog.example.net/posts/">
  <title type="html">Notes &amp;lt;on&amp;gt; Korea</title>
  <id>urn:uuid:feed</id><updated>2024-11-11T00:00:00Z</updated>
  <entry>
    <title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">Envoy <em>returns</em></div>
    </title>
    <link rel="alternate" href="envoy.html"/>
    <id>urn:uuid:1</id>
    <updated>2024-11-10T08:00:00+09:00</updated>
    <content type="html">&lt;p&gt;Body&lt;/p&gt;</content>
    <author><name>Desk</name></author>
  </entry>
</feed>"""
    parsed = parse_feed(body, {"content-type": "application/atom+xml"}, URL)
    assert parsed.title == "Notes <on> Korea"
    (entry,) = parsed.entries
    assert entry.link == "https://blog.example.net/posts/envoy.html"
    assert entry.guid == "urn:uuid:1"
    assert entry.published == datetime(2024, 11, 9, 23, 0, tzinfo=UTC)
    assert entry.author == "Desk"
    article = normalize_entry(entry, "s")
    assert (article.title, article.text) == ("Envoy returns", "Body")


@pytest.mark.parametrize(
    ("channel", "expected"),
    [("<ttl>0</ttl>", None), ("<ttl>-5</ttl>", None), ("<ttl>soon</ttl>", None), ("", None),
     ("<ttl>60</ttl>", 3600), ("<ttl>100000</ttl>", 7 * 24 * 3600)],
)  # fmt: skip
def test_ttl_minutes_to_seconds(channel: str, expected: int | None) -> None:
    assert parse_feed(rss(item(), channel), RSS, URL).ttl_seconds == expected


def test_field_caps_keep_characters_whole() -> None:
    korean = "북한" * 2000  # 3 bytes per character in UTF-8
    long_link = "/x?" + "a" * 5000
    body = rss(item(title=korean, link=long_link, desc="<p>" + "word " * 10000 + "</p>"))
    (entry,) = parse_feed(body, RSS, URL).entries
    assert len(entry.title.encode()) <= TITLE_CAP
    assert len(entry.title.encode()) > TITLE_CAP - 3
    assert set(entry.title) == {"북", "한"}  # no replacement characters from a split sequence
    assert entry.link is not None and len(entry.link.encode()) <= LINK_CAP
    assert len(entry.summary.encode()) <= SUMMARY_CAP


def test_bozo_feed_keeps_entries_and_reports_a_warning() -> None:
    # A bare "&" in a description: not well-formed, but the entries are readable.
    body = rss(item(guid="1", desc="Q&A with the envoy") + item(guid="2", link="/b"))
    parsed = parse_feed(body, RSS, URL)
    assert [e.guid for e in parsed.entries] == ["1", "2"]
    assert parsed.warning is not None and "SAXParseException" in parsed.warning


def test_real_bozo_feed_from_the_corpus() -> None:
    path = FEEDS / "rss-parser__phys-org-daily-sci-tech-news.rss"
    parsed = parse_feed(path.read_bytes(), RSS, "https://phys.org/rss-feed/")
    assert len(parsed.entries) == 30
    assert parsed.warning is not None and "not well-formed" in parsed.warning


def test_missing_or_html_content_type_is_a_warning_not_an_error() -> None:
    body = rss(item())
    for headers in ({}, {"content-type": "text/html; charset=utf-8"}):
        parsed = parse_feed(body, headers, URL)
        assert len(parsed.entries) == 1
        assert parsed.warning is not None and "NonXMLContentType" in parsed.warning


def test_empty_but_valid_feed_is_not_an_error() -> None:
    parsed = parse_feed(rss(""), RSS, URL)
    assert parsed.entries == ()
    assert parsed.title == "Desk"


@pytest.mark.parametrize(
    ("body", "headers", "needle"),
    [
        (
            b"<!DOCTYPE html><html><head><title>Log in</title></head><body><p>Sign in</p></body>"
            b"</html>",
            {"content-type": "text/html; charset=utf-8"},
            "not an RSS/Atom/JSON feed",
        ),
        (b"", RSS, "empty document"),
        (b"  \n\t ", RSS, "empty document"),
        (b"\x00\x01\xff\xfe garbage \x00", RSS, "not an RSS/Atom"),
        (b"Service Unavailable", {"content-type": "text/plain"}, "not an RSS/Atom"),
        (b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>', RSS, "no entries"),
    ],
)
def test_documents_that_are_not_feeds_raise_parse_error(
    body: bytes, headers: dict[str, str], needle: str
) -> None:
    with pytest.raises(ParseError) as info:
        parse_feed(body, headers, URL)
    assert info.value.kind == "parse_error"
    assert needle in str(info.value)


def test_guid_shared_by_different_items_is_dropped() -> None:
    body = rss(
        item(guid="https://news.example.org/", link="/a", title="A")
        + item(guid="https://news.example.org/", link="/b", title="B")
        + item(guid="unique", link="/c", title="C")
        + item(guid="repeated", link="/d", title="D")
        + item(guid="repeated", link="/d", title="D edited")
    )
    entries = parse_feed(body, RSS, URL).entries
    assert [e.guid for e in entries] == [None, None, "unique", "repeated", "repeated"]
    keys = [normalize_entry(e, "s").entry_key for e in entries]
    assert keys[:2] == ["url:https://news.example.org/a", "url:https://news.example.org/b"]


# --------------------------------------------------------------------------- entities


def _blowup(entity_kb: int = 10, refs: int = 2000) -> bytes:
    value = "x" * (entity_kb * 1024)
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY a "{value}">\n]>\n'
        f'<rss version="2.0"><channel><title>{"&a;" * refs}</title>{item()}</channel></rss>'
    ).encode()


def _feedparser_must_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal must come before feedparser (whose expansion or loose parse is the cost)
    and before the fast path."""
    no_parser_reached(monkeypatch)


def test_quadratic_blowup_is_rejected_before_feedparser(monkeypatch: pytest.MonkeyPatch) -> None:
    body = _blowup()
    _feedparser_must_not_run(monkeypatch)
    with pytest.raises(ParseError) as info:
        parse_feed(body, RSS, URL)
    assert info.value.kind == "rejected_entities"
    assert "<!ENTITY" in str(info.value)


@pytest.mark.parametrize(
    "prolog",
    [
        '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>',
        '<!doctype rss [<!entity a "aaaa">]>',  # lower case: the loose parser accepts it
        '<!-- <!DOCTYPE nothing> --><!DOCTYPE rss [<!-- <rss> --><!ENTITY a "x">]>',
        '<!DOCTYPE rss [<!ENTITY % ext SYSTEM "http://169.254.169.254/"> %ext;]>',
        "<!DOCTYPE rss [<!ATTLIST x y CDATA '>'><!ENTITY a 'b'>]>",
    ],
)
def test_entity_declarations_are_rejected(prolog: str) -> None:
    body = f'<?xml version="1.0"?>\n{prolog}\n<rss version="2.0"><channel>{item()}</channel></rss>'
    with pytest.raises(ParseError) as info:
        parse_feed(body.encode(), RSS, URL)
    assert info.value.kind == "rejected_entities"


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_entities_in_wide_encodings_are_rejected(codec: str) -> None:
    text = _blowup(1, 50).decode().replace('<?xml version="1.0"?>', "<?xml version='1.0'?>")
    body = text.encode(codec)
    if codec in ("utf-16-le", "utf-16-be"):  # no BOM: detected from the "<?" byte pattern
        assert not body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    with pytest.raises(ParseError) as info:
        parse_feed(body, RSS, URL)
    assert info.value.kind == "rejected_entities"


def test_doctype_without_entities_and_entity_text_in_content_are_accepted() -> None:
    netscape = (
        '<?xml version="1.0"?>\n<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"'
        ' "http://my.netscape.com/publish/formats/rss-0.91.dtd">\n<rss version="0.91"><channel>'
        "<title>n</title>"
        + item(desc="<![CDATA[How <!ENTITY a 'x'> declarations work]]>")
        + "</channel></rss>"
    )
    parsed = parse_feed(netscape.encode(), RSS, URL)
    assert len(parsed.entries) == 1
    assert "ENTITY" in parsed.entries[0].summary


def test_doctype_running_past_the_scanned_prolog_is_rejected() -> None:
    # "<rss>" inside the DOCTYPE's literal ends feedparser's own prolog scan early; ours goes on.
    body = b'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "<rss> ' + b"pad " * 20000 + b'"><rss/>'
    with pytest.raises(ParseError) as info:
        check_entities(body)
    assert info.value.kind == "rejected_entities"
    assert "64 KiB" in str(info.value)


def test_no_element_in_the_first_64_kib_is_not_a_feed() -> None:
    body = b'<?xml version="1.0"?>' + b"<!-- pad -->" * 7000 + b"<rss/>"
    with pytest.raises(ParseError) as info:
        parse_feed(body, RSS, URL)
    assert info.value.kind == "parse_error"


# --------------------------------------------------------------------------- JSON Feed


def test_json_feed_1_0() -> None:
    path = FEEDS / "feed-rs__jsonfeed_daringfireball_1.0.json"
    parsed = parse_feed(path.read_bytes(), {"content-type": "application/json"}, URL)
    assert parsed.title == "Daring Fireball"
    assert parsed.warning is None
    first = parsed.entries[0]
    assert first.guid == "https://daringfireball.net/linked/2020/01/24/bezos-iphone-x"
    assert first.link == "https://daringfireball.net/linked/2020/01/24/bezos-iphone-x"
    assert first.title == "How Jeff Bezos’s iPhone X Was Hacked"
    assert first.summary.startswith("<p>Good summary from The New York Times.")
    assert first.published == datetime(2020, 1, 24, 23, 46, 57, tzinfo=UTC)
    assert first.author == "John Gruber"  # 1.0: the item's "author" object
    assert parsed.entries[1].title == "Instagram for Windows 95"


def test_json_feed_1_1() -> None:
    path = FEEDS / "feed-rs__jsonfeed_influxdata_1.1.json"
    # Detected by the leading "{" even when the server calls it text/plain.
    parsed = parse_feed(path.read_bytes(), {"content-type": "text/plain"}, URL)
    assert parsed.title == "Blog – InfluxData"  # "&#8211;" in the JSON title, decoded
    assert len(parsed.entries) == 3
    first = parsed.entries[0]
    assert first.guid is None
    assert first.link == (
        "https://www.influxdata.com/blog/"
        "influxdb-outperforms-graphite-in-time-series-data-metrics-benchmark"
    )
    assert first.author == "Chris Churilo"  # 1.1: the first of "authors"
    assert first.published == datetime(2019, 5, 31, 19, 17, 58, tzinfo=UTC)  # RFC 822, -0700
    assert first.summary.startswith("This blog post has been updated on September 10, 2020")
    article = normalize_entry(first, "influx")
    assert article.title == "InfluxDB vs. Graphite for Time Series Data & Metrics Benchmark"
    assert article.entry_key.startswith("url:https://www.influxdata.com/blog/")


def test_json_feed_text_fields_and_odd_items() -> None:
    body = b"""{"version": "https://jsonfeed.org/version/1.1", "title": "T",
      "items": [
        {"id": 42, "url": "/p/42", "title": "Use <b> & tell", "content_text": "a < b"},
        "not an object",
        {"id": "x", "external_url": "https://ext.example/y", "summary": "S",
         "date_modified": "2024-02-03T04:05:06+09:00"}
      ]}"""
    parsed = parse_feed(body, {"content-type": "application/feed+json"}, URL)
    assert parsed.warning == "1 items are not JSON objects and were skipped"
    first, second = parsed.entries
    assert first.guid == "42"
    assert first.link == "https://news.example.org/p/42"
    art = normalize_entry(first, "j")
    assert (art.title, art.text) == ("Use <b> & tell", "a < b")
    assert second.link == "https://ext.example/y"
    assert second.summary == "S"
    assert second.published == datetime(2024, 2, 2, 19, 5, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"version": "https://jsonfeed.org/version/1", "items": [', "invalid JSON"),
        (b'{"version": "https://jsonfeed.org/version/1"}', 'no top-level "items" list'),
        (b'[{"items": []}]', 'no top-level "items" list'),
    ],
)
def test_broken_json_feeds(body: bytes, needle: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_feed(body, {"content-type": "application/feed+json"}, URL)
    assert info.value.kind == "parse_error"
    assert needle in str(info.value)


def test_nul_and_lone_surrogates_never_reach_the_database() -> None:
    # PostgreSQL refuses NUL in text and lone surrogates cannot be encoded as UTF-8.
    body = (
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "a\\u0000b",'
        b' "title": "x\\ud800y \\ud83d\\ude00", "content_text": "n\\u0000ul"}]}'
    )
    (entry,) = parse_feed(body, {}, URL).entries
    art = normalize_entry(entry, "j")
    assert (art.entry_key, art.title, art.text) == ("guid:ab", "x?y \U0001f600", "nul")
    (entry,) = parse_feed(rss(item(title="a\x00b", guid="g\x00")), RSS, URL).entries
    assert "\x00" not in entry.title + (entry.guid or "")


def test_unknown_json_feed_version_is_a_warning() -> None:
    parsed = parse_feed(b'{"items": [{"id": "1", "title": "t"}]}', {}, URL)
    assert len(parsed.entries) == 1
    assert parsed.warning is not None and "unknown JSON Feed version" in parsed.warning


# --------------------------------------------------------------------------- robustness

_SEEDS = [
    (FEEDS / name).read_bytes()[:6000]
    for name in (
        "rss-parser__nhs-feed.rss",
        "feed-rs__atom_xml_base.xml",
        "feed-rs__jsonfeed_daringfireball_1.0.json",
        "feed-rs__rss_1.0_iso8859.rdf",
    )
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(_SEEDS),
    cut=st.integers(min_value=0, max_value=6000),
    junk=st.binary(max_size=40),
    at=st.integers(min_value=0, max_value=6000),
    ctype=st.sampled_from(["application/xml", "text/html", "application/json", ""]),
)
def test_mangled_documents_raise_nothing_but_parse_error(
    seed: bytes, cut: int, junk: bytes, at: int, ctype: str
) -> None:
    body = seed[:cut]
    body = body[:at] + junk + body[at:]
    try:
        parsed = parse_feed(body, {"content-type": ctype} if ctype else {}, URL)
    except ParseError as exc:
        assert exc.kind in ("parse_error", "rejected_entities")
        return
    for entry in parsed.entries:
        normalize_entry(entry, "fuzz")


def test_format_is_decided_by_the_body_first() -> None:
    # An RSS feed mislabelled as JSON is still read as RSS, and header names may be any case.
    parsed = parse_feed(rss(item()), {"Content-Type": "application/json"}, URL)
    assert len(parsed.entries) == 1
    with pytest.raises(ParseError) as info:
        parse_feed(b"not json, not xml", {"content-type": "application/feed+json"}, URL)
    assert "invalid JSON" in str(info.value)


def test_only_web_links_are_kept() -> None:
    body = rss(
        item(guid="1", link="javascript:alert(document.cookie)")
        + item(guid="2", link="data:text/html,hi")
        + item(guid="3", link="//cdn.example.net/story")
    )
    links = [e.link for e in parse_feed(body, RSS, URL).entries]
    assert links == [None, None, "https://cdn.example.net/story"]
    json_body = b'{"items": [{"id": "1", "url": "javascript:x()"}, {"id": "2", "url": "/p"}]}'
    links = [e.link for e in parse_feed(json_body, {}, URL).entries]
    assert links == [None, "https://news.example.org/p"]


def test_large_html_page_is_refused_before_feedparser(monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"<!DOCTYPE html>\n<html><body>" + b'<p>hello <a href="/x">x</a></p>' * 60000
    _feedparser_must_not_run(monkeypatch)  # its loose parser takes seconds on this page
    with pytest.raises(ParseError) as info:
        parse_feed(body, {"content-type": "text/html"}, URL)
    assert "an HTML page, not an RSS/Atom/JSON feed" in str(info.value)


@pytest.mark.parametrize(
    ("body", "root"),
    [
        (b'<?xml version="1.0"?><!-- <x> --><rss version="2.0">', "rss"),
        (b"<!DOCTYPE html>\n<HTML lang=en>", "HTML"),
        (b'\xef\xbb\xbf<feed xmlns="http://www.w3.org/2005/Atom">', "feed"),
        (b'<!DOCTYPE rss PUBLIC "-//Netscape//DTD RSS 0.91//EN" "x.dtd">\n<rss>', "rss"),
        ('<?xml version="1.0" encoding="utf-16"?><rdf:RDF>'.encode("utf-16"), "rdf:RDF"),
        (b"junk before <rss>", ""),
    ],
)
def test_root_element_name(body: bytes, root: str) -> None:
    assert check_entities(body) == root
