"""One event, several outlets, two languages: one alert and a thread of follow-ups.

A real service (poller, pipeline, dispatcher) over a local feed server and the Slack stand-in,
on SQLite and PostgreSQL, with the real text model (USE multilingual v3): the articles are real
ones from the corpus, republished now with their original spacing in time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.app import App
from monitor.clock import utcnow
from monitor.corpus import read_articles
from monitor.service import Service
from monitor.settings import Settings
from monitor.store import db
from monitor.store.tables import ArticleRow, StoryVector
from tests.support.desk import feed
from tests.support.feedserver import FeedServer
from tests.support.paths import CORPUS
from tests.support.slackfake import SlackFake

pytestmark = pytest.mark.slow  # loads the real text model

WATCHLIST = """name: Korea desk
description: Anything about the Koreas.
query: korea*
alert:
  slack: ["#desk"]
"""
SOURCES = {"aljazeera": "Al Jazeera", "interia": "Interia", "fox": "Fox News"}


@pytest.fixture(scope="module")
def texts() -> dict[str, Any]:
    return {a.id: a.article for a in read_articles(CORPUS / "articles.jsonl")}


@pytest.fixture
def newsroom(tmp_path: Path, db_url: str) -> Iterator[tuple[Service, FeedServer, SlackFake]]:
    with FeedServer() as feeds, SlackFake() as slack:
        urls = {
            sid: feeds.add(f"/{sid}.xml", feed([("seed", "Seed", "seed", None)])) for sid in SOURCES
        }
        folder = tmp_path / "watchlists"
        folder.mkdir()
        (folder / "desk.yaml").write_text(WATCHLIST)
        lines = ["sources:"]
        for sid, name in SOURCES.items():
            lines += [f"  - id: {sid}", f"    name: {name}", f"    url: {urls[sid]}"]
        (folder / "sources.yaml").write_text("\n".join(lines) + "\n")
        db.upgrade(db_url)
        settings = Settings(
            database_url=db_url,
            watchlists_dir=folder,
            allow_private_hosts=["127.0.0.1"],
            http_port=-1,
            slack_bot_token=slack.token,
            slack_api_url=slack.url,
            slack_channel_interval=0.0,
            slack_webhook_url=None,
            smtp_host=None,
            embedder="use",
            story_vectors="gated",
        )
        service = Service(App(settings))
        service.prepare(exclusive=False)
        try:
            yield service, feeds, slack
        finally:
            import asyncio

            asyncio.run(service.aclose())


def _publish(feeds: FeedServer, sid: str, article: Any, hours_ago: float) -> None:
    when = utcnow() - timedelta(hours=hours_ago)
    feeds.update(
        f"/{sid}.xml",
        feed(
            [
                ("seed", "Seed", "seed", None),
                (f"{sid}-{article.entry_key[:8]}", article.title, article.text, when),
            ]
        ),
    )


async def test_one_event_in_two_languages_is_one_alert_and_a_thread(
    newsroom: tuple[Service, FeedServer, SlackFake], texts: dict[str, Any]
) -> None:
    service, feeds, slack = newsroom
    await service.poller.poll_due(force=True)  # the catch-up of every source: no alerts
    # Al Jazeera (English) first, then Interia's Polish report 3.9 h later (the dev pair's
    # spacing); the two share no words a MinHash could see.
    _publish(feeds, "aljazeera", texts["r64c725a2cc"], 5.0)
    await service.poller.poll_due(force=True, only=["aljazeera"])
    await service.dispatcher.tick()
    _publish(feeds, "interia", texts["r2f9f9b4712"], 1.1)
    await service.poller.poll_due(force=True, only=["interia"])
    await service.dispatcher.tick()
    # A different event that reads alike (another Security Council meeting, its own day).
    _publish(feeds, "fox", texts["r24141dd782"], 16.0)
    await service.poller.poll_due(force=True, only=["fox"])
    await service.dispatcher.tick()
    _publish(feeds, "fox", texts["r1a60788ce1"], 0.5)
    await service.poller.poll_due(force=True, only=["fox"])
    await service.dispatcher.tick()

    top = [m for m in slack.messages if m.thread_ts is None]
    replies = [m for m in slack.messages if m.thread_ts is not None]
    assert len(top) == 3, [m.text for m in slack.messages]
    (reply,) = replies
    (parent,) = [m for m in top if "UN should demand end" in m.text]
    assert reply.thread_ts == parent.ts
    assert reply.text.startswith("Also reported by Interia (Polish): Korea Północna apeluje")
    assert "Also reported by *Interia* (Polish)" in reply.blocks[0]["text"]["text"]
    with Session(service.engine) as session:
        stories = dict(session.execute(select(ArticleRow.title, ArticleRow.story_id)).all())
        languages = set(session.scalars(select(StoryVector.language)))
    english = stories[texts["r64c725a2cc"].title]
    assert stories[texts["r2f9f9b4712"].title] == english
    assert stories[texts["r24141dd782"].title] != stories[texts["r1a60788ce1"].title]
    assert languages == {"en", "pl"}
