"""Bounds on how much structure one document may carry, checked on its bytes before a parser runs.

feedparser costs about 25 µs of CPU per element, whatever the nesting: 400,000 elements are ten
seconds of one core per poll, and the fetch caps (10 MiB) let a document carry millions. Section
pages read through CSS selectors go quadratic when items nest inside items. So every parse path
first counts, in one pass over the bytes, the elements (or JSON containers) and how deep they
nest, and refuses a document over either limit as `too_complex`; the limits sit far above
anything a real feed carries (the corpus feeds' largest: see tests/test_parse_limits.py).

The scan is cheap: comments, CDATA sections, processing instructions and declarations are
skipped whole (markup inside them is text, not elements); end tags close the nearest open
element of their name (as lenient parsers do, so `<br>` or an unclosed `<p>` inside an item do
not pile up), HTML void elements and `<x/>` never open one.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate

from monitor.parse.common import ParseError

#: Most elements (start tags) in one XML feed or HTML page.
MAX_ELEMENTS = 100_000
#: Deepest element nesting in one XML feed or HTML page.
MAX_DEPTH = 256
#: Deepest nesting of arrays and objects in one JSON Feed (they use four or five levels).
MAX_JSON_DEPTH = 64

_MARKUP = re.compile(rb"<(?:(!--)|(!\[CDATA\[)|(\?)|(!)|(/)?([A-Za-z_:][-\w:.]*))")
_VOID = frozenset(
    b"area base br col embed hr img input keygen link meta param source track wbr".split()
)
# Elements an HTML parser closes when another of the same kind opens beside them.
_SELF_CLOSING_SIBLINGS = frozenset(b"p li dt dd option tr td th".split())
# Raw-text elements: their content is text, whatever `<` it holds (`if (a<b)` in a script).
_RAW_TEXT = {
    name: re.compile(b"</" + name, re.IGNORECASE) for name in (b"script", b"style", b"textarea")
}
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
# Opening brackets count +1, closing ones -1 (as signed bytes, summed by `accumulate`).
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def _too_complex(what: str) -> ParseError:
    return ParseError(
        "too_complex",
        f"{what}; no real feed comes near this, so it was refused unparsed (a parser would "
        "spend seconds of CPU on it)",
    )


_SKIP_TO = {1: (b"-->", 3), 2: (b"]]>", 3), 3: (b"?>", 2)}  # comment, CDATA, PI


def check_markup(body: bytes, *, html: bool = False) -> None:
    """Refuse XML or HTML with more than MAX_ELEMENTS elements or nested deeper than MAX_DEPTH.

    `html` applies HTML's rules for void and raw-text elements and for siblings that close
    each other.
    """
    if body.count(b"<") <= MAX_DEPTH:  # cannot exceed either limit
        return
    stack: list[bytes] = []
    elements = 0
    pos = 0
    n = len(body)
    search = _MARKUP.search
    while (m := search(body, pos)) is not None:
        skip = _SKIP_TO.get(m.lastindex or 0)
        if skip is not None:
            end = body.find(skip[0], m.end())
            pos = n if end < 0 else end + skip[1]
            continue
        gt = body.find(b">", m.end())
        if gt < 0:
            return  # an unterminated tag runs to the end: nothing more opens
        pos = gt + 1
        closing, name = m.group(5, 6)
        if name is None:  # a declaration
            continue
        if html:
            name = name.lower()
        if closing:
            _close(stack, name)
            continue
        elements += 1
        if elements > MAX_ELEMENTS:
            raise _too_complex(f"the document has more than {MAX_ELEMENTS:,} elements")
        if body[gt - 1 : gt] == b"/":
            continue
        if html:
            if name in _VOID:
                continue
            raw = _RAW_TEXT.get(name)
            if raw is not None:
                end_tag = raw.search(body, pos)
                pos = n if end_tag is None else end_tag.end()
                continue
            if name in _SELF_CLOSING_SIBLINGS and stack and stack[-1] == name:
                continue  # `<p>a<p>b`: the second closes the first
        stack.append(name)
        if len(stack) > MAX_DEPTH:
            raise _too_complex(f"the document nests elements deeper than {MAX_DEPTH} levels")


def _close(stack: list[bytes], name: bytes) -> None:
    """Close the nearest open element called `name`; an unmatched end tag closes nothing."""
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] == name:
            del stack[i:]
            return


def check_json(body: bytes) -> None:
    """Refuse JSON whose arrays and objects nest deeper than MAX_JSON_DEPTH."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return
    structure = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if len(structure) <= MAX_JSON_DEPTH:
        return
    steps = array("b", structure.translate(_STEPS))
    if max(accumulate(steps)) > MAX_JSON_DEPTH:
        raise _too_complex(f"the JSON nests arrays and objects deeper than {MAX_JSON_DEPTH} levels")
