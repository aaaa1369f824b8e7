"""Bytes of a fetched document → ParsedFeed: RSS/Atom/RDF, JSON Feed, and HTML section pages.

Pure: takes the body, the lower-cased response headers and the final URL; never does I/O.
feedparser dicts never leave this module. Every failure surfaces as `ParseError` so the
pipeline can classify it once (`parse_error` counts towards backoff, `rejected_entities` is a
deliberate refusal of a hostile or broken document, `too_complex` one of a document with more
structure than any feed carries, see `limits`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, Literal

import feedparser

from monitor.model import ParsedEntry, ParsedFeed
from monitor.normalize import html_to_text
from monitor.parse.common import (
    AUTHOR_CAP,
    GUID_CAP,
    MAX_TTL_SECONDS,
    SUMMARY_CAP,
    TITLE_CAP,
    ParseError,
    build_entries,
    cap,
    dedupe_guids,
    describe,
    join_warnings,
    optional_text,
    plain_to_html,
    web_link,
)
from monitor.parse.dates import struct_to_datetime
from monitor.parse.entities import as_ascii_compatible, check_prolog
from monitor.parse.fast import read_fast
from monitor.parse.jsonfeed import parse_json_feed
from monitor.parse.limits import check_markup

ParserChoice = Literal["auto", "feedparser"]

_WARNING_TYPES: tuple[type[BaseException], ...] = (
    feedparser.CharacterEncodingOverride,
    feedparser.NonXMLContentType,
)


def _feedparser_headers(headers: Mapping[str, str], url: str) -> dict[str, str]:
    """Only the headers feedparser should see: the body is already decoded from gzip."""
    out = {"content-location": url}
    for name in ("content-type", "content-language"):
        value = headers.get(name)
        if value:
            out[name] = value
    return out


def _is_json(body: bytes, headers: Mapping[str, str]) -> bool:
    """The first byte decides; the content-type only when the body starts like neither."""
    first = body[:1024].lstrip(b" \t\r\n\xef\xbb\xbf")[:1]
    if first in (b"{", b"["):
        return True
    return first != b"<" and "json" in headers.get("content-type", "").lower()


def parse_feed(
    body: bytes, headers: Mapping[str, str], url: str, *, parser: ParserChoice = "auto"
) -> ParsedFeed:
    """Parse RSS 0.9x/1.0/2.0, Atom or JSON Feed bytes; raises only ParseError.

    `parser="auto"` reads clean XML documents with the lxml path (`fast`) and everything else
    with feedparser; `"feedparser"` always uses feedparser. Both give the same entries.
    """
    try:
        if not isinstance(body, bytes | bytearray | memoryview):
            raise ParseError("parse_error", f"{url}: body must be bytes, not {type(body).__name__}")
        body = bytes(body)
        headers = {name.lower(): value for name, value in headers.items()}
        if not body.strip():
            raise ParseError("parse_error", f"{url}: empty document")
        if _is_json(body, headers):
            return parse_json_feed(body, url)
        root, encoding = check_prolog(body, _feedparser_headers(headers, url))
        if root.lower() == "html":
            # Login walls, error pages, redesigned sites: refused before feedparser's loose
            # parser spends seconds on a large page.
            raise ParseError(
                "parse_error",
                f"{url}: an HTML page, not an RSS/Atom/JSON feed; check the source URL, or use "
                "kind: html with selectors for a web page",
            )
        check_markup(as_ascii_compatible(body, encoding))  # UTF-16 markup is scanned as UTF-8
        return _parse_xml_feed(body, headers, url, parser)
    except ParseError:
        raise
    except Exception as exc:  # the contract: nothing but ParseError escapes
        raise ParseError(
            "parse_error", f"{url}: could not parse the feed ({describe(exc)})"
        ) from exc


def _parse_xml_feed(
    body: bytes, headers: Mapping[str, str], url: str, parser: ParserChoice
) -> ParsedFeed:
    fp_headers = _feedparser_headers(headers, url)
    if parser == "auto":
        fast = read_fast(body, fp_headers, url)
        if fast is not None:
            return _build_feed(fast["version"], None, fast["entries"], fast["feed"], headers, url)
    # No sanitizing and no rewriting of links inside content: together they are half of
    # feedparser's time, and nothing renders feed HTML. normalize extracts plain text with a
    # real parser that drops script/style, and entry links are still resolved against `url`.
    d = feedparser.parse(
        io.BytesIO(body),
        response_headers=fp_headers,
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    exc = d.get("bozo_exception") if d.get("bozo") else None
    return _build_feed(
        d.get("version") or "", exc, d.get("entries") or [], d.get("feed") or {}, headers, url
    )


def _build_feed(
    version: str,
    exc: BaseException | None,
    raw_entries: list[Any],
    feed: Mapping[str, Any],
    headers: Mapping[str, str],
    url: str,
) -> ParsedFeed:
    """ParsedFeed from feedparser's result, or the fast path's dicts of the same shape."""
    if not raw_entries:
        if not version:
            ctype = headers.get("content-type", "no content-type")
            why = f" ({describe(exc)})" if exc is not None else ""
            raise ParseError(
                "parse_error",
                f"{url}: not an RSS/Atom/JSON feed ({ctype}){why}; "
                "check the source URL, or use kind: html with selectors for a web page",
            )
        if exc is not None and not isinstance(exc, _WARNING_TYPES):
            raise ParseError(
                "parse_error", f"{url}: malformed {version} feed with no entries ({describe(exc)})"
            )
    built, failed = build_entries(raw_entries, _xml_entry)
    warning = join_warnings(describe(exc) if exc is not None else None, failed)
    entries = dedupe_guids(built)
    return ParsedFeed(
        entries=tuple(entries),
        title=_feed_title(feed.get("title"), feed.get("title_detail")),
        ttl_seconds=_ttl_seconds(feed.get("ttl")),
        warning=warning,
    )


def _feed_title(value: Any, detail: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = html_to_text(value) if _detail_is_html(detail) else value
    return cap(" ".join(text.split()), TITLE_CAP) or None


def _ttl_seconds(value: Any) -> int | None:
    """RSS <ttl> is minutes; nonsense values are ignored rather than trusted."""
    try:
        minutes = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    if minutes <= 0:
        return None
    return min(minutes * 60, MAX_TTL_SECONDS)


def _detail_is_html(detail: Any) -> bool:
    ctype = detail.get("type", "") if isinstance(detail, Mapping) else ""
    return ctype != "text/plain"


def _text_field(value: Any, detail: Any, limit: int) -> str:
    """feedparser leaves text/plain unescaped; ParsedEntry wants an HTML fragment throughout."""
    if not isinstance(value, str) or not value:
        return ""
    if not _detail_is_html(detail):
        value = plain_to_html(value)
    return cap(value, limit)


def _xml_entry(e: dict[str, Any]) -> ParsedEntry:
    summary = _text_field(e.get("summary"), e.get("summary_detail"), SUMMARY_CAP)
    if not summary:
        for content in e.get("content") or ():
            summary = _text_field(content.get("value"), content, SUMMARY_CAP)
            if summary:
                break
    # dict.get skips FeedParserDict's deprecated updated→published alias (and its warning).
    published = struct_to_datetime(dict.get(e, "published_parsed") or dict.get(e, "updated_parsed"))
    return ParsedEntry(
        guid=optional_text(e.get("id"), GUID_CAP),
        link=web_link(e.get("link")),
        title=_text_field(e.get("title"), e.get("title_detail"), TITLE_CAP),
        summary=summary,
        published=published,
        author=optional_text(e.get("author"), AUTHOR_CAP),
    )
