"""ParsedEntry → Article: canonical URL, plain text, identity key and content hash.

Pure and cheap: it runs once per entry on every poll, so it must stay a small fraction of
feedparser's own cost (see tests/test_normalize.py for the measured budget).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import unicodedata
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser

from monitor.model import Article, ParsedEntry
from monitor.textnorm import fold_without_numbers

URL_CAP = 2048
ENTRY_KEY_CAP = 600
#: How far ahead of the moment an entry is first seen its date may lie (clock skew, time zones
#: written wrong). A date further ahead (2099) is not believed: the entry counts as published
#: when first seen, so it neither dodges the age limit nor keeps its story window open.
FUTURE_TOLERANCE = timedelta(hours=1)

# C0 and C1 control characters and DEL, except tab and newline: terminal escape sequences
# (`\x1b]0;…\x07` retitles the terminal) and other invisible bytes never reach the store.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# Query parameters that identify the click, campaign or sharer, never the document.
TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid",
        "twclid", "ttclid", "igshid", "li_fat_id", "mc_cid", "mc_eid", "_ga", "_gl",
        "_hsenc", "_hsmi", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id", "vero_conv",
        "ocid", "cmpid", "icid", "smid", "smtyp", "s_kwcid", "wt.mc_id", "ns_mchannel",
        "ns_source", "ns_campaign", "ns_linkname", "ns_fee", "at_medium", "at_campaign",
        "at_custom1", "at_custom2", "at_custom3", "at_custom4", "rss_source", "feed_source",
    }
)  # fmt: skip
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_PERCENT = re.compile(r"%[0-9a-f]{2}")


def _is_tracker(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def _canonical_query(query: str) -> str:
    """Filter and sort the raw pairs, keeping their encoding exactly as published."""
    pairs = []
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if _is_tracker(name.replace("+", " ")):
            continue
        pairs.append((name, value, piece))
    pairs.sort()
    return "&".join(piece for _, _, piece in pairs)


def canonical_url(url: str) -> str:
    """One spelling per document: lower-case scheme/host, no default port, fragment or trackers.

    Anything that is not an absolute http(s) URL is returned stripped but otherwise untouched,
    so odd links still compare equal to themselves.
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return url[:URL_CAP]
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc:
        return url[:URL_CAP]
    userinfo, _, hostport = parts.netloc.rpartition("@")
    host, port = hostport, ""
    if not hostport.endswith("]") and ":" in hostport:
        host, _, port = hostport.rpartition(":")
    host = host.lower().rstrip(".")
    if not host.isascii():  # one spelling for internationalized names: the A-label
        with contextlib.suppress(UnicodeError):  # not a valid IDN: kept as written
            host = host.encode("idna").decode("ascii")
    netloc = host if port in ("", _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    if userinfo:
        netloc = f"{userinfo}@{netloc}"
    path = parts.path or "/"
    if "%" in path:
        path = _PERCENT.sub(lambda m: m.group(0).upper(), path)
    query = _canonical_query(parts.query) if parts.query else ""
    return urlunsplit((scheme, netloc, path, query, ""))[:URL_CAP]


# Tags whose start or end means a line break in the rendered text; cells and list items too.
_BLOCK = re.compile(
    r"<(?=/?(?:p|div|br|hr|li|ul|ol|dl|dt|dd|h[1-6]|tr|table|thead|tbody|tfoot|caption|"
    r"blockquote|pre|section|article|header|footer|aside|nav|main|figure|figcaption|address|"
    r"details|summary|form|fieldset|legend)[\s/>])",
    re.IGNORECASE,
)
_CELL = re.compile(r"<(?=(?:td|th)[\s/>])", re.IGNORECASE)
_BREAK = "\f"  # HTML whitespace, so the parser keeps it in place even inside tables
_INVISIBLE = ["script", "style", "template", "noscript", "iframe", "object", "title"]


def html_to_text(s: str) -> str:
    """Plain text of an HTML fragment: entities decoded, one line per block, spaces folded."""
    if "<" not in s and "&" not in s:
        return " ".join(s.split())
    if _BREAK in s:
        s = s.replace(_BREAK, " ")
    if "<" in s:
        s = _BLOCK.sub(_BREAK + "<", s)
        s = _CELL.sub(" <", s)
    tree = LexborHTMLParser(s, is_fragment=True)
    if "<" in s:
        tree.strip_tags(_INVISIBLE)
    text = tree.text(separator="")
    if _BREAK not in text:
        return " ".join(text.split())
    lines = (" ".join(line.split()) for line in text.split(_BREAK))
    return "\n".join(line for line in lines if line)


def strip_controls(s: str) -> str:
    """`s` without C0/C1 control characters; tab and newline are kept (CR becomes a newline).

    What is stored: format characters (zero-width joiners, bidi marks) stay, as text needs them.
    Every sink strips those too, with `render.strip_controls`/`console_safe`."""
    if s.isprintable():  # fast path: no control characters at all (nor tab or newline)
        return s
    if "\r" in s:
        s = s.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", s)


def _plain_text(summary: str) -> str:
    """html_to_text without control characters, lines folded again where some were dropped."""
    text = html_to_text(summary)
    clean = strip_controls(text)
    if clean == text:
        return text
    lines = (" ".join(line.split()) for line in clean.split("\n"))
    return "\n".join(line for line in lines if line)


def published_as_of(published: datetime | None, first_seen: datetime) -> datetime | None:
    """The date to store for an entry first seen at `first_seen` (both aware).

    A date more than FUTURE_TOLERANCE ahead of `first_seen` becomes `first_seen`.
    """
    if published is not None and published > first_seen + FUTURE_TOLERANCE:
        return first_seen
    return published


def _fold(s: str) -> str:
    s = " ".join(s.split())
    return s if unicodedata.is_normalized("NFC", s) else unicodedata.normalize("NFC", s)


def content_hash(title: str, text: str) -> str:
    """SHA-256 of the whitespace-folded, NFC title and text: equal for equal content only."""
    payload = _fold(title) + "\n" + _fold(text)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def substance(title: str, text: str) -> str:
    """What an edit must change to be news (the one definition; `is_edit` compares it).

    The title counts as written (whitespace folded, as in `content_hash`): "3 missiles" → "5
    missiles" in a headline is a correction the desk wants. The text counts folded and without
    its numbers (`textnorm.fold_without_numbers`): feeds put view and comment counters, ages
    ("5 min ago") and times into descriptions and change them on every poll. The price: a
    numbers-only correction of the body alone ("fired 3 missiles" → "fired 5" with the same
    headline) is not an update; the stored text keeps the earlier numbers until a real edit.
    """
    return _fold(title) + "\n" + fold_without_numbers(text)


def is_edit(stored_title: str, stored_text: str, article: Article) -> bool:
    """Does `article` change the stored version in substance (see `substance`)? An entry whose
    new version differs only in numbers of its text, whitespace, case or punctuation is not
    news: no revision is stored and nothing alerts."""
    return substance(stored_title, stored_text) != substance(article.title, article.text)


def _key(kind: str, value: str) -> str:
    key = f"{kind}:{value}"
    if len(key) <= ENTRY_KEY_CAP:
        return key
    return f"{kind}:sha256:{hashlib.sha256(value.encode('utf-8', 'surrogatepass')).hexdigest()}"


def normalize_entry(
    entry: ParsedEntry, source_id: str, *, now: datetime | None = None
) -> Article:
    """The stored form of an entry; `entry_key` prefers GUID, then canonical link, then content.

    `now` is when the entry is being seen (the poll's time): a date further in the future than
    FUTURE_TOLERANCE is replaced by it (see `published_as_of`). Title and text never hold
    control characters (`strip_controls`).
    """
    link = (entry.link or "").strip()
    url = canonical_url(link) if link else ""
    title = " ".join(strip_controls(html_to_text(entry.title)).split()) if entry.title else ""
    text = _plain_text(entry.summary) if entry.summary else ""
    digest = content_hash(title, text)
    guid = (entry.guid or "").strip()
    if guid:
        entry_key = _key("guid", guid)
    elif url:
        entry_key = _key("url", url)
    else:
        entry_key = "hash:" + digest
    return Article(
        source_id=source_id,
        entry_key=entry_key,
        url=url,
        title=title,
        text=text,
        published=entry.published if now is None else published_as_of(entry.published, now),
        content_hash=digest,
        link=link[:URL_CAP],
    )
