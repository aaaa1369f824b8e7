"""A prepared service over feeds on the local feed server, polled through the real path
(fetch → parse → normalize → store → story → match → outbox), for ingest tests."""

from __future__ import annotations

import asyncio
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from monitor.app import App
from monitor.pipeline import PollReport
from monitor.service import Service
from monitor.settings import Settings
from monitor.store import db

MISSILES = """name: Launches
description: Missile launches.
query: missile
alert:
  slack: ["#launches"]
"""

Item = tuple[str, str, str, datetime | None]  # guid, title, description, published


def feed(items: list[Item]) -> bytes:
    """RSS 2.0 with (guid, title, description, published) items, in the order given."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>',
        "<title>t</title><link>http://example.org/</link><description>d</description>",
    ]
    for guid, title, summary, published in items:
        date = f"<pubDate>{format_datetime(published, usegmt=True)}</pubDate>" if published else ""
        parts.append(
            f"<item><guid>{escape(guid)}</guid><title>{escape(title)}</title>"
            f"<link>http://example.org/{escape(guid)}</link>"
            f"<description>{escape(summary)}</description>{date}</item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


class Desk:
    """A service over `feeds` (source id → URL) with one watchlist (`MISSILES` unless given),
    no Slack or email (alerts are console rows), and one event loop for all its polls (the
    HTTP client belongs to the loop it was made in)."""

    def __init__(
        self,
        tmp: Path,
        url: str,
        feeds: dict[str, str],
        *,
        watchlist: str = MISSILES,
        dry_run: bool = False,
        **settings: Any,
    ) -> None:
        folder = tmp / "watchlists"
        folder.mkdir(exist_ok=True)
        (folder / "launches.yaml").write_text(watchlist)
        lines = ["sources:"]
        for source_id, feed_url in feeds.items():
            lines += [f"  - id: {source_id}", f"    name: {source_id}", f"    url: {feed_url}"]
        (folder / "sources.yaml").write_text("\n".join(lines) + "\n")
        db.upgrade(url)
        values: dict[str, Any] = {
            "database_url": url,
            "watchlists_dir": folder,
            "allow_private_hosts": ["127.0.0.1"],
            "http_port": -1,
            "slack_bot_token": None,
            "slack_webhook_url": None,
            "smtp_host": None,
        }
        values.update(settings)
        self.service = Service(App(Settings(**values)), dry_run=dry_run)
        self.service.prepare(exclusive=False)
        self.engine = self.service.engine
        self.runner = asyncio.Runner()

    def poll(self, source_id: str) -> PollReport:
        """Poll one source now, whether due or not."""
        (report,) = self.runner.run(self.service.poller.poll_due(force=True, only=[source_id]))
        return report

    def close(self) -> None:
        self.runner.run(self.service.aclose())
        self.runner.close()
