"""`monitor demo`: the real service path on a sample of real articles, offline, in a minute.

The sample (`articles.jsonl`, provenance in `SOURCES.md`) ships inside the package, so the demo
works from an installed package; `feeds.py` publishes it from a local feed server in rounds,
`run.py` drives the service's own poller and dispatcher over it, and `show.py` renders what a
desk would see (the Slack message, the email) and the closing summary for the terminal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class DemoItem:
    """One sample article and when the demo publishes it (round 0: before the first poll)."""

    round: int
    feed: str  # the demo source id
    feed_name: str
    id: str
    url: str
    title: str
    summary: str
    origin: str  # the public data file it was read from (SOURCES.md)


def load_sample() -> list[DemoItem]:
    """The bundled sample, in publication order."""
    text = resources.files("monitor.demo").joinpath("articles.jsonl").read_text("utf-8")
    items = []
    for line in text.splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        items.append(
            DemoItem(
                round=int(raw["round"]),
                feed=str(raw["feed"]),
                feed_name=str(raw["feed_name"]),
                id=str(raw["id"]),
                url=str(raw["url"]),
                title=str(raw["title"]),
                summary=str(raw.get("summary") or ""),
                origin=str(raw["origin"]),
            )
        )
    return items
