"""The demo's feed server: one RSS 2.0 feed per sample outlet on 127.0.0.1, growing in rounds.

aiohttp runs on the caller's event loop (the poller fetches it over real TCP, through the same
client, SSRF guard and parser as any feed). Each feed sends an ETag and answers 304 when
nothing changed, as a well-behaved server does. Items are dated when they are published in the
demo (catch-up items a few hours earlier), so the age rule (`MONITOR_MAX_ARTICLE_AGE_HOURS`)
treats them as today's news.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

from aiohttp import web

from monitor.demo import DemoItem


class DemoFeeds:
    """Serves `/feeds/<feed>.xml` for every feed of the sample."""

    def __init__(self, items: Sequence[DemoItem]) -> None:
        self.items = list(items)
        self.feeds = {i.feed: i.feed_name for i in self.items}
        self._published: dict[str, datetime] = {}  # item id → its pubDate
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/feeds/{feed}.xml", self._feed)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, feed: str) -> str:
        return f"http://127.0.0.1:{self.port}/feeds/{feed}.xml"

    def publish(self, round_: int, now: datetime) -> list[DemoItem]:
        """Put the round's items into their feeds; round 0 is dated hours ago (the backlog)."""
        fresh = [i for i in self.items if i.round == round_]
        for n, item in enumerate(fresh):
            if round_ == 0:
                when = now - timedelta(hours=2 + 3 * n)
            else:
                when = now - timedelta(minutes=len(fresh) - n)
            self._published[item.id] = when
        return fresh

    def document(self, feed: str) -> bytes:
        """The feed as it is now: published items, newest first."""
        live = [i for i in self.items if i.feed == feed and i.id in self._published]
        live.sort(key=lambda i: self._published[i.id], reverse=True)
        parts = [
            '<?xml version="1.0" encoding="utf-8"?>',
            '<rss version="2.0"><channel>',
            f"<title>{escape(self.feeds[feed])}</title>",
            f"<link>{escape(self.url(feed))}</link>",
            "<description>monitor demo: real articles from public datasets</description>",
        ]
        for item in live:
            parts.append(
                "<item>"
                f'<guid isPermaLink="false">{escape(item.id)}</guid>'
                f"<title>{escape(item.title)}</title>"
                f"<link>{escape(item.url)}</link>"
                f"<description>{escape(item.summary)}</description>"
                f"<pubDate>{format_datetime(self._published[item.id])}</pubDate>"
                "</item>"
            )
        parts.append("</channel></rss>")
        return "\n".join(parts).encode("utf-8")

    async def _feed(self, request: web.Request) -> web.Response:
        feed = request.match_info["feed"]
        if feed not in self.feeds:
            raise web.HTTPNotFound()
        body = self.document(feed)
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(
            body=body, content_type="application/rss+xml", charset="utf-8", headers={"ETag": etag}
        )
