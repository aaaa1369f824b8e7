"""Refusing documents that declare XML entities, before any XML parser sees them.

feedparser's strict parser (expat) limits amplification, but its fallback loose parser re-inserts
"safe" text entities and expands them without limit: one 10 KB entity referenced 2,000 times
became a 20,000,000-character title. Real feeds never declare entities.
"""

from __future__ import annotations

import re

from monitor.parse.common import PROLOG_CAP, ParseError

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
_ROOT = re.compile(r"<([A-Za-z_:][\w:.-]*)")


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


def check_entities(body: bytes) -> str:
    """Refuse documents declaring entities: feedparser's loose parser expands them unbounded.

    The quadratic blowup (one 10 KB entity referenced thousands of times) turns kilobytes into
    gigabytes; real feeds never declare entities, so any `<!ENTITY` in the prolog is refused.
    Returns the root element's name ("" when the prolog holds something unexpected).
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
    root = _ROOT.match(text, _skip_prolog(text, doctype_end=None if doctype is None else end))
    return root.group(1) if root else ""


def _skip_prolog(text: str, doctype_end: int | None) -> int:
    """Index of the first character after the XML declaration, comments, PIs and DOCTYPE."""
    i = 0
    n = len(text)
    while i < n:
        if text[i] in " \t\r\n\ufeff":
            i += 1
        elif text.startswith("<?", i):
            close = text.find("?>", i + 2)
            i = n if close < 0 else close + 2
        elif text.startswith("<!--", i):
            close = text.find("-->", i + 4)
            i = n if close < 0 else close + 3
        elif doctype_end is not None and text[i : i + 9].upper() == "<!DOCTYPE":
            i = doctype_end
        else:
            break
    return i
