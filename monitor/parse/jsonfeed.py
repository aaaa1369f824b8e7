"""JSON Feed 1.0 and 1.1, read by hand: feedparser 6.0.x does not support it."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

from monitor.model import ParsedEntry, ParsedFeed
from monitor.parse.common import (
    AUTHOR_CAP,
    GUID_CAP,
    SUMMARY_CAP,
    TITLE_CAP,
    ParseError,
    build_entries,
    cap,
    dedupe_guids,
    describe,
    optional_text,
    web_link,
)
from monitor.parse.dates import parse_date
from monitor.parse.limits import check_json

_JSON_FEED_PREFIX = "https://jsonfeed.org/version/"
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _valid_unicode(value: Any) -> Any:
    """A lone "\\ud800" escape decodes to a string no database accepts: replace it."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, list):
        return [_valid_unicode(v) for v in value]
    if isinstance(value, dict):
        return {k: _valid_unicode(v) for k, v in value.items()}
    return value


def parse_json_feed(body: bytes, url: str) -> ParsedFeed:
    """JSON Feed 1.0/1.1 by hand: feedparser 6.0.x does not read it."""
    check_json(body)  # before json.loads, which recurses per level
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ParseError("parse_error", f"{url}: invalid JSON ({describe(exc)})") from exc
    if _SURROGATE_ESCAPE.search(body):
        doc = _valid_unicode(doc)
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise ParseError(
            "parse_error", f'{url}: JSON but not a JSON Feed (no top-level "items" list)'
        )
    warnings: list[str] = []
    version = doc.get("version")
    if not (isinstance(version, str) and version.startswith(_JSON_FEED_PREFIX)):
        warnings.append(f"unknown JSON Feed version {version!r}")
    items = doc["items"]
    objects = [item for item in items if isinstance(item, dict)]
    # relative links: against where we fetched it
    entries, failed = build_entries(objects, lambda item: _json_entry(item, url))
    if len(objects) < len(items):
        warnings.append(f"{len(items) - len(objects)} items are not JSON objects and were skipped")
    if failed:
        warnings.append(failed)
    title = doc.get("title")
    return ParsedFeed(
        entries=tuple(dedupe_guids(entries)),
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


def _link(value: Any, base: str) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return web_link(urljoin(base, value.strip()))
    except ValueError:  # "http://[::1" and the like: no link, the entry stays
        return None


def _json_entry(item: Mapping[str, Any], base: str) -> ParsedEntry:
    raw_id = item.get("id")
    guid = (
        str(raw_id).strip()
        if isinstance(raw_id, str | int) and not isinstance(raw_id, bool)
        else ""
    )
    url = item.get("url")
    link = _link(url if isinstance(url, str) else item.get("external_url"), base)
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
        link=link,
        title=cap(_json_text(item.get("title")), TITLE_CAP),
        summary=cap(summary, SUMMARY_CAP),
        published=published,
        author=optional_text(author, AUTHOR_CAP),
    )
