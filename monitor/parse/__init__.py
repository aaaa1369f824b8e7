"""Parse stage: bytes of a fetched document → `ParsedFeed` (pure, no I/O).

`feeds` reads RSS/Atom/RDF (clean documents through lxml in `fast`, the rest with feedparser),
`jsonfeed` reads JSON Feed, `html` reads section pages through admin-given CSS selectors,
`entities` refuses hostile XML before any parser runs, `dates` turns feed dates into aware UTC
datetimes, `common` holds the caps and `ParseError`.
"""

from monitor.parse.common import ParseError, ParseErrorKind
from monitor.parse.feeds import ParserChoice, parse_feed
from monitor.parse.html import parse_html_page, validate_selectors

__all__ = [
    "ParseError",
    "ParseErrorKind",
    "ParserChoice",
    "parse_feed",
    "parse_html_page",
    "validate_selectors",
]
