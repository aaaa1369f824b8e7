"""Bytes of a fetched document → ParsedFeed: RSS/Atom/RDF, JSON Feed, and HTML section pages.

Pure: takes the body, the lower-cased response headers and the final URL; never does I/O.
feedparser dicts never leave this module. Every failure surfaces as `ParseError` so the
pipeline can classify it once (`parse_error` counts towards backoff, `rejected_entities` is a
deliberate refusal of a hostile or broken document).
"""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urljoin

import feedparser
from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from monitor.dates import parse_date, struct_to_datetime
from monitor.model import HtmlSelectors, ParsedEntry, ParsedFeed
from monitor.normalize import html_to_text

ParseErrorKind = Literal["parse_error", "rejected_entities"]

TITLE_CAP = 1024
SUMMARY_CAP = 16 * 1024
LINK_CAP = 2048
GUID_CAP = 2048
AUTHOR_CAP = 512
PROLOG_CAP = 64 * 1024
WARNING_CAP = 500
MAX_TTL_SECONDS = 7 * 24 * 3600


class ParseError(Exception):
    """A document that yields no usable entries, with the reason an admin can act on."""

    def __init__(self, kind: ParseErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ParseErrorKind = kind


def cap(value: str, limit: int) -> str:
    """Truncate to at most `limit` UTF-8 bytes without splitting a character."""
    if len(value) * 4 <= limit:  # fast path: cannot exceed the limit whatever the characters
        return value
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return value
    return raw[:limit].decode("utf-8", "ignore")


def _plain_to_html(value: str) -> str:
    """ParsedEntry text fields are HTML fragments, so plain text must be escaped once."""
    return (
        html.escape(value, quote=False) if ("<" in value or "&" in value or ">" in value) else value
    )


# --------------------------------------------------------------------------- entity guard

_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
    (b"\x4c\x6f\xa7\x94", "cp037"),  # "<?xm" in EBCDIC
)
_FIRST_ELEMENT = re.compile(r"<[A-Za-z_:]")


def _head_text(body: bytes) -> str:
    """The start of the document as text, in whatever wide or EBCDIC encoding it uses."""
    head = body[: PROLOG_CAP * 4]
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return head.decode(codec, "ignore")[:PROLOG_CAP]
    return head[:PROLOG_CAP].decode("latin-1")


def _find_doctype(text: str, limit: int) -> int | None:
    """Where the DOCTYPE starts, skipping the XML declaration, PIs and comments before it."""
    i = 0
    while i < limit:
        if text[i] in " \t\r\n\ufeff":
            i += 1
        elif text.startswith("<?", i):
            close = text.find("?>", i + 2)
            i = limit if close < 0 else close + 2
        elif text.startswith("<!--", i):
            close = text.find("-->", i + 4)
            i = limit if close < 0 else close + 3
        elif text[i : i + 9].upper() == "<!DOCTYPE":
            return i
        else:
            return None
    return None


def _doctype_end(text: str, start: int) -> int:
    """Index just past the DOCTYPE starting at `start`, or -1 when it does not end in the text."""
    i = start + len("<!DOCTYPE")
    n = len(text)
    in_subset = False
    while i < n:
        ch = text[i]
        if ch in "\"'":
            close = text.find(ch, i + 1)
            if close < 0:
                return -1
            i = close + 1
            continue
        if in_subset and text.startswith("<!--", i):
            close = text.find("-->", i + 4)
            if close < 0:
                return -1
            i = close + 3
            continue
        if ch == "[":
            in_subset = True
        elif ch == "]":
            in_subset = False
        elif ch == ">" and not in_subset:
            return i + 1
        i += 1
    return -1


def check_entities(body: bytes) -> None:
    """Refuse documents declaring entities: feedparser's loose parser expands them unbounded.

    The quadratic blowup (one 10 KB entity referenced thousands of times) turns kilobytes into
    gigabytes; real feeds never declare entities, so any `<!ENTITY` in the prolog is refused.
    """
    text = _head_text(body)
    first = _FIRST_ELEMENT.search(text)
    if first is None:
        raise ParseError(
            "parse_error",
            f"no XML element within the first {PROLOG_CAP // 1024} KiB: not an RSS/Atom feed",
        )
    prolog_end = region_end = first.start()
    doctype = _find_doctype(text, prolog_end)
    if doctype is not None:
        end = _doctype_end(text, doctype)
        if end < 0:
            raise ParseError(
                "rejected_entities",
                f"the DOCTYPE does not end within the first {PROLOG_CAP // 1024} KiB; "
                "a feed needs no DOCTYPE: ask the publisher to remove it",
            )
        region_end = max(region_end, end)
    if "<!entity" in text[:region_end].lower():
        raise ParseError(
            "rejected_entities",
            "the document declares <!ENTITY> in its prolog (entity-expansion risk); "
            "feeds never need entity declarations, so it was refused unparsed",
        )


# --------------------------------------------------------------------------- feeds

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
    ctype = headers.get("content-type", "").lower()
    if "json" in ctype:
        return True
    return body[:1024].lstrip(b" \t\r\n\xef\xbb\xbf")[:1] == b"{"


def _describe(exc: object) -> str:
    return cap(f"{type(exc).__name__}: {exc}", WARNING_CAP)


def parse_feed(body: bytes, headers: Mapping[str, str], url: str) -> ParsedFeed:
    """Parse RSS 0.9x/1.0/2.0, Atom or JSON Feed bytes; raises only ParseError."""
    try:
        if not isinstance(body, bytes | bytearray | memoryview):
            raise ParseError("parse_error", f"{url}: body must be bytes, not {type(body).__name__}")
        body = bytes(body)
        if not body.strip():
            raise ParseError("parse_error", f"{url}: empty document")
        if _is_json(body, headers):
            return _parse_json_feed(body, url)
        check_entities(body)
        return _parse_xml_feed(body, headers, url)
    except ParseError:
        raise
    except Exception as exc:  # the contract: nothing but ParseError escapes
        raise ParseError(
            "parse_error", f"{url}: could not parse the feed ({_describe(exc)})"
        ) from exc


def _parse_xml_feed(body: bytes, headers: Mapping[str, str], url: str) -> ParsedFeed:
    # No sanitizing and no rewriting of links inside content: together they are half of
    # feedparser's time, and nothing renders feed HTML. normalize extracts plain text with a
    # real parser that drops script/style, and entry links are still resolved against `url`.
    d = feedparser.parse(
        io.BytesIO(body),
        response_headers=_feedparser_headers(headers, url),
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    version = d.get("version") or ""
    exc = d.get("bozo_exception") if d.get("bozo") else None
    raw_entries = d.get("entries") or []
    if not raw_entries:
        if not version:
            ctype = headers.get("content-type", "no content-type")
            why = f" ({_describe(exc)})" if exc is not None else ""
            raise ParseError(
                "parse_error",
                f"{url}: not an RSS/Atom/JSON feed ({ctype}){why}; "
                "check the source URL, or use kind: html with selectors for a web page",
            )
        if exc is not None and not isinstance(exc, _WARNING_TYPES):
            raise ParseError(
                "parse_error", f"{url}: malformed {version} feed with no entries ({_describe(exc)})"
            )
    warning = _describe(exc) if exc is not None else None
    entries = _dedupe_guids([_xml_entry(e) for e in raw_entries])
    feed = d.get("feed") or {}
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
        value = _plain_to_html(value)
    return cap(value, limit)


def _optional(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return cap(value, limit) if value else None


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
        guid=_optional(e.get("id"), GUID_CAP),
        link=_optional(e.get("link"), LINK_CAP),
        title=_text_field(e.get("title"), e.get("title_detail"), TITLE_CAP),
        summary=summary,
        published=published,
        author=_optional(e.get("author"), AUTHOR_CAP),
    )


def _dedupe_guids(entries: list[ParsedEntry]) -> list[ParsedEntry]:
    """A GUID shared by items with different links is no identity (broken CMS): use the link.

    The same GUID and link twice is one item repeated (or edited) and keeps its GUID.
    """
    seen: dict[str, str] = {}
    shared: set[str] = set()
    for entry in entries:
        if entry.guid is None:
            continue
        ident = entry.link or entry.title
        previous = seen.setdefault(entry.guid, ident)
        if previous != ident:
            shared.add(entry.guid)
    if not shared:
        return entries
    return [
        ParsedEntry(None, e.link, e.title, e.summary, e.published, e.author)
        if e.guid in shared
        else e
        for e in entries
    ]


# --------------------------------------------------------------------------- JSON Feed

_JSON_FEED_PREFIX = "https://jsonfeed.org/version/"


def _parse_json_feed(body: bytes, url: str) -> ParsedFeed:
    """JSON Feed 1.0/1.1 by hand: feedparser 6.0.x does not read it."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ParseError("parse_error", f"{url}: invalid JSON ({_describe(exc)})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise ParseError(
            "parse_error", f'{url}: JSON but not a JSON Feed (no top-level "items" list)'
        )
    warnings: list[str] = []
    version = doc.get("version")
    if not (isinstance(version, str) and version.startswith(_JSON_FEED_PREFIX)):
        warnings.append(f"unknown JSON Feed version {version!r}")
    entries: list[ParsedEntry] = []
    skipped = 0
    for item in doc["items"]:
        if isinstance(item, dict):
            entries.append(_json_entry(item, url))  # relative links: against where we fetched it
        else:
            skipped += 1
    if skipped:
        warnings.append(f"{skipped} items are not JSON objects and were skipped")
    title = doc.get("title")
    return ParsedFeed(
        entries=tuple(_dedupe_guids(entries)),
        title=cap(" ".join(html.unescape(title).split()), TITLE_CAP)
        if isinstance(title, str) and title.strip()
        else None,
        warning="; ".join(warnings) or None,
    )


def _json_text(value: Any) -> str:
    """JSON Feed text is plain but often carries entities: keep `&`, escape only markup."""
    if not isinstance(value, str):
        return ""
    return (
        value.replace("<", "&lt;").replace(">", "&gt;") if "<" in value or ">" in value else value
    )


def _json_entry(item: Mapping[str, Any], base: str) -> ParsedEntry:
    raw_id = item.get("id")
    guid = (
        str(raw_id).strip()
        if isinstance(raw_id, str | int) and not isinstance(raw_id, bool)
        else ""
    )
    link = item.get("url") if isinstance(item.get("url"), str) else item.get("external_url")
    link = urljoin(base, link.strip()) if isinstance(link, str) and link.strip() else None
    content = item.get("content_html")
    if isinstance(content, str) and content.strip():
        summary = content
    else:
        summary = _json_text(item.get("content_text")) or _json_text(item.get("summary"))
    author = None
    authors = item.get("authors")
    if isinstance(authors, list) and authors and isinstance(authors[0], dict):
        author = authors[0].get("name")
    elif isinstance(item.get("author"), dict):
        author = item["author"].get("name")
    published = None
    for key in ("date_published", "date_modified"):
        value = item.get(key)
        if isinstance(value, str) and (published := parse_date(value)) is not None:
            break
    return ParsedEntry(
        guid=cap(guid, GUID_CAP) or None,
        link=cap(link, LINK_CAP) if link else None,
        title=cap(_json_text(item.get("title")), TITLE_CAP),
        summary=cap(summary, SUMMARY_CAP),
        published=published,
        author=_optional(author, AUTHOR_CAP),
    )


# --------------------------------------------------------------------------- HTML pages

_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)


def validate_selectors(selectors: HtmlSelectors) -> list[str]:
    """Problems with the CSS selectors, phrased for `monitor sources check` (empty when fine)."""
    problems = []
    probe = LexborHTMLParser("<p></p>")
    for name in ("item", "title", "link", "summary", "date"):
        css = getattr(selectors, name)
        if css is None:
            continue
        if not css.strip():
            problems.append(f"selectors.{name} is empty")
            continue
        try:
            probe.css(css)
        except (SelectolaxError, ValueError) as exc:
            problems.append(f"selectors.{name} {css!r} is not a valid CSS selector ({exc})")
    return problems


def _html_tree(body: bytes, headers: Mapping[str, str]) -> LexborHTMLParser:
    match = _CHARSET.search(headers.get("content-type", ""))
    if match:
        try:
            return LexborHTMLParser(body.decode(match.group(1), "replace"))
        except LookupError:
            pass  # unknown label: let the parser look for <meta charset>
    return LexborHTMLParser(body, encoding=True)


def _node_text(node: LexborNode | None) -> str:
    if node is None:
        return ""
    return " ".join(node.text(deep=True, separator=" ").split())


def _first(item: LexborNode, css: str | None) -> LexborNode | None:
    return item.css_first(css) if css else None


def _href(node: LexborNode | None) -> str | None:
    if node is None:
        return None
    href = node.attributes.get("href")
    if href is None and node.tag != "a":
        inner = node.css_first("a[href]")
        href = inner.attributes.get("href") if inner is not None else None
    return href.strip() if href and href.strip() else None


def _date_of(node: LexborNode | None) -> datetime | None:
    if node is None:
        return None
    if node.tag != "time" and (inner := node.css_first("time[datetime]")) is not None:
        node = inner
    for attr in ("datetime", "content", "title"):
        value = node.attributes.get(attr)
        if value and (parsed := parse_date(value)) is not None:
            return parsed
    return parse_date(_node_text(node))


def parse_html_page(
    body: bytes, headers: Mapping[str, str], url: str, selectors: HtmlSelectors
) -> ParsedFeed:
    """A section page without a feed, read through CSS selectors; raises only ParseError."""
    try:
        return _parse_html_page(bytes(body), headers, url, selectors)
    except ParseError:
        raise
    except Exception as exc:  # the contract: nothing but ParseError escapes
        raise ParseError(
            "parse_error", f"{url}: could not read the page ({_describe(exc)})"
        ) from exc


def _parse_html_page(
    body: bytes, headers: Mapping[str, str], url: str, selectors: HtmlSelectors
) -> ParsedFeed:
    problems = validate_selectors(selectors)
    if problems:
        raise ParseError("parse_error", f"{url}: " + "; ".join(problems) + " (fix sources.yaml)")
    tree = _html_tree(body, headers)
    base = url
    base_node = tree.css_first("base[href]")
    if base_node is not None and (href := base_node.attributes.get("href")):
        base = urljoin(url, href.strip())
    items = tree.css(selectors.item)
    if not items:
        raise ParseError(
            "parse_error",
            f"{url}: no element matches the item selector {selectors.item!r}; the page layout "
            "may have changed: update the selectors in sources.yaml",
        )
    entries: list[ParsedEntry] = []
    seen_links: set[str] = set()
    for item in items:
        link_node = _first(item, selectors.link)
        href = _href(link_node)
        link = cap(urljoin(base, href), LINK_CAP) if href else None
        title = _node_text(_first(item, selectors.title)) or _node_text(link_node)
        if not title and not link:
            continue
        if link is not None:
            if link in seen_links:
                continue
            seen_links.add(link)
        entries.append(
            ParsedEntry(
                guid=None,
                link=link,
                title=cap(_plain_to_html(title), TITLE_CAP),
                summary=cap(
                    _plain_to_html(_node_text(_first(item, selectors.summary))), SUMMARY_CAP
                ),
                published=_date_of(_first(item, selectors.date)),
            )
        )
    if not entries:
        raise ParseError(
            "parse_error",
            f"{url}: {len(items)} items match {selectors.item!r} but none has a title or link; "
            "check the title and link selectors in sources.yaml",
        )
    title_node = tree.css_first("title")
    page_title = _node_text(title_node) or None
    return ParsedFeed(
        entries=tuple(entries),
        title=cap(page_title, TITLE_CAP) if page_title else None,
    )


__all__ = [
    "ParseError",
    "cap",
    "check_entities",
    "parse_feed",
    "parse_html_page",
    "validate_selectors",
]
