"""normalize: canonical URLs, plain text, content hashes, entry keys, and what they cost."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.model import ParsedEntry
from monitor.normalize import (
    canonical_url,
    content_hash,
    html_to_text,
    is_edit,
    normalize_entry,
)
from monitor.parse import parse_feed


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://WWW.NKNews.ORG/2021/07/x/", "https://www.nknews.org/2021/07/x/"),
        ("https://www.nknews.org:443/a", "https://www.nknews.org/a"),
        ("http://example.com:80", "http://example.com/"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),  # not the https default
        ("https://example.com/a#comments", "https://example.com/a"),
        ("https://example.com/a?b=2&a=1", "https://example.com/a?a=1&b=2"),
        ("https://example.com/a?utm_source=rss&utm_medium=feed&id=7", "https://example.com/a?id=7"),
        ("https://example.com/a?UTM_Campaign=x&id=7", "https://example.com/a?id=7"),
        ("https://example.com/a?fbclid=IwAR0&gclid=Cj0&msclkid=1&id=7", "https://example.com/a?id=7"),
        ("https://www.msn.com/en-us/news/world/x/ar-AA1?ocid=msedgntp&cvid=2",
         "https://www.msn.com/en-us/news/world/x/ar-AA1?cvid=2"),
        ("https://www.nytimes.com/2023/a.html?smid=tw-share", "https://www.nytimes.com/2023/a.html"),
        ("https://www.bbc.co.uk/news/a?at_medium=RSS&at_campaign=KARANGA",
         "https://www.bbc.co.uk/news/a"),
        ("https://example.com/a?q=a%20b&q=a+c", "https://example.com/a?q=a%20b&q=a+c"),  # as sent
        ("https://example.com/a?&&x=1&", "https://example.com/a?x=1"),
        ("https://example.com/a?flag", "https://example.com/a?flag"),
        ("https://example.com/%7euser/%e2%80%99", "https://example.com/%7Euser/%E2%80%99"),
        ("https://Example.COM./a", "https://example.com/a"),
        ("https://연합뉴스.KR/nk", "https://xn--vg1b002akocy6v.kr/nk"),
        ("https://xn--vg1b002akocy6v.kr/nk", "https://xn--vg1b002akocy6v.kr/nk"),
        ("https://user:Secret@Example.com/a", "https://user:Secret@example.com/a"),
        ("http://[2001:DB8::1]:80/a", "http://[2001:db8::1]/a"),
        ("  https://example.com/a \n", "https://example.com/a"),
        ("https://example.com/Case/Path", "https://example.com/Case/Path"),
        ("tag:example.com,2006:/blog/", "tag:example.com,2006:/blog/"),
        ("/relative/only", "/relative/only"),
        ("http://[::1", "http://[::1"),  # unparseable: returned as given
        ("", ""),
    ],
)  # fmt: skip
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


@given(st.text(max_size=300))
def test_canonical_url_is_idempotent_and_total(url: str) -> None:
    once = canonical_url(url)
    assert canonical_url(once) == once


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("plain   text\n here", "plain text here"),
        ("Kim&nbsp;Jong&#160;Un", "Kim Jong Un"),
        ("AT&amp;T &lt;b&gt; &#8216;quoted&#8217;", "AT&T <b> ‘quoted’"),
        ("x &amp;amp; y", "x &amp; y"),  # decoded once, as published
        ("wor<b>d</b>s <i>in</i>line", "words inline"),
        ("<p>One</p><p>Two</p>", "One\nTwo"),
        ("line<br>break<br/>again", "line\nbreak\nagain"),
        ("<ul><li>a</li><li>b</li></ul>", "a\nb"),
        ("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"),
        ("<div><h2>Head</h2>Body <a href='x'>link</a></div>", "Head\nBody link"),
        ("<p>x</p><script>alert('<p>')</script><style>p{}</style><p>y</p>", "x\ny"),
        ("<!-- comment --><p>shown</p>", "shown"),
        ("<html><head><title>t</title></head><body><p>doc</p></body></html>", "doc"),
        ("<p>   </p><p>\n</p>", ""),
        ("<img src='x.jpg' alt='photo'>", ""),
        ("unclosed <b>bold", "unclosed bold"),
        ("a < b and c > d", "a < b and c > d"),
        ("form\ffeed<p>x", "form feed\nx"),
        ("", ""),
    ],
)
def test_html_to_text(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


def test_escaped_article_html_in_content_encoded() -> None:
    # Like CNA's feed: a whole article, escaped, in content:encoded and no description.
    body = b"""<?xml version="1.0"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>c</title>
<item><title>T</title><link>https://cna.example/a</link>
<content:encoded>&lt;div class="text"&gt;&lt;p&gt;SEOUL: Kim &amp;amp; Putin&lt;/p&gt;&lt;figure&gt;
&lt;img src="x.jpg"&gt;&lt;figcaption&gt;Photo: Reuters&lt;/figcaption&gt;&lt;/figure&gt;
&lt;p&gt;Second&amp;nbsp;paragraph.&lt;/p&gt;&lt;/div&gt;</content:encoded></item></channel></rss>"""
    parsed = parse_feed(body, {"content-type": "application/rss+xml"}, "https://cna.example/")
    text = normalize_entry(parsed.entries[0], "cna").text
    assert text == "SEOUL: Kim & Putin\nPhoto: Reuters\nSecond paragraph."


def test_content_hash() -> None:
    base = content_hash("Title", "Body text")
    assert len(base) == 64 and int(base, 16) >= 0
    assert content_hash("  Title ", "Body\n  text") == base  # whitespace is folded
    assert content_hash("Cafe\u0301", "x") == content_hash("Café", "x")  # NFC
    assert content_hash("Title", "Body text.") != base
    assert content_hash("Title Body", "text") != base  # the boundary is part of the content
    assert content_hash("title", "Body text") != base


def entry(**kw: object) -> ParsedEntry:
    fields: dict[str, object] = {
        "guid": None, "link": None, "title": "T", "summary": "S", "published": None,
    }  # fmt: skip
    fields.update(kw)
    return ParsedEntry(**fields)  # type: ignore[arg-type]


def test_entry_key_prefers_guid_then_link_then_content() -> None:
    with_guid = normalize_entry(entry(guid=" 123 ", link="https://x.example/a"), "src")
    assert with_guid.entry_key == "guid:123"
    with_link = normalize_entry(entry(link="https://X.example/a?utm_source=rss#c"), "src")
    assert with_link.entry_key == "url:https://x.example/a"
    assert with_link.link == "https://X.example/a?utm_source=rss#c"  # kept as published
    bare = normalize_entry(entry(title="<b>T</b>"), "src")
    assert bare.entry_key == "hash:" + bare.content_hash == "hash:" + content_hash("T", "S")
    assert bare.url == "" and bare.link == ""
    # A GUID that looks like a URL never collides with a link key of the same text.
    assert normalize_entry(entry(guid="https://x.example/a"), "s").entry_key != (
        with_link.entry_key
    )


def test_long_keys_are_hashed_within_the_column() -> None:
    art = normalize_entry(entry(guid="g" * 2000), "s")
    assert art.entry_key.startswith("guid:sha256:") and len(art.entry_key) == 12 + 64
    art = normalize_entry(entry(link="https://x.example/" + "p" * 1500), "s")
    assert art.entry_key.startswith("url:sha256:")
    assert art.url == "https://x.example/" + "p" * 1500


def test_article_fields() -> None:
    when = datetime(2021, 7, 27, tzinfo=UTC)
    art = normalize_entry(
        entry(title="Kim\n <em>sends</em>  letter", summary="<p>One</p><p>Two</p>",
              published=when, link="https://x.example/a"),
        "desk",
    )  # fmt: skip
    assert art.source_id == "desk"
    assert art.title == "Kim sends letter"
    assert art.text == "One\nTwo"
    assert art.published == when
    assert art.content_hash == content_hash("Kim sends letter", "One\nTwo")


def test_edited_entry_keeps_its_key_and_changes_its_hash() -> None:
    first = normalize_entry(entry(guid="1", title="N. Korea fires missile"), "s")
    edited = normalize_entry(entry(guid="1", title="N. Korea fires ballistic missile"), "s")
    assert first.entry_key == edited.entry_key
    assert first.content_hash != edited.content_hash


@given(st.text(alphabet=st.sampled_from(list("ab <>/&;#pdivbrtle\n\t\f\x00\u00a0")), max_size=200))
def test_html_to_text_output_is_folded(html: str) -> None:
    text = html_to_text(html)
    assert "\f" not in text and "  " not in text and "\t" not in text
    assert text == text.strip()
    assert all(line == line.strip() and line for line in text.split("\n")) or text == ""


def _edited(title: str, text: str) -> ParsedEntry:
    return ParsedEntry("g", "https://example.org/a", title, text, None)


KIM = "Kim visits Russia"
FIRES = "N. Korea fires missiles"


@pytest.mark.parametrize(
    ("before", "after", "edit"),
    [
        # counters, ages and times in the text are not news
        ((KIM, "1,234 views"), (KIM, "1,301 views"), False),
        ((KIM, "Updated 5 min ago. Text."), (KIM, "Updated 12 min ago. Text."), False),
        ((KIM, "Seen by 9 people"), (KIM, "Seen by 10\npeople "), False),
        ((KIM, "He said."), ("Kim  visits\tRussia", "he said!"), False),
        ((KIM, "views"), (KIM, "1,200 views"), False),  # a number appears in the text
        # the documented price: a numbers-only correction of the text alone does not count
        ((FIRES, "It fired 3 missiles."), (FIRES, "It fired 5 missiles."), False),
        # the title counts as written, numbers included
        (("N. Korea fires 3 missiles", "x"), ("N. Korea fires 5 missiles", "x"), True),
        ((KIM, "x"), ("Kim visits Russia by train", "x"), True),
        # words of the text count
        ((KIM, "He met Putin."), (KIM, "He met Shoigu."), True),
        ((KIM, "The 3rd visit"), (KIM, "The 4th visit"), True),
    ],
)
def test_an_edit_must_change_more_than_numbers_of_the_text(
    before: tuple[str, str], after: tuple[str, str], edit: bool
) -> None:
    article = normalize_entry(_edited(*after), "s")
    assert is_edit(*before, article) is edit
