"""Every corpus document goes through parse and normalize; the real feeds give known entry counts.

The counts were read off the documents (items in the XML, objects in `items`) and cross-checked
against bare feedparser; a change in them means the parser lost or invented entries.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from monitor.model import Article
from monitor.normalize import normalize_entry
from monitor.parse import ParseError, parse_feed
from tests.support.parsers import each_parser  # noqa: F401  (both parse paths)
from tests.support.paths import FEEDPARSER_TESTS, FEEDS

# file → (entries, distinct entry keys); None: the document must be refused with ParseError.
FEED_COUNTS: dict[str, tuple[int, int] | None] = {
    "feed-rs__atom_xml_base.xml": (1, 1),
    "feed-rs__jsonfeed_daringfireball_1.0.json": (2, 2),
    "feed-rs__jsonfeed_influxdata_1.1.json": (3, 3),
    "feed-rs__rss_1.0_iso8859.rdf": (1, 1),
    "feed-rs__rss_2.0_ilgiornale.xml": (1, 1),
    "feed-rs__rss_2.0_ilmessaggero.xml": (1, 1),
    "feed-rs__rss_2.0_nbcny.xml": (1, 1),
    "feed-rs__rss_2.0_relurl_1.xml": (2, 2),
    "feed-rs__rss_2.0_reuters_invalid_1.xml": None,  # truncated before the first <item>
    "feed-rs__rss_2.0_spiegel.xml": (1, 1),
    # knews-rss archives repeat items verbatim (same GUID, link and text): stored once each.
    "knews-rss__hani.xml": (300, 273),
    "knews-rss__newsis.xml": (160, 153),
    "knews-rss__tongilnews.xml": (150, 138),
    "miniflux__bbc_urdu.xml": (26, 26),
    "miniflux__cerclepsy_no_encoding_ISO-8859-1.xml": (10, 10),
    "miniflux__golem_ISO-8859-1.xml": (40, 40),
    "miniflux__heise_rdf_0.9.xml": (60, 60),
    "miniflux__ibash_WINDOWS-1251.xml": (50, 50),
    "miniflux__large_atom.xml": (25, 25),
    "rbpool__bloomberg_politics.xml": (20, 20),
    "rbpool__cna_world.xml": (9, 9),
    "rbpool__devdiscourse_discovery.xml": (12, 12),
    "rbpool__google_news_reuters_pool.xml": (100, 100),
    "rbpool__theprint_discovery.xml": (12, 12),
    "rss-parser__customfields.rss": (15, 15),
    "rss-parser__encoding-gb2312.xml": (1, 1),
    "rss-parser__encoding.rss": (40, 40),
    "rss-parser__giantbomb-podcast.rss": (730, 730),
    "rss-parser__guardian.rss": (55, 55),
    "rss-parser__heise.atom": (15, 15),
    "rss-parser__nhs-feed.rss": (2, 2),
    "rss-parser__phys-org-daily-sci-tech-news.rss": (30, 30),
    "rss-parser__science-rss1.rdf": (69, 69),
    "rss-parser__uolNoticias.rss": (15, 15),
}

# Documents of the feedparser test corpus that are not feeds we accept, by folder and kind:
# `entities/` holds channel-only documents using undeclared HTML entities (not well-formed, no
# entries); `wellformed/cdf` is Microsoft CDF, not a feed format; two documents declare entities.
EXPECTED_REFUSALS = Counter(
    {
        ("entities", "parse_error"): 253,
        ("wellformed", "parse_error"): 7,
        ("illformed", "parse_error"): 3,
        ("encoding", "parse_error"): 1,
        ("wellformed", "rejected_entities"): 2,
    }
)
_HEADER = re.compile(r"^Header:\s*([\w-]+):\s*(.*?)\s*$", re.MULTILINE)


def _content_type(path: Path) -> str:
    return "application/feed+json" if path.suffix == ".json" else "application/rss+xml"


def _check_articles(articles: list[Article], source: str) -> None:
    for art in articles:
        assert art.source_id == source
        assert art.entry_key.split(":", 1)[0] in {"guid", "url", "hash"}
        assert len(art.entry_key) <= 600
        assert len(art.content_hash) == 64
        assert "\n" not in art.title
        if art.published is not None:
            assert art.published.utcoffset() is not None


def test_every_real_feed_file_is_in_the_table() -> None:
    assert sorted(p.name for p in FEEDS.iterdir()) == sorted(FEED_COUNTS)


@pytest.mark.parametrize("name", sorted(FEED_COUNTS))
def test_real_feed_entry_counts(name: str) -> None:
    path = FEEDS / name
    headers = {"content-type": _content_type(path)}
    expected = FEED_COUNTS[name]
    if expected is None:
        with pytest.raises(ParseError) as info:
            parse_feed(path.read_bytes(), headers, f"http://127.0.0.1/{name}")
        assert info.value.kind == "parse_error"
        assert "no entries" in str(info.value)
        return
    parsed = parse_feed(path.read_bytes(), headers, f"http://127.0.0.1/{name}")
    articles = [normalize_entry(entry, "src") for entry in parsed.entries]
    _check_articles(articles, "src")
    assert (len(parsed.entries), len({a.entry_key for a in articles})) == expected
    # One real item (cerclepsy) is an empty <item> with only a date; all others have text.
    assert sum(1 for a in articles if not (a.title or a.text)) <= 1


@pytest.mark.slow
def test_feedparser_corpus_parses_or_is_refused_cleanly() -> None:
    refusals: Counter[tuple[str, str]] = Counter()
    documents = entries = 0
    for path in sorted(FEEDPARSER_TESTS.rglob("*")):
        if not path.is_file() or path.name == "LICENSE":
            continue
        body = path.read_bytes()
        # The corpus states the HTTP headers each document was served with in a comment.
        headers = {k.lower(): v for k, v in _HEADER.findall(body[:4096].decode("latin-1"))}
        headers.setdefault("content-type", _content_type(path))
        documents += 1
        try:
            parsed = parse_feed(body, headers, f"http://127.0.0.1/{path.name}")
        except ParseError as exc:
            refusals[(path.relative_to(FEEDPARSER_TESTS).parts[0], exc.kind)] += 1
            continue
        articles = [normalize_entry(entry, "fp") for entry in parsed.entries]
        _check_articles(articles, "fp")
        entries += len(articles)
    assert documents == 2107
    assert refusals == EXPECTED_REFUSALS
    assert entries > 1000
