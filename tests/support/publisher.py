"""A newsroom of N feeds on 127.0.0.1 that keep publishing, for replica tests and the scale run.

Each source `i` is an RSS 2.0 document at `/feed/<i>.xml` holding its latest items. A feed
answers `304 Not Modified` to a matching `If-None-Match`, so unchanged sources cost what they
cost in real life. The server counts fetches per source and remembers when each item was
published, so a test can check "every source polled once per interval" and measure the delay
from publication to the Slack post. Item texts are random words (near-duplicate detection must
not merge two items); items meant to alert carry `KEYWORD`.

The server runs its own event loop on a thread, so synchronous tests, asyncio tests and
subprocess replicas all reach it the same way.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from email.utils import formatdate
from xml.sax.saxutils import escape

from aiohttp import web

KEYWORD = "zephyrquark"
WATCHLIST_YAML = f"""name: Replica test
description: Items published by tests/support/publisher.py that carry the test keyword.
query: {KEYWORD}
alert:
  slack: ["#replicas"]
"""


@dataclass(frozen=True, slots=True)
class Item:
    source: int
    guid: str
    title: str
    summary: str
    published: float  # time.time() when it appeared in the feed
    matching: bool

    @property
    def link_path(self) -> str:
        return f"/item/{self.guid}"


class Publisher:
    """Feeds for sources 0..n-1; `publish()` adds items; counters say who fetched what."""

    def __init__(self, sources: int, *, baseline: int = 3, keep: int = 20, seed: int = 7) -> None:
        self.n = sources
        self.keep = keep
        self._rng = random.Random(seed)
        self._words = [self._word() for _ in range(2000)]
        self._lock = threading.Lock()
        self._items: list[list[Item]] = [[] for _ in range(sources)]
        self._version = [0] * sources
        self._serial = 0
        self.fetches: Counter[int] = Counter()
        self.fetch_times: dict[int, list[float]] = {}
        self.delay = 0.0  # seconds every feed response waits (slow servers, shutdown tests)
        self.not_modified: Counter[int] = Counter()
        self.published: dict[str, Item] = {}
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._cache: dict[int, bytes] = {}
        for source in range(sources):
            for _ in range(baseline):
                self._add(source, matching=True, published=time.time() - 3600)

    # --- content -------------------------------------------------------------------------

    def _word(self) -> str:
        return "".join(
            self._rng.choice("bcdfghjklmnprstvz") + self._rng.choice("aeiou")
            for _ in range(self._rng.randint(2, 4))
        )

    def _text(self, count: int) -> str:
        return " ".join(self._rng.choice(self._words) for _ in range(count))

    def _add(self, source: int, *, matching: bool, published: float) -> Item:
        self._serial += 1
        guid = f"s{source}-n{self._serial}"
        words = self._text(9)
        title = f"{KEYWORD} {words}" if matching else words.capitalize()
        item = Item(source, guid, f"{title} ({guid})", self._text(40), published, matching)
        items = self._items[source]
        items.insert(0, item)
        del items[self.keep :]
        self._version[source] += 1
        self._cache.pop(source, None)
        self.published[guid] = item
        return item

    def publish(self, source: int, *, matching: bool = True) -> Item:
        with self._lock:
            return self._add(source, matching=matching, published=time.time())

    def publish_many(self, sources: list[int], *, matching: bool = True) -> list[Item]:
        with self._lock:
            now = time.time()
            return [self._add(s, matching=matching, published=now) for s in sources]

    def items_since(self, when: float, *, matching: bool = True) -> list[Item]:
        with self._lock:
            return [
                i for i in self.published.values() if i.published >= when and i.matching == matching
            ]

    def reset_counts(self) -> None:
        with self._lock:
            self.fetches.clear()
            self.fetch_times.clear()
            self.not_modified.clear()

    def _document(self, source: int) -> bytes:
        cached = self._cache.get(source)
        if cached is not None:
            return cached
        base = f"http://127.0.0.1:{self.port}"
        parts = [
            '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>',
            f"<title>Publisher source {source}</title><link>{base}/</link>",
            f"<description>Test feed {source}</description>",
        ]
        for item in self._items[source]:
            parts.append(
                "<item>"
                f"<title>{escape(item.title)}</title>"
                f"<link>{base}{item.link_path}</link>"
                f'<guid isPermaLink="false">{item.guid}</guid>'
                f"<pubDate>{formatdate(item.published, usegmt=True)}</pubDate>"
                f"<description>{escape(item.summary)}</description>"
                "</item>"
            )
        parts.append("</channel></rss>")
        body = "".join(parts).encode()
        self._cache[source] = body
        return body

    # --- HTTP ----------------------------------------------------------------------------

    async def _feed(self, request: web.Request) -> web.Response:
        try:
            source = int(request.match_info["source"])
        except ValueError:
            raise web.HTTPNotFound() from None
        if not 0 <= source < self.n:
            raise web.HTTPNotFound()
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            self.fetches[source] += 1
            self.fetch_times.setdefault(source, []).append(time.time())
            etag = f'"{source}-{self._version[source]}"'
            if request.headers.get("If-None-Match") == etag:
                self.not_modified[source] += 1
                return web.Response(status=304, headers={"ETag": etag})
            body = self._document(source)
        return web.Response(
            body=body,
            headers={"ETag": etag, "Content-Type": "application/rss+xml; charset=utf-8"},
        )

    async def _article(self, request: web.Request) -> web.Response:
        item = self.published.get(request.match_info["guid"])
        if item is None:
            raise web.HTTPNotFound()
        return web.Response(text=f"<html><h1>{escape(item.title)}</h1></html>")

    def url(self, source: int) -> str:
        return f"http://127.0.0.1:{self.port}/feed/{source}.xml"

    def sources_yaml(self, every: str = "1m") -> str:
        lines = ["sources:"]
        for source in range(self.n):
            lines += [
                f"  - id: src-{source}",
                f"    name: Source {source}",
                f"    url: {self.url(source)}",
                f"    every: {every}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> Publisher:
        ready = threading.Event()
        errors: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                app = web.Application()
                app.router.add_get("/feed/{source}.xml", self._feed)
                app.router.add_get("/item/{guid}", self._article)
                runner = web.AppRunner(app, access_log=None)
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
                loop.run_until_complete(site.start())
                self._runner = runner
                self.port = int(runner.addresses[0][1])
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="publisher", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
