"""The fast parse path: lxml reads the document, a small replay of feedparser's rules fills fields.

feedparser spends its time in pure-Python SAX callbacks. Here libxml2 builds the tree and a walk
over its start/end events replays only the feedparser handlers that decide the fields we keep
(entry guid, link, title, summary, content, dates, author; feed title and ttl), with feedparser's
own helpers for the details that must come out identical (decoding, URL joining, date formats,
the "looks like HTML" guess, the cp1252 and double-UTF-8 repairs). The result is the same
feedparser-shaped dicts, so `feeds` builds entries from either path with one function.

Whenever the document is anything but clean, `read_fast` returns None and the caller uses
feedparser: a body feedparser would flag (bozo: undeclared or wrong charset, a non-XML media
type), any libxml2 error or warning, a DOCTYPE, markup inside a text field (feedparser turns it
into XHTML), base64 content, and the few handlers not replayed here (`_Unsure`). The parser never
resolves entities, reads no DTD and touches no network; the hostile-input checks in `feeds` run
before either path.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Mapping
from typing import Any

from feedparser.datetimes import _parse_date
from feedparser.encodings import convert_to_utf8
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.urls import _urljoin, make_safe_absolute_uri
from lxml import etree

_MATCH = {uri.lower(): prefix for uri, prefix in _FeedParserMixin.namespaces.items()}
_HTML_TYPES = _FeedParserMixin.html_types
_RELATIVE = _FeedParserMixin.can_be_relative_uri
_looks_like_html: Callable[[str], bool] = _FeedParserMixin.looks_like_html
_map_type: Callable[[str], str] = _FeedParserMixin.map_content_type
_XML_NS = "{http://www.w3.org/XML/1998/namespace}"
_DECLARATIONS = re.compile(rb"<!(?:doctype|entity)", re.I)
_ELEMENT_START = re.compile(rb"<\w")
_C1 = re.compile("[\x80-\x9f]")  # what feedparser's _cp1252 table maps
_ENTITY_LIKE = re.compile("&([A-Za-z0-9_]+);")
_EMAIL = re.compile(
    r"(([a-zA-Z0-9\_\-\.\+]+)@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([a-zA-Z0-9\-]+\.)+))"
    r"([a-zA-Z]{2,4}|[0-9]{1,3})(\]?))(\?subject=\S+)?"
)
# Keys whose value we read: an unknown element of that name would overwrite them in feedparser.
_OURS = frozenset(
    {
        "title", "title_detail", "summary", "summary_detail", "content", "id", "link", "links",
        "author", "authors", "author_detail", "published_parsed", "updated_parsed", "guidislink",
        "image", "textinput", "source",
    }
)  # fmt: skip
# feedparser handlers that never touch those keys (tags, media, geo, podcast and licence data).
_HARMLESS = frozenset(
    {
        "category", "keywords", "dc_subject", "media_category", "media_keywords",
        "itunes_keywords", "itunes_category", "tags", "enclosure", "cloud", "generator",
        "created", "dcterms_created", "expirationdate", "dcterms_valid", "newlocation", "width",
        "height", "language", "dc_language", "media_content", "media_group", "media_rating",
        "media_credit", "media_restriction", "media_license", "media_thumbnail", "media_player",
        "itunes_image", "itunes_link", "itunes_block", "itunes_explicit", "cc_license",
        "creativecommons_license", "psc_chapters", "psc_chapter", "webmaster", "dc_publisher",
        "georss_point", "georss_line", "georss_polygon", "georss_box", "georss_where", "where",
        "geom", "georssgeom", "gml_point", "gml_pos", "gml_linestring", "gml_poslist",
        "gml_polygon", "gml_exterior", "gml_linearring",
    }
)  # fmt: skip
_ALL_HANDLERS = frozenset(
    name.split("_", 2)[2].lower()
    for name in dir(_FeedParserMixin)
    if name.startswith(("_start_", "_end_"))
)


_AUTHOR_PARTS = frozenset(
    {"name", "email", "url", "uri", "homepage", "itunes_name", "itunes_email"}
)


class _Unsure(Exception):
    """The document uses something this path does not replay: feedparser reads it instead."""


def utf8_body(body: bytes, fp_headers: Mapping[str, str]) -> bytes | None:
    """The body as feedparser's strict parser reads it (UTF-8, declaration rewritten), or None
    when feedparser would flag the document (charset or media type) or it has a DOCTYPE."""
    result: dict[str, Any] = {}
    data = convert_to_utf8(dict(fp_headers), body, result)
    if result.get("bozo") or result.get("encoding") is None:
        return None
    if not isinstance(data, bytes):
        return None
    found = _ELEMENT_START.search(data)
    head = data[: found.start()] if found else data
    if _DECLARATIONS.search(head):
        return None
    return data


def read_fast(body: bytes, fp_headers: Mapping[str, str], url: str) -> dict[str, Any] | None:
    """feedparser-shaped {version, feed, entries} for a clean document, None for feedparser."""
    data = utf8_body(body, fp_headers)
    if data is None:
        return None
    base = make_safe_absolute_uri("", url) or make_safe_absolute_uri(url) or ""
    reader = _Reader(base)
    try:
        events = etree.iterparse(
            io.BytesIO(data),
            events=("start-ns", "start", "end"),
            resolve_entities=False,
            no_network=True,
            huge_tree=False,
            load_dtd=False,
            remove_comments=True,
            remove_pis=True,
        )
        reader.run(events)
        if len(events.error_log):
            return None
    except (etree.LxmlError, _Unsure, ValueError):
        return None
    if not reader.version or reader.root_key not in ("rss", "feed", "rdf_rdf"):
        return None
    return {"version": reader.version, "feed": reader.feed, "entries": reader.entries}


def _text(el: Any) -> str:
    if len(el):
        raise _Unsure("markup inside a text field")
    return el.text or ""


class _Reader:
    """A replay of `feedparser.mixin._FeedParserMixin` for the fields we keep (same names)."""

    def __init__(self, base: str) -> None:
        self.feed: dict[str, Any] = {}
        self.entries: list[dict[str, Any]] = []
        self.version = ""
        self.root_key = ""
        self.namespacemap: dict[str | None, str] = {}
        self.in_use: dict[str, str] = {}
        self.keys: dict[str, tuple[str, bool]] = {}
        self.infeed = self.inentry = self.incontent = self.inimage = self.intextinput = 0
        self.insource = self.inauthor = self.incontributor = self.inpublisher = 0
        self.title_depth = -1
        self.depth = 0
        self.has_content = 0
        self.summary_key: str | None = None
        self.guidislink = False
        self.ctype: str | None = None  # contentparams['type']
        self.source: dict[str, Any] = {}
        self.depths: dict[int, dict[str, int]] = {}
        self.baseuri = base
        self.basestack: list[str] = []
        self.safe_base: dict[str, str] = {}

    # -- the event loop ----------------------------------------------------------------------
    def run(self, events: Any) -> None:
        start = _START
        end = _END
        for event, el in events:
            if event == "start":
                key, prefixed = self._key(el.tag)
                attrs = self._attrs(el) if len(el.attrib) else {}
                self.depth += 1
                self._track_base(attrs)
                if not self.root_key:
                    self.root_key = key
                if self.incontent:
                    raise _Unsure("markup inside a text field")
                if not prefixed and key not in ("title", "link", "description", "name"):
                    self.intextinput = 0
                if not prefixed and key not in (
                    "title", "link", "description", "url", "href", "width", "height"
                ):  # fmt: skip
                    self.inimage = 0
                handler = start.get(key)
                if handler is not None:
                    handler(self, el, attrs)
                elif key in _ALL_HANDLERS and key not in _HARMLESS:
                    raise _Unsure(f"<{key}>")
                elif key in _OURS:
                    raise _Unsure(f"<{key}> would overwrite a field")
            elif event == "end":
                key, _ = self._key(el.tag)
                ender = end.get(key)
                if ender is not None:
                    ender(self, el)
                elif key == "ttl" and not (self.inentry or self.insource):
                    self._feed_ttl(el)
                self.basestack.pop()
                if self.basestack and self.basestack[-1]:
                    self.baseuri = self.basestack[-1]
                self.depth -= 1
                if key in ("item", "entry"):
                    el.clear()
            else:
                prefix, uri = el
                self._track_namespace(prefix or None, uri)

    def _track_namespace(self, prefix: str | None, uri: str) -> None:
        self.keys.clear()
        lower = uri.lower()
        if not self.version:
            if (prefix, lower) == (None, "http://my.netscape.com/rdf/simple/0.9/"):
                self.version = "rss090"
            elif lower == "http://purl.org/rss/1.0/":
                self.version = "rss10"
            elif lower == "http://www.w3.org/2005/atom":
                self.version = "atom10"
        if "backend.userland.com/rss" in lower:
            uri = lower = "http://backend.userland.com/rss"
        if lower in _MATCH:
            self.namespacemap[prefix] = _MATCH[lower]
            self.in_use[_MATCH[lower]] = uri
        else:
            self.in_use[prefix or ""] = uri

    def _key(self, tag: str) -> tuple[str, bool]:
        """feedparser's handler name for an element: strict.py's prefix rules, then mixin's."""
        found = self.keys.get(tag)
        if found is not None:
            return found
        if tag[:1] == "{":
            namespace, local = tag[1:].split("}", 1)
        else:
            namespace, local = "", tag
        lower = namespace.lower()
        if "backend.userland.com/rss" in lower:
            namespace = lower = "http://backend.userland.com/rss"
        prefix = _MATCH.get(lower)
        name = local.lower()
        if prefix:
            name = prefix.lower() + ":" + name
        elif namespace:
            for given, value in self.in_use.items():
                if given and value == namespace:
                    name = given + ":" + name
                    break
        name = name.lower()
        if ":" in name:
            given_prefix, suffix = name.split(":", 1)
        else:
            given_prefix, suffix = "", name
        mapped = self.namespacemap.get(given_prefix, given_prefix)
        found = (mapped + "_" + suffix if mapped else suffix), bool(mapped)
        self.keys[tag] = found
        return found

    def _attrs(self, el: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in el.attrib.items():
            if name[:1] == "{":
                namespace, local = name[1:].split("}", 1)
                prefix = _MATCH.get(namespace.lower(), "")
                if prefix:
                    out[(prefix + ":" + local).lower()] = value
                out[local.lower()] = value
            else:
                out[name.lower()] = value
        return out

    def _track_base(self, attrs: dict[str, str]) -> None:
        given = attrs.get("xml:base", attrs.get("base")) or self.baseuri
        if self.baseuri:
            if given == self.baseuri:
                safe = self.safe_base.get(given)
                if safe is None:
                    safe = self.safe_base[given] = make_safe_absolute_uri(given, given)
            else:
                safe = make_safe_absolute_uri(self.baseuri, given)
            self.baseuri = safe or self.baseuri
        else:
            self.baseuri = _urljoin(self.baseuri, given)
        self.basestack.append(self.baseuri)

    # -- feedparser's helpers ----------------------------------------------------------------
    def _context(self) -> dict[str, Any]:
        if self.insource:
            return self.source
        if self.inimage and "image" in self.feed:
            image: dict[str, Any] = self.feed["image"]
            return image
        if self.intextinput:
            textinput: dict[str, Any] = self.feed["textinput"]
            return textinput
        if self.inentry:
            return self.entries[-1]
        return self.feed

    def _push_content(self, attrs: dict[str, str], default: str) -> None:
        self.incontent += 1
        self.ctype = _map_type(attrs.get("type", default))
        if attrs.get("mode", "") == "base64" or not (
            self.ctype.startswith("text/") or self.ctype.endswith(("+xml", "/xml"))
        ):
            raise _Unsure("base64 content")

    def _pop(self, element: str, text: str, *, expecting_text: bool = True) -> str:
        """mixin.pop for one element's text: the same repairs, then the same storing."""
        output = text.strip()
        if not expecting_text:
            return output
        if element in _RELATIVE and output and (element != "id" or self.guidislink):
            output = _urljoin(self.baseuri or "", output)
        if (
            not self.version.startswith("atom")
            and self.ctype == "text/plain"
            and _looks_like_html(output)
        ):
            self.ctype = "text/html"
        if not output.isascii():  # both repairs leave ASCII as it is
            with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
                output = output.encode("iso-8859-1").decode("utf-8")
            if _C1.search(output):
                output = output.translate(_cp1252)
        if element == "title" and -1 < self.title_depth <= self.depth:
            return output
        self._store(element, output)
        return output

    def _store(self, element: str, output: str) -> None:
        if self.inentry and not self.insource:
            entry = self.entries[-1]
            if element == "content":
                entry.setdefault("content", []).append({"type": self.ctype, "value": output})
            elif element == "link":
                if not self.inimage:
                    output = output.replace("&amp;", "&")
                    output = _ENTITY_LIKE.sub(r"&\g<1>", output)
                    entry["link"] = output
            else:
                if element == "description":
                    element = "summary"
                depths = self.depths.setdefault(id(entry), {})
                old = depths.get(element)
                if old is None or self.depth <= old:
                    depths[element] = self.depth
                    entry[element] = output
                if self.incontent:
                    entry[element + "_detail"] = {"type": self.ctype}
        elif self.infeed or self.insource:
            context = self._context()
            if element == "description":
                element = "subtitle"
            context[element] = output
            if element == "link":
                context[element] = _ENTITY_LIKE.sub(r"&\g<1>", output)
            elif self.incontent:
                context[element + "_detail"] = {"type": self.ctype}

    def _pop_content(self, element: str, el: Any) -> str:
        value = self._pop(element, _text(el))
        self.incontent -= 1
        self.ctype = None
        return value

    def _save(self, key: str, value: Any, *, overwrite: bool = False) -> None:
        context = self._context()
        if overwrite:
            context[key] = value
        else:
            context.setdefault(key, value)

    def _save_author(self, key: str, value: str, prefix: str = "author") -> None:
        context = self._context()
        context.setdefault(prefix + "_detail", {})[key] = value
        self._sync_author_detail()
        context.setdefault("authors", [{}])
        context["authors"][-1][key] = value

    def _sync_author_detail(self, key: str = "author") -> None:
        context = self._context()
        detail = context.get(key + "s", [{}])[-1]
        if detail:
            name, email = detail.get("name"), detail.get("email")
            if name and email:
                context[key] = f"{name} ({email})"
            elif name:
                context[key] = name
            elif email:
                context[key] = email
            return
        author, email = context.get(key), None
        if not author:
            return
        match = _EMAIL.search(author)
        if match:
            email = match.group(0)
            author = author.replace(email, "").replace("()", "").replace("<>", "")
            author = author.replace("&lt;&gt;", "").strip()
            if author and author[0] == "(":
                author = author[1:]
            if author and author[-1] == ")":
                author = author[:-1]
            author = author.strip()
        if author or email:
            context.setdefault(key + "_detail", detail)
        if author:
            detail["name"] = author
        if email:
            detail["email"] = email

    def _feed_ttl(self, el: Any) -> None:
        if len(el.attrib):
            self._context()["ttl"] = dict(el.attrib)
        elif self.infeed:
            self._context()["ttl"] = self._pop("ttl", _text(el))

    # -- start handlers ----------------------------------------------------------------------
    def _start_rss(self, el: Any, attrs: dict[str, str]) -> None:
        if not self.version or not self.version.startswith("rss"):
            given = attrs.get("version", "")
            known = {"0.91": "rss091u", "0.92": "rss092", "0.93": "rss093", "0.94": "rss094"}
            if given in known:
                self.version = known[given]
            elif given.startswith("2."):
                self.version = "rss20"
            else:
                self.version = "rss"

    def _start_feed(self, el: Any, attrs: dict[str, str]) -> None:
        self.infeed = 1
        if not self.version:
            known = {"0.1": "atom01", "0.2": "atom02", "0.3": "atom03"}
            self.version = known.get(attrs.get("version", ""), "atom")

    def _start_channel(self, el: Any, attrs: dict[str, str]) -> None:
        self.infeed = 1
        if "lastmod" in attrs or "href" in attrs:
            raise _Unsure("CDF attributes")

    def _start_item(self, el: Any, attrs: dict[str, str]) -> None:
        self.entries.append({})
        self.inentry = 1
        self.guidislink = False
        self.title_depth = -1
        about = attrs.get(self.namespacemap.get("rdf", "rdf") + ":about")
        if about:
            self._context()["id"] = about
        if "lastmod" in attrs or "href" in attrs:
            raise _Unsure("CDF attributes")

    def _start_image(self, el: Any, attrs: dict[str, str]) -> None:
        if not self.inentry:
            self._context().setdefault("image", {})
        self.inimage = 1
        self.title_depth = -1

    def _start_textinput(self, el: Any, attrs: dict[str, str]) -> None:
        self._context().setdefault("textinput", {})
        self.intextinput = 1
        self.title_depth = -1

    def _start_source(self, el: Any, attrs: dict[str, str]) -> None:
        self.insource = 1
        self.title_depth = -1

    def _start_title(self, el: Any, attrs: dict[str, str]) -> None:
        self._push_content(attrs, "text/plain")

    def _start_description(self, el: Any, attrs: dict[str, str]) -> None:
        if "summary" in self._context() and not self.has_content:
            self.summary_key = "content"
            self._start_content(el, attrs)
        else:
            self._push_content(attrs, "text/html")

    def _start_abstract(self, el: Any, attrs: dict[str, str]) -> None:
        self._push_content(attrs, "text/plain")

    def _start_summary(self, el: Any, attrs: dict[str, str]) -> None:
        if "summary" in self._context() and not self.has_content:
            self.summary_key = "content"
            self._start_content(el, attrs)
        else:
            self.summary_key = "summary"
            self._push_content(attrs, "text/plain")

    def _start_content(self, el: Any, attrs: dict[str, str]) -> None:
        self.has_content = 1
        self._push_content(attrs, "text/plain")

    def _start_content_encoded(self, el: Any, attrs: dict[str, str]) -> None:
        self.has_content = 1
        self._push_content(attrs, "text/html")

    def _start_other_content(self, el: Any, attrs: dict[str, str]) -> None:
        """subtitle, rights, info: content elements whose values we do not keep."""
        self._push_content(attrs, "text/plain")

    def _start_link(self, el: Any, attrs: dict[str, str]) -> None:
        attrs.setdefault("rel", "alternate")
        attrs.setdefault("type", "application/atom+xml" if attrs["rel"] == "self" else "text/html")
        context = self._context()
        href = attrs.get("url", attrs.get("uri", attrs.get("href")))
        if href:
            attrs.pop("url", None)
            attrs.pop("uri", None)
            attrs["href"] = href
        if "href" in attrs:
            attrs["href"] = _urljoin(self.baseuri or "", attrs["href"])
            if attrs.get("rel") == "alternate" and _map_type(attrs["type"]) in _HTML_TYPES:
                context["link"] = attrs["href"]

    def _start_guid(self, el: Any, attrs: dict[str, str]) -> None:
        self.guidislink = attrs.get("ispermalink", "true") == "true"

    def _start_author(self, el: Any, attrs: dict[str, str]) -> None:
        self.inauthor = 1
        self._context().setdefault("authors", []).append({})

    def _start_contributor(self, el: Any, attrs: dict[str, str]) -> None:
        self.incontributor = 1
        self._context().setdefault("contributors", []).append({})

    def _start_owner(self, el: Any, attrs: dict[str, str]) -> None:
        self.inpublisher = 1

    def _start_none(self, el: Any, attrs: dict[str, str]) -> None:
        """Handlers that only push: their work happens at the end tag."""

    # -- end handlers ------------------------------------------------------------------------
    def _end_channel(self, el: Any) -> None:
        self.infeed = 0

    def _end_item(self, el: Any) -> None:
        self.inentry = 0
        self.has_content = 0

    def _end_image(self, el: Any) -> None:
        self.inimage = 0

    def _end_textinput(self, el: Any) -> None:
        self.intextinput = 0

    def _end_source(self, el: Any) -> None:
        self.insource = 0
        self.source.clear()

    def _end_title(self, el: Any) -> None:
        if self._pop_content("title", el):
            self.title_depth = self.depth

    def _end_media_title(self, el: Any) -> None:
        self._pop_content("title", el)

    def _end_description(self, el: Any) -> None:
        if self.summary_key == "content":
            self._end_content(el)
        else:
            self._pop_content("description", el)
        self.summary_key = None

    def _end_summary(self, el: Any) -> None:
        if self.summary_key == "content":
            self._end_content(el)
        else:
            self._pop_content(self.summary_key or "summary", el)
        self.summary_key = None

    def _end_content(self, el: Any) -> None:
        copy = _map_type(self.ctype or "") in ({"text/plain"} | _HTML_TYPES)
        value = self._pop_content("content", el)
        if copy:
            self._save("summary", value)

    def _end_other_content(self, el: Any) -> None:
        self._pop_content("subtitle", el)

    def _end_link(self, el: Any) -> None:
        if "href" not in self._link_attrs(el):
            text = _text(el)
            if self.infeed or self.inentry or self.insource:  # else feedparser expects no text
                self._pop("link", text)

    def _link_attrs(self, el: Any) -> dict[str, str]:
        attrs = self._attrs(el) if len(el.attrib) else {}
        href = attrs.get("url", attrs.get("uri", attrs.get("href")))
        if href:
            attrs["href"] = href
        return attrs

    def _end_guid(self, el: Any) -> None:
        value = self._pop("id", _text(el))
        self._save("guidislink", self.guidislink and "link" not in self._context())
        if self.guidislink:
            self._save("link", value)

    def _end_published(self, el: Any) -> None:
        value = self._pop("published", _text(el))
        self._save("published_parsed", _parse_date(value), overwrite=True)

    def _end_updated(self, el: Any) -> None:
        value = self._pop("updated", _text(el))
        self._save("updated_parsed", _parse_date(value), overwrite=True)

    def _end_author(self, el: Any) -> None:
        text = el.text or ""
        for child in el:
            key, _ = self._key(child.tag)
            if key not in _AUTHOR_PARTS:
                raise _Unsure(f"<{key}> inside an author")
            text += child.tail or ""
        self._pop("author", text)
        self.inauthor = 0
        self._sync_author_detail()

    def _end_name(self, el: Any) -> None:
        value = self._pop("name", _text(el), expecting_text=False)
        if self.inpublisher:
            self._save_author("name", value, "publisher")
        elif self.inauthor:
            self._save_author("name", value)
        elif self.incontributor:
            self._contributor("name", value)
        elif self.intextinput:
            self._context()["name"] = value

    def _end_email(self, el: Any) -> None:
        value = self._pop("email", _text(el), expecting_text=False)
        if self.inpublisher:
            self._save_author("email", value, "publisher")
        elif self.inauthor:
            self._save_author("email", value)
        elif self.incontributor:
            self._contributor("email", value)

    def _end_url(self, el: Any) -> None:
        value = self._pop("href", _text(el))
        if self.inauthor:
            self._save_author("href", value)
        elif self.incontributor:
            self._contributor("href", value)

    def _contributor(self, key: str, value: str) -> None:
        self._context().setdefault("contributors", [{}])[-1][key] = value

    def _end_contributor(self, el: Any) -> None:
        self.incontributor = 0

    def _end_dc_contributor(self, el: Any) -> None:
        self._end_name(el)
        self.incontributor = 0

    def _end_owner(self, el: Any) -> None:
        self.inpublisher = 0
        self._sync_author_detail("publisher")

    def _end_ignored_text(self, el: Any) -> None:
        """Text handlers whose value we do not keep: still no markup inside."""
        _text(el)


_R = _Reader
_START: dict[str, Callable[[_Reader, Any, dict[str, str]], None]] = {
    "rss": _R._start_rss,
    "feed": _R._start_feed,
    "channel": _R._start_channel,
    "item": _R._start_item,
    "entry": _R._start_item,
    "image": _R._start_image,
    "textinput": _R._start_textinput,
    "source": _R._start_source,
    "title": _R._start_title,
    "dc_title": _R._start_title,
    "media_title": _R._start_title,
    "description": _R._start_description,
    "dc_description": _R._start_description,
    "media_description": _R._start_description,
    "abstract": _R._start_abstract,
    "summary": _R._start_summary,
    "itunes_summary": _R._start_summary,
    "content": _R._start_content,
    "content_encoded": _R._start_content_encoded,
    "fullitem": _R._start_content_encoded,
    "subtitle": _R._start_other_content,
    "tagline": _R._start_other_content,
    "itunes_subtitle": _R._start_other_content,
    "rights": _R._start_other_content,
    "copyright": _R._start_other_content,
    "dc_rights": _R._start_other_content,
    "info": _R._start_other_content,
    "feedburner_browserfriendly": _R._start_other_content,
    "link": _R._start_link,
    "guid": _R._start_guid,
    "id": _R._start_guid,
    "author": _R._start_author,
    "managingeditor": _R._start_author,
    "dc_author": _R._start_author,
    "dc_creator": _R._start_author,
    "itunes_author": _R._start_author,
    "contributor": _R._start_contributor,
    "dc_contributor": _R._start_contributor,
    "itunes_owner": _R._start_owner,
    "published": _R._start_none,
    "issued": _R._start_none,
    "pubdate": _R._start_none,
    "dcterms_issued": _R._start_none,
    "updated": _R._start_none,
    "modified": _R._start_none,
    "lastbuilddate": _R._start_none,
    "dc_date": _R._start_none,
    "dcterms_modified": _R._start_none,
    "name": _R._start_none,
    "itunes_name": _R._start_none,
    "email": _R._start_none,
    "itunes_email": _R._start_none,
    "url": _R._start_none,
    "uri": _R._start_none,
    "homepage": _R._start_none,
    "rdf_rdf": _R._start_none,
}
_END: dict[str, Callable[[_Reader, Any], None]] = {
    "channel": _R._end_channel,
    "feed": _R._end_channel,
    "item": _R._end_item,
    "entry": _R._end_item,
    "image": _R._end_image,
    "textinput": _R._end_textinput,
    "source": _R._end_source,
    "title": _R._end_title,
    "dc_title": _R._end_title,
    "media_title": _R._end_media_title,
    "description": _R._end_description,
    "dc_description": _R._end_description,
    "media_description": _R._end_description,
    "abstract": _R._end_description,
    "summary": _R._end_summary,
    "itunes_summary": _R._end_summary,
    "content": _R._end_content,
    "content_encoded": _R._end_content,
    "fullitem": _R._end_content,
    "subtitle": _R._end_other_content,
    "tagline": _R._end_other_content,
    "itunes_subtitle": _R._end_other_content,
    "rights": _R._end_other_content,
    "copyright": _R._end_other_content,
    "dc_rights": _R._end_other_content,
    "info": _R._end_other_content,
    "feedburner_browserfriendly": _R._end_other_content,
    "link": _R._end_link,
    "guid": _R._end_guid,
    "id": _R._end_guid,
    "published": _R._end_published,
    "issued": _R._end_published,
    "pubdate": _R._end_published,
    "dcterms_issued": _R._end_published,
    "updated": _R._end_updated,
    "modified": _R._end_updated,
    "lastbuilddate": _R._end_updated,
    "dc_date": _R._end_updated,
    "dcterms_modified": _R._end_updated,
    "author": _R._end_author,
    "managingeditor": _R._end_author,
    "dc_author": _R._end_author,
    "dc_creator": _R._end_author,
    "itunes_author": _R._end_author,
    "name": _R._end_name,
    "itunes_name": _R._end_name,
    "email": _R._end_email,
    "itunes_email": _R._end_email,
    "url": _R._end_url,
    "uri": _R._end_url,
    "homepage": _R._end_url,
    "contributor": _R._end_contributor,
    "dc_contributor": _R._end_dc_contributor,
    "itunes_owner": _R._end_owner,
}
