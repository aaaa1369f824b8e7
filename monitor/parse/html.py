"""Section pages without a feed → ParsedFeed, through the CSS selectors of sources.yaml."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urljoin

from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from monitor.model import HtmlSelectors, ParsedEntry, ParsedFeed
from monitor.normalize import html_to_text
from monitor.parse.common import (
    SUMMARY_CAP,
    TITLE_CAP,
    ParseError,
    build_entries,
    cap,
    describe,
    plain_to_html,
    web_link,
)
from monitor.parse.dates import parse_date
from monitor.parse.entities import as_ascii_compatible, usable_encoding, wide_charset
from monitor.parse.limits import check_markup

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
    if match and usable_encoding(match.group(1)):  # UTF-7, EBCDIC: left to the parser
        try:
            return LexborHTMLParser(body.decode(match.group(1), "replace"))
        except LookupError:
            pass  # unknown label: let the parser look for <meta charset>
    return LexborHTMLParser(body, encoding=True)


def _node_text(node: LexborNode | None) -> str:
    """Text as a reader sees it: inline tags join words, block tags break lines."""
    if node is None:
        return ""
    return html_to_text(node.html or "")


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


def _join(base: str, href: str) -> str | None:
    try:
        return web_link(urljoin(base, href))
    except ValueError:  # "http://[::1" and the like: no link, the entry stays
        return None


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
        lowered = {name.lower(): value for name, value in headers.items()}
        return _parse_html_page(bytes(body), lowered, url, selectors)
    except ParseError:
        raise
    except Exception as exc:  # the contract: nothing but ParseError escapes
        raise ParseError(
            "parse_error", f"{url}: could not read the page ({describe(exc)})"
        ) from exc


def _parse_html_page(
    body: bytes, headers: Mapping[str, str], url: str, selectors: HtmlSelectors
) -> ParsedFeed:
    problems = validate_selectors(selectors)
    if problems:
        raise ParseError("parse_error", f"{url}: " + "; ".join(problems) + " (fix sources.yaml)")
    charset = _CHARSET.search(headers.get("content-type", ""))
    wide = wide_charset(body, charset.group(1) if charset else None)
    check_markup(as_ascii_compatible(body, wide) if wide else body, html=True)
    tree = _html_tree(body, headers)
    base = url
    base_node = tree.css_first("base[href]")
    if base_node is not None and (href := base_node.attributes.get("href")):
        base = _join(url, href.strip()) or url
    items = tree.css(selectors.item)
    if not items:
        raise ParseError(
            "parse_error",
            f"{url}: no element matches the item selector {selectors.item!r}; the page layout "
            "may have changed: update the selectors in sources.yaml",
        )
    seen_links: set[str] = set()

    def build(item: LexborNode) -> ParsedEntry | None:
        link_node = _first(item, selectors.link)
        if link_node is None and item.attributes.get("href"):
            link_node = item  # the item is the link itself, e.g. `ul.news > li > a`
        href = _href(link_node)
        link = _join(base, href) if href else None
        title = " ".join(
            (_node_text(_first(item, selectors.title)) or _node_text(link_node)).split()
        )
        if not title and not link:
            return None
        if link is not None:
            if link in seen_links:
                return None
            seen_links.add(link)
        return ParsedEntry(
            guid=None,
            link=link,
            title=cap(plain_to_html(title), TITLE_CAP),
            summary=cap(plain_to_html(_node_text(_first(item, selectors.summary))), SUMMARY_CAP),
            published=_date_of(_first(item, selectors.date)),
        )

    entries, warning = build_entries(items, build)
    if not entries:
        raise ParseError(
            "parse_error",
            f"{url}: {len(items)} items match {selectors.item!r} but none has a title or link; "
            "check the title and link selectors in sources.yaml",
        )
    title_node = tree.css_first("title")
    page_title = " ".join(title_node.text().split()) if title_node is not None else None
    return ParsedFeed(
        entries=tuple(entries),
        title=cap(page_title, TITLE_CAP) if page_title else None,
        warning=warning,
    )
