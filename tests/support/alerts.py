"""Small builders for alert tests: ingested items, watchlists and settings without the env."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from monitor import alerting
from monitor.clock import utcnow
from monitor.deliver import Dispatcher
from monitor.model import Article, IngestedItem, Match, Span, StoryAssignment
from monitor.settings import Settings
from monitor.store.tables import AlertRow, BreakerRow, DestinationRow
from monitor.watchlists import AlertSpec, Watchlist


def settings(**kw: Any) -> Settings:
    """Settings from arguments only (the test process environment is ignored)."""
    base: dict[str, Any] = {
        "database_url": "sqlite://",
        "slack_bot_token": None,
        "slack_webhook_url": None,
        "smtp_host": None,
        "deliver_retry_base_seconds": 0.5,
        "slack_channel_interval": 0.0,
    }
    base.update(kw)
    return Settings(**base)


def watchlist(
    wid: str = "nk",
    *,
    slack: Sequence[str] = ("#nk",),
    email: Sequence[str] = (),
    mode: str = "immediate",
    digest: str | None = None,
    sources: Sequence[str] = (),
) -> Watchlist:
    return Watchlist(
        id=wid,
        name=f"{wid.upper()} desk",
        description="",
        query="kim",
        exclude=None,
        min_score=0.0,
        sources=tuple(sources),
        alert=AlertSpec(
            slack=tuple(slack),
            email=tuple(email),
            mode=mode,  # type: ignore[arg-type]
            digest=digest,
        ),
        path=Path(f"{wid}.yaml"),
    )


def item(
    article_id: int,
    *,
    source: str = "src",
    title: str | None = None,
    published: datetime | None = None,
    story: tuple[int, bool] | None = None,
    change: str = "new",
    catchup: bool = False,
    watchlists: Sequence[str] = ("nk",),
    content_hash: str | None = None,
) -> IngestedItem:
    title = title or f"Kim Jong Un story {article_id}"
    article = Article(
        source_id=source,
        entry_key=f"{source}-{article_id}",
        url=f"https://{source}.example/{article_id}",
        title=title,
        text=f"{title}. Kim Jong Un said things.",
        published=published,
        content_hash=content_hash or f"hash-{source}-{article_id}",
        link=f"https://{source}.example/{article_id}",
    )
    matches = tuple(
        Match(w, f"{w.upper()} desk", 2.0, ("Kim Jong Un",), article.text, (Span(0, 3),))
        for w in watchlists
    )
    assignment = None
    if story is not None:
        assignment = StoryAssignment(story[0], f"story-{story[0]}", story[1], article_id)
    return IngestedItem(article_id, article, change, matches, assignment, catchup)  # type: ignore[arg-type]


def enqueue(
    engine: Engine,
    items: Sequence[IngestedItem],
    wls: Sequence[Watchlist],
    cfg: Settings,
    now: datetime,
    *,
    source: str = "src",
) -> int:
    with Session(engine) as session, session.begin():
        return alerting.enqueue_for_poll(
            session,
            source_id=source,
            source_name=f"{source.upper()} News",
            items=items,
            watchlists={w.id: w for w in wls},
            settings=cfg,
            now=now,
        )


def rows(engine: Engine) -> list[AlertRow]:
    with Session(engine) as session:
        found = list(session.scalars(select(AlertRow).order_by(AlertRow.id)))  # type: ignore[arg-type]
        session.expunge_all()
        return found


def run(dispatcher: Dispatcher, now: datetime | None = None) -> int:
    return asyncio.run(dispatcher.tick(now))


def later(seconds: float = 3600) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


def run_due(dispatcher: Dispatcher) -> int:
    """Skip the backoff: make every waiting row due now (and an open breaker's probe), then
    tick on the real clock."""
    past = utcnow() - timedelta(seconds=1)
    with Session(dispatcher.engine) as session, session.begin():
        session.execute(
            update(AlertRow)
            .where(AlertRow.status == "retry")  # type: ignore[arg-type]
            .values(next_attempt_at=past)
        )
        session.execute(update(DestinationRow).values(not_before=past))
        session.execute(
            update(BreakerRow)
            .where(BreakerRow.open_until.is_not(None))  # type: ignore[union-attr]
            .values(open_until=past)
        )
    return run(dispatcher)
