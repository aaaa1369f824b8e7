"""Refusing hostile XML prologs before any XML parser sees them.

feedparser's strict parser (expat) limits amplification, but its fallback loose parser re-inserts
"safe" text entities and expands them without limit: one 10 KB entity referenced 2,000 times
became a 20,000,000-character title, and an 8 MB document took 3 GB. Real feeds never declare
entities, and never need an internal DTD subset, so any `<!DOCTYPE x [ … ]>` is refused.

The check runs on the text the parser will read: the body is decoded exactly as feedparser
decodes it (BOM, HTTP `Content-Type` charset, XML declaration, in its order of preference), so
a declaration cannot hide behind `encoding="utf-7"` (`+ADw-!ENTITY`). Encodings that are not
ASCII-compatible (UTF-7, EBCDIC, …) are refused outright: every other tool that looks at the
bytes would see a different document than the parser. UTF-16 and UTF-32 are decoded and
scanned like any other text. The prolog is then read by a real scanner (XML declaration,
processing instructions, comments, DOCTYPE with its quoted literals), so `<!-- <a -->` before
the DOCTYPE no longer passes for the root element.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Mapping

from feedparser.encodings import convert_to_utf8

from monitor.parse.common import PROLOG_CAP, ParseError

_NAME_START = re.compile(r"[A-Za-z_:\u00c0-\uffff]")
_NAME = re.compile(r"[\w:.\-\u00b7\u00c0-\uffff]*")
_WIDE = frozenset({"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})
_ASCII = "".join(map(chr, range(128)))
# Byte order marks and the XML spec's "<?" patterns (appendix F) of the wide encodings.
_WIDE_MARKS: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
)


@functools.cache
def ascii_compatible(encoding: str) -> bool:
    """Whether `encoding` decodes bytes 0x00–0x7F to the same characters (as ASCII does).

    UTF-7 (`+ADw-` is `<`), EBCDIC code pages and similar are not: a scan of their bytes and
    the parser's reading of the decoded text would disagree. Unknown names are not compatible.
    """
    try:
        return bytes(range(128)).decode(encoding) == _ASCII
    except (LookupError, UnicodeError, ValueError):
        return False


def usable_encoding(encoding: str) -> bool:
    """Whether text in `encoding` may be decoded and scanned: ASCII-compatible, or UTF-16/32."""
    return _codec_name(encoding) in _WIDE or ascii_compatible(encoding)


def _codec_name(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return encoding.lower()


def parser_text(body: bytes, headers: Mapping[str, str]) -> tuple[str, str]:
    """The start of the document as feedparser will read it, and the encoding it will use.

    `headers` are the ones handed to feedparser (see `feeds._feedparser_headers`), and the
    choice is feedparser's own function, so the two can never disagree. The whole body is
    decoded, as feedparser does: an encoding is only chosen when all of the body decodes, so an
    invalid byte far down can make it fall back to the next candidate (the XML declaration's).
    """
    result: dict[str, object] = {}
    converted = convert_to_utf8(dict(headers), body, result)
    encoding = str(result.get("encoding") or "")
    # Without a usable encoding feedparser parses the bytes as they are: read them as ASCII.
    text = converted[: (PROLOG_CAP + 64) * 4].decode("utf-8", "replace")
    return text[: PROLOG_CAP + 64], encoding


def _wide_text(body: bytes) -> str | None:
    """The head decoded as the UTF-16/32 its first bytes announce, or None.

    feedparser may still read such a body as UTF-8 (NULs and all, harmless to it); the head is
    scanned in its announced encoding as well, so no reader ever finds a declaration there.
    """
    for mark, codec in _WIDE_MARKS:
        if body.startswith(mark):
            return body[: PROLOG_CAP * 4].decode(codec, "ignore").lstrip("\ufeff")[:PROLOG_CAP]
    return None


def _refuse_encoding(encoding: str) -> None:
    if not encoding or usable_encoding(encoding):
        return
    raise ParseError(
        "rejected_entities",
        f"the document is encoded as {encoding}, which is not ASCII-compatible; a feed must "
        "use UTF-8 (or another ASCII-compatible encoding, or UTF-16/32): refused unparsed",
    )


def _skip_quoted(text: str, i: int) -> int:
    """Index past the quoted literal starting at `i`, or -1 when it does not end in `text`."""
    close = text.find(text[i], i + 1)
    return -1 if close < 0 else close + 1


def _doctype_end(text: str, start: int) -> int:
    """Index just past a DOCTYPE without internal subset; refuses any subset.

    Returns -1 when the DOCTYPE does not end within the scanned text.
    """
    i = start + len("<!DOCTYPE")
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'":
            i = _skip_quoted(text, i)
            if i < 0:
                return -1
            continue
        if ch == "[":
            raise ParseError(
                "rejected_entities",
                "the document has an internal DTD subset (<!DOCTYPE … [ … ]>), where <!ENTITY> "
                "declarations live (entity-expansion risk); feeds never need one, so it was "
                "refused unparsed: ask the publisher to remove it",
            )
        if ch == ">":
            return i + 1
        i += 1
    return -1


def _scan_prolog(text: str) -> tuple[int, bool]:
    """Where the root element starts in `text` (-1: none within it) and whether the prolog
    held only what XML allows there (declaration, PIs, comments, one DOCTYPE, white space).

    Text that XML does not allow before the root is skipped the way a lenient parser would,
    and scanning goes on: a DOCTYPE after junk is still found and checked.
    """
    i = 0
    n = len(text)
    clean = True
    while i < n:
        ch = text[i]
        if ch in " \t\r\n\ufeff":
            i += 1
            continue
        if ch != "<":
            clean = False
            nxt = text.find("<", i)
            i = n if nxt < 0 else nxt
            continue
        if text.startswith("<?", i):
            close = text.find("?>", i + 2)
            i = n if close < 0 else close + 2
        elif text.startswith("<!--", i):
            close = text.find("-->", i + 4)
            i = n if close < 0 else close + 3
        elif text[i : i + 9].upper() == "<!DOCTYPE":
            end = _doctype_end(text, i)
            if end < 0:
                raise ParseError(
                    "rejected_entities",
                    f"the DOCTYPE does not end within the first {PROLOG_CAP // 1024} KiB; "
                    "a feed needs no DOCTYPE: ask the publisher to remove it",
                )
            i = end
        elif text[i : i + 8].upper() == "<!ENTITY":
            raise ParseError(
                "rejected_entities",
                "the document declares <!ENTITY> in its prolog (entity-expansion risk); "
                "feeds never need entity declarations, so it was refused unparsed",
            )
        elif _NAME_START.match(text, i + 1):
            return i, clean
        else:  # `<!ELEMENT`, `</x>`, `<![CDATA[`, a lone `<`: not a prolog, skip past it
            clean = False
            close = text.find(">", i + 1)
            i = n if close < 0 else close + 1
    return -1, clean


def check_entities(body: bytes, headers: Mapping[str, str] | None = None) -> str:
    """Refuse documents whose prolog could make feedparser expand entities; see the module.

    `headers` are the response headers feedparser is given (lower-case names). Returns the
    root element's name ("" when the prolog holds something XML does not allow there).
    """
    return check_prolog(body, headers)[0]


def as_ascii_compatible(body: bytes, encoding: str) -> bytes:
    """`body` as UTF-8 when `encoding` is UTF-16/32 (so byte scans see its markup), else as is."""
    if _codec_name(encoding) not in _WIDE:
        return body
    return body.decode(encoding, "replace").encode("utf-8", "surrogatepass")


def wide_charset(body: bytes, charset: str | None) -> str | None:
    """The UTF-16/32 encoding a page announces by BOM or charset label, or None."""
    for mark, codec in _WIDE_MARKS[:4]:  # the BOMs
        if body.startswith(mark):
            return codec
    if charset and _codec_name(charset) in _WIDE:
        return charset
    return None


def check_prolog(body: bytes, headers: Mapping[str, str] | None = None) -> tuple[str, str]:
    """`check_entities`, also returning the encoding feedparser will read the body in."""
    text, encoding = parser_text(body, headers or {})
    _refuse_encoding(encoding)
    wide = _wide_text(body)
    if wide is not None:
        _scan_prolog(wide)  # for its refusals only: the parser reads `text`
    start, clean = _scan_prolog(text[:PROLOG_CAP])
    if start < 0:
        raise ParseError(
            "parse_error",
            f"no XML element within the first {PROLOG_CAP // 1024} KiB: not an RSS/Atom feed",
        )
    name = _NAME.match(text, start + 2)
    return (text[start + 1 : name.end() if name else start + 2] if clean else ""), encoding
