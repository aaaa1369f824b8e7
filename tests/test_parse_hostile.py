"""Hostile documents through `parse_feed` / `parse_html_page`: entity declarations hidden from
the prolog guard, encodings that are not ASCII-compatible, internal DTD subsets, documents with
more structure than any feed carries, and dates past what a datetime holds."""

from __future__ import annotations

import gzip
import time
import typing
from datetime import UTC, datetime

import pytest

from monitor.model import ErrorKind, HtmlSelectors
from monitor.parse import ParseError, ParseErrorKind, parse_feed, parse_html_page
from monitor.parse.dates import parse_date
from tests.support.parsers import (  # each_parser: every test on both parse paths
    each_parser,  # noqa: F401
    no_parser_reached,
)

URL = "https://news.example.org/feed"
XML = {"content-type": "application/rss+xml"}


def _bomb(prolog: str, *, value_kb: int = 4, refs: int = 200, declaration: str = "") -> str:
    """A quadratic entity blowup behind `prolog` (what comes before the DOCTYPE)."""
    value = "x" * (value_kb * 1024)
    return (
        f'<?xml version="1.0"{declaration}?>{prolog}<!DOCTYPE rss [<!ENTITY a "{value}">]>'
        f'<rss version="2.0"><channel><title>t</title><item><title>{"&a;" * refs}</title>'
        "<guid>1</guid></item></channel></rss>"
    )


@pytest.fixture
def no_feedparser(monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal must come before feedparser, whose loose parser is the cost, and before the
    fast path."""
    no_parser_reached(monkeypatch)


def _refused(body: bytes, headers: dict[str, str] | None = None) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_feed(body, XML if headers is None else headers, URL)
    return info.value


# ------------------------------------------------------------------------ entity guard bypasses


@pytest.mark.parametrize(
    "prolog",
    [
        "<!-- <a -->",  # a comment holding "<a": the old guard took it for the root element
        "<!-- <rss version='2.0'> -->",
        "<?pi <a ?>",  # the same inside a processing instruction
        "<?xml-stylesheet href='<a'?>",
        "junk text ",  # text XML does not allow there: a lenient parser reads on
    ],
)
def test_entities_hidden_behind_markup_in_the_prolog_are_refused(
    no_feedparser: None, prolog: str
) -> None:
    error = _refused(_bomb(prolog).encode())
    assert error.kind == "rejected_entities", error


@pytest.mark.parametrize(
    ("declaration", "headers"),
    [
        (' encoding="utf-7"', XML),  # declared in the document
        ("", {"content-type": "application/xml; charset=utf-7"}),  # or by the server
        (' encoding="UTF-7"', {}),
    ],
)
def test_utf7_documents_are_refused(
    no_feedparser: None, declaration: str, headers: dict[str, str]
) -> None:
    text = _bomb("", declaration=declaration)
    body = text.replace("<!DOCTYPE", "+ADw-!DOCTYPE").replace("<!ENTITY", "+ADw-!ENTITY")
    assert b"<!ENTITY" not in body.encode() and "<!ENTITY" in body.encode().decode("utf-7")
    error = _refused(body.encode(), headers)
    assert error.kind == "rejected_entities"
    assert "not ASCII-compatible" in str(error)


def test_utf7_reached_by_falling_back_past_an_invalid_byte_is_refused(no_feedparser: None) -> None:
    """feedparser only keeps an encoding under which the whole body decodes: one bad UTF-8 byte
    far down sends it to the document's own declaration."""
    body = _bomb("", declaration=' encoding="utf-7"').replace("<!ENTITY", "+ADw-!ENTITY")
    raw = body.encode() + b"<!-- " + b"p" * 300_000 + b"\xff -->"
    error = _refused(raw, {"content-type": "application/xml; charset=utf-8"})
    assert error.kind == "rejected_entities"


def test_ebcdic_documents_are_refused(no_feedparser: None) -> None:
    body = '<?xml version="1.0" encoding="cp037"?><rss version="2.0"><channel/></rss>'
    error = _refused(body.encode("cp037"), {})
    assert error.kind == "rejected_entities" and "cp037" in str(error)


@pytest.mark.parametrize("codec", ["utf-16", "utf-32"])
def test_wide_encodings_with_a_bom_are_decoded_and_scanned(codec: str) -> None:
    good = (
        f"<?xml version='1.0' encoding='{codec}'?><rss version='2.0'><channel><title>t</title>"
        "<item><title>Wide</title><guid>w</guid></item></channel></rss>"
    )
    header = {"content-type": f"application/xml; charset={codec}"}
    assert [e.title for e in parse_feed(good.encode(codec), header, URL).entries] == ["Wide"]
    bad = _bomb("<!-- <a -->").replace('"1.0"', f"'1.0' encoding='{codec}'")
    assert _refused(bad.encode(codec), header).kind == "rejected_entities"


@pytest.mark.parametrize(
    "subset",
    [
        "<!DOCTYPE rss [ ]>",  # empty, but a subset all the same
        "<!DOCTYPE rss [<!ELEMENT rss ANY>]>",
        "<!DOCTYPE rss SYSTEM 'x.dtd' [<!ATTLIST rss version CDATA '2.0'>]>",
        '<!DOCTYPE rss PUBLIC "-//x//EN" "a]b>.dtd" [<!NOTATION n SYSTEM "n">]>',
    ],
)
def test_any_internal_dtd_subset_is_refused(no_feedparser: None, subset: str) -> None:
    body = f'<?xml version="1.0"?>{subset}<rss version="2.0"><channel/></rss>'
    error = _refused(body.encode())
    assert error.kind == "rejected_entities" and "internal DTD subset" in str(error)


def test_ordinary_encodings_and_doctypes_still_parse() -> None:
    from monitor.parse.entities import ascii_compatible

    for codec in ("utf-8", "iso-8859-1", "windows-1251", "shift_jis", "gb18030", "euc-kr"):
        assert ascii_compatible(codec), codec
    for codec in ("utf-7", "cp037", "cp500", "utf-16", "no-such-codec"):
        assert not ascii_compatible(codec), codec
    body = (
        '<?xml version="1.0" encoding="windows-1251"?>\n'
        '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" '
        '"http://my.netscape.com/publish/formats/rss-0.91.dtd">\n'
        "<!-- <a --><rss version='0.91'><channel><title>t</title>"
        "<item><title>Привет</title><link>https://x.example/1</link></item></channel></rss>"
    ).encode("windows-1251")
    parsed = parse_feed(body, XML, URL)
    assert [e.title for e in parsed.entries] == ["Привет"]


def test_the_8_mib_bomb_is_refused_in_milliseconds(no_feedparser: None) -> None:
    """The reported document: 8 MB (10 KB gzipped) that took ~3 GB behind `<!-- <a -->`."""
    body = _bomb("<!-- <a -->", value_kb=10, refs=2_700_000).encode()
    assert len(body) > 8_000_000 and len(gzip.compress(body)) < 64 * 1024
    started = time.process_time()
    assert _refused(body).kind == "rejected_entities"
    assert time.process_time() - started < 1.0


# ------------------------------------------------------------------------------- too_complex


def test_too_complex_is_a_parse_error_kind_and_an_error_kind() -> None:
    assert "too_complex" in typing.get_args(ParseErrorKind)
    assert set(typing.get_args(ParseErrorKind)) <= set(typing.get_args(ErrorKind))


def _wrapped(inner: str) -> bytes:
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<item><title>x</title><guid>1</guid><description>{inner}</description></item>"
        "</channel></rss>"
    ).encode()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (_wrapped("<a>" * 400_000 + "</a>" * 400_000), "deeper than 256 levels"),
        (_wrapped("<a/>" * 400_000), "more than 100,000 elements"),
        (_wrapped("<a></a>" * 100_001), "more than 100,000 elements"),  # limits.MAX_ELEMENTS
    ],
    ids=["nested", "self-closed", "flat"],
)
def test_xml_with_too_much_structure_is_too_complex(
    no_feedparser: None, body: bytes, needle: str
) -> None:
    started = time.process_time()
    error = _refused(body)
    assert error.kind == "too_complex" and needle in str(error)
    assert time.process_time() - started < 1.0  # feedparser needed ~10 s for 400,000


def test_markup_inside_cdata_and_comments_and_unclosed_tags_do_not_count() -> None:
    html = "<p>para" + "<br>" * 2000 + "<b>" * 300 + "</p>"  # unclosed <b>s, closed by </p>
    items = "".join(
        f"<item><title>t{i}</title><guid>{i}</guid><description><![CDATA[{html}]]>"
        f"</description><!-- {'<x>' * 300} --></item>"
        for i in range(3)
    )
    body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel>'
    assert len(parse_feed((body + "</rss>").encode(), XML, URL).entries) == 3
    # Unclosed inline tags in raw HTML are closed by </description>: they never pile up.
    unclosed = "".join(
        f"<item><title>t{i}</title><guid>{i}</guid><description>{'<b>' * 200}</description></item>"
        for i in range(3)
    )
    raw_html = f'<?xml version="1.0"?><rss version="2.0"><channel>{unclosed}</channel></rss>'
    assert len(parse_feed(raw_html.encode(), XML, URL).entries) == 3


def test_deep_json_feed_is_too_complex() -> None:
    body = (
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "1", "x": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}]}"
    )
    error = _refused(body, {"content-type": "application/feed+json"})
    assert error.kind == "too_complex" and "deeper than 64 levels" in str(error)
    brackets_in_strings = (
        b'{"items": [{"id": "1", "title": "' + b"[{" * 5000 + b'\\"' + b"[" * 100 + b'"}]}'
    )
    assert len(parse_feed(brackets_in_strings, {}, URL).entries) == 1


def test_nested_html_items_are_too_complex_and_scripts_do_not_count() -> None:
    selectors = HtmlSelectors(item="article", title="h2", link="a[href]")
    nested = b"<html><body>" + b"<article><h2>t</h2><a href='/x'>x</a>" * 20_000 + b"</body>"
    started = time.process_time()
    with pytest.raises(ParseError) as info:
        parse_html_page(nested, {"content-type": "text/html"}, URL, selectors)
    assert info.value.kind == "too_complex"  # took 3 s (quadratic in the nesting) before
    assert time.process_time() - started < 1.0
    script = "<script>" + "if (a<b && c<d) {}" * 2000 + "</script>"
    paragraphs = "<p>one" * 1000  # unclosed <p>s close each other
    page = (
        f"<html><head>{script}</head><body>{paragraphs}"
        "<article><h2>Kept</h2><a href='/k'>k</a></article></body></html>"
    ).encode()
    parsed = parse_html_page(page, {"content-type": "text/html"}, URL, selectors)
    assert [e.title for e in parsed.entries] == ["Kept"]


# ------------------------------------------------------------------------------------ dates


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+01:00",
        "Fri, 31 Dec 9999 23:59:59 -0100",
        "December 31, 9999 23:59 -0100",
        "9999.12.31 23:59 -01:00",
    ],
)
def test_dates_past_the_datetime_range_are_none(value: str) -> None:
    assert parse_date(value) is None  # raised OverflowError


def test_one_overflowing_date_costs_only_that_field_in_a_json_feed() -> None:
    body = (
        b'{"version": "https://jsonfeed.org/version/1.1", "items": ['
        b'{"id": "1", "title": "Bad date", "date_published": "9999-12-31T23:59:59-01:00"},'
        b'{"id": "2", "title": "Good", "date_published": "2024-05-01T10:00:00Z"},'
        b'{"id": "3", "title": "Bad link", "url": "http://[::1"}]}'
    )
    parsed = parse_feed(body, {"content-type": "application/feed+json"}, URL)
    assert [(e.title, e.published) for e in parsed.entries] == [
        ("Bad date", None),
        ("Good", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("Bad link", None),
    ]
    assert parsed.entries[2].link is None


def test_one_overflowing_date_costs_only_that_field_on_an_html_page() -> None:
    page = (
        b"<html><body>"
        b"<article><h2>Bad</h2><a href='/1'>1</a><time datetime='9999-12-31T23:59:59-01:00'>"
        b"</time></article>"
        b"<article><h2>Good</h2><a href='/2'>2</a><time datetime='2024-05-01T10:00:00Z'>"
        b"</time></article>"
        b"<article><h2>Bad link</h2><a href='http://[::1'>3</a></article>"
        b"</body></html>"
    )
    selectors = HtmlSelectors(item="article", title="h2", link="a[href]", date="time")
    parsed = parse_html_page(page, {"content-type": "text/html"}, URL, selectors)
    assert [(e.title, e.published) for e in parsed.entries] == [
        ("Bad", None),
        ("Good", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("Bad link", None),
    ]


def test_an_entry_whose_builder_breaks_costs_only_that_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The backstop under the field readers: whatever they miss costs one entry, reported."""
    from monitor.parse import jsonfeed

    real = jsonfeed._json_entry

    def flaky(item: typing.Any, base: str) -> typing.Any:
        if item.get("id") == "2":
            raise OverflowError("date value out of range")
        return real(item, base)

    monkeypatch.setattr(jsonfeed, "_json_entry", flaky)
    body = b'{"items": [{"id": "1", "title": "a"}, {"id": "2"}, {"id": "3", "title": "c"}]}'
    parsed = parse_feed(body, {}, URL)
    assert [e.guid for e in parsed.entries] == ["1", "3"]
    assert parsed.warning is not None and "1 entries could not be read" in parsed.warning


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-32"])
def test_structure_bounds_hold_in_wide_encodings(no_feedparser: None, codec: str) -> None:
    """Byte scans of UTF-16 see no `<x`: the bound is applied to the text the parser reads."""
    body = (f"<?xml version='1.0' encoding='{codec}'?><rss>" + "<a>" * 400_000).encode(codec)
    headers = {"content-type": f"application/xml; charset={codec}"}
    assert _refused(body, headers).kind == "too_complex"
    page = ("<html><body>" + "<div>" * 5000 + "</body></html>").encode(codec)
    selectors = HtmlSelectors(item="div", title="div", link="a")
    with pytest.raises(ParseError) as info:
        parse_html_page(page, {"content-type": f"text/html; charset={codec}"}, URL, selectors)
    assert info.value.kind == "too_complex"
