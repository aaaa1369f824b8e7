"""What every parser shares: the error type, field caps, and small text helpers."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

from monitor.model import ParsedEntry

ParseErrorKind = Literal["parse_error", "rejected_entities", "too_complex"]

TITLE_CAP = 1024
SUMMARY_CAP = 16 * 1024
LINK_CAP = 2048
GUID_CAP = 2048
AUTHOR_CAP = 512
PROLOG_CAP = 64 * 1024
WARNING_CAP = 500
MAX_TTL_SECONDS = 7 * 24 * 3600


_Item = TypeVar("_Item")


def build_entries(
    items: Iterable[_Item], build: Callable[[_Item], ParsedEntry | None]
) -> tuple[list[ParsedEntry], str | None]:
    """Build each entry on its own: one item that breaks its builder costs that item only.

    Field readers already turn a bad field into None (a date past year 9999, a link that is no
    URL); this is the backstop for whatever they miss, reported as a warning, never fatal.
    Returns the entries and a warning (None when every item built).
    """
    entries: list[ParsedEntry] = []
    failed = 0
    first = ""
    for item in items:
        try:
            entry = build(item)
        except Exception as exc:  # one item's problem, not the feed's
            failed += 1
            first = first or describe(exc)
            continue
        if entry is not None:
            entries.append(entry)
    if not failed:
        return entries, None
    message = f"{failed} entries could not be read and were skipped ({first})"
    return entries, cap(message, WARNING_CAP)


def join_warnings(*warnings: str | None) -> str | None:
    return cap("; ".join(w for w in warnings if w), WARNING_CAP) or None


class ParseError(Exception):
    """A document that yields no usable entries, with the reason an admin can act on."""

    def __init__(self, kind: ParseErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ParseErrorKind = kind


def cap(value: str, limit: int) -> str:
    """Truncate to at most `limit` UTF-8 bytes without splitting a character; drop NULs.

    NUL is dropped because PostgreSQL text columns refuse it.
    """
    if "\x00" in value:
        value = value.replace("\x00", "")
    if len(value) * 4 <= limit:  # fast path: cannot exceed the limit whatever the characters
        return value
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return value
    return raw[:limit].decode("utf-8", "ignore")


def plain_to_html(value: str) -> str:
    """ParsedEntry text fields are HTML fragments, so plain text must be escaped once."""
    return (
        html.escape(value, quote=False) if ("<" in value or "&" in value or ">" in value) else value
    )


def describe(exc: object) -> str:
    return cap(f"{type(exc).__name__}: {exc}", WARNING_CAP)


def optional_text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return cap(value, limit) if value else None


def web_link(value: Any, limit: int = LINK_CAP) -> str | None:
    """Only http(s) links are links: `javascript:`, `data:` or `tag:` values are dropped."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value[:8].lower().startswith(("http://", "https://")):
        return None
    return cap(value, limit)


def dedupe_guids(entries: list[ParsedEntry]) -> list[ParsedEntry]:
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
