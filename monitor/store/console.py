"""Read models of the admin console: each query is bounded (a limit, an index) so a page
answers in milliseconds at 100,000 articles, and each returns frozen values.

Like `monitor.store.status`, what leaves here is shown: URLs and error texts are redacted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from monitor.clock import as_utc, as_utc_or_none
from monitor.model import Article
from monitor.redact import redact_text, redact_url
from monitor.store.articles import StoredArticle
from monitor.store.status import RecentAlert, _alert_columns, _recent
from monitor.store.tables import (
    AlertRow,
    ArticleCopyRow,
    ArticleRow,
    PollEventRow,
    SourceRow,
    Story,
)

HEALTH = ("failing", "moved", "disabled", "new", "ok")


def _health_case() -> Any:
    """A source's health in SQL, in the order an admin should look at them."""
    return case(
        (col(SourceRow.disabled_reason).is_not(None), "disabled"),
        (col(SourceRow.failures) > 0, "failing"),
        (col(SourceRow.moved_to).is_not(None), "moved"),
        (col(SourceRow.last_status) == "new", "new"),
        else_="ok",
    )


@dataclass(frozen=True, slots=True)
class SourceView:
    """One source as the console shows it; `url`, `error` and `moved_to` redacted."""

    id: str
    name: str
    url: str
    kind: str
    every_seconds: int
    enabled: bool
    health: str
    status: str
    http_status: int | None
    failures: int
    error: str | None
    error_transient: bool | None
    last_polled_at: datetime | None
    last_success_at: datetime | None
    next_poll_at: datetime
    polls: int
    last_new_entries: int
    lease_owner: str | None
    lease_until: datetime | None
    disabled_reason: str | None
    moved_to: str | None


def _source_columns() -> tuple[Any, ...]:
    return (
        col(SourceRow.id),
        col(SourceRow.name),
        col(SourceRow.url),
        col(SourceRow.kind),
        col(SourceRow.every_seconds),
        col(SourceRow.enabled),
        _health_case().label("health"),
        col(SourceRow.last_status),
        col(SourceRow.last_http_status),
        col(SourceRow.failures),
        col(SourceRow.last_error),
        col(SourceRow.error_transient),
        col(SourceRow.last_polled_at),
        col(SourceRow.last_success_at),
        col(SourceRow.next_poll_at),
        col(SourceRow.polls),
        col(SourceRow.last_new_entries),
        col(SourceRow.lease_owner),
        col(SourceRow.lease_until),
        col(SourceRow.disabled_reason),
        col(SourceRow.moved_to),
    )


def _source(r: Any) -> SourceView:
    return SourceView(
        id=r[0],
        name=r[1],
        url=redact_url(r[2]),
        kind=r[3],
        every_seconds=r[4],
        enabled=bool(r[5]),
        health=str(r[6]) if r[5] else "removed",
        status=r[7],
        http_status=r[8],
        failures=r[9],
        error=redact_text(r[10]) if r[10] else None,
        error_transient=r[11],
        last_polled_at=as_utc_or_none(r[12]),
        last_success_at=as_utc_or_none(r[13]),
        next_poll_at=as_utc(r[14]),
        polls=r[15],
        last_new_entries=r[16],
        lease_owner=r[17],
        lease_until=as_utc_or_none(r[18]),
        disabled_reason=r[19],
        moved_to=redact_url(r[20]) if r[20] else None,
    )


def source_health_counts(engine: Engine) -> dict[str, int]:
    """Enabled sources per health (failing, moved, disabled, new, ok)."""
    health = _health_case()
    with Session(engine) as session:
        found = {
            str(h): int(n)
            for h, n in session.execute(
                select(health, func.count())
                .where(col(SourceRow.enabled).is_(True))
                .group_by(health)
            )
        }
    return {h: found.get(h, 0) for h in HEALTH}


def list_sources(
    engine: Engine, *, health: str | None = None, offset: int = 0, limit: int = 100
) -> list[SourceView]:
    """Enabled sources, those needing attention first (failures, then id)."""
    stmt = select(*_source_columns()).where(col(SourceRow.enabled).is_(True))
    if health:
        stmt = stmt.where(_health_case() == health)
    stmt = stmt.order_by(col(SourceRow.failures).desc(), col(SourceRow.id))
    with Session(engine) as session:
        return [_source(r) for r in session.execute(stmt.offset(offset).limit(limit))]


def get_source(engine: Engine, source_id: str) -> SourceView | None:
    with Session(engine) as session:
        row = session.execute(
            select(*_source_columns()).where(col(SourceRow.id) == source_id)
        ).first()
    return _source(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class PollEvent:
    polled_at: datetime
    status: str
    http_status: int | None
    error: str | None
    new_entries: int | None
    failures: int


def poll_events(engine: Engine, source_id: str, limit: int = 50) -> list[PollEvent]:
    """A source's newest remembered polls (see `PollEventRow`), newest first."""
    with Session(engine) as session:
        rows = session.execute(
            select(
                col(PollEventRow.polled_at),
                col(PollEventRow.status),
                col(PollEventRow.http_status),
                col(PollEventRow.error),
                col(PollEventRow.new_entries),
                col(PollEventRow.failures),
            )
            .where(col(PollEventRow.source_id) == source_id)
            .order_by(col(PollEventRow.id).desc())
            .limit(limit)
        ).all()
    return [
        PollEvent(as_utc(r[0]), r[1], r[2], redact_text(r[3]) if r[3] else None, r[4], r[5])
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class ArticleLine:
    """An article in a list: enough to link to it."""

    id: int
    source_id: str
    title: str
    url: str
    published: datetime | None
    first_seen: datetime
    story_id: int | None
    catchup: bool


def _article_line(r: Any) -> ArticleLine:
    return ArticleLine(
        int(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        as_utc_or_none(r[4]),
        as_utc(r[5]),
        r[6],
        bool(r[7]),
    )


_LINE = (
    col(ArticleRow.id),
    col(ArticleRow.source_id),
    col(ArticleRow.title),
    col(ArticleRow.url),
    col(ArticleRow.published),
    col(ArticleRow.first_seen),
    col(ArticleRow.story_id),
    col(ArticleRow.catchup),
)


def source_articles(engine: Engine, source_id: str, limit: int = 20) -> list[ArticleLine]:
    with Session(engine) as session:
        rows = session.execute(
            select(*_LINE)
            .where(col(ArticleRow.source_id) == source_id)
            .order_by(col(ArticleRow.first_seen).desc())
            .limit(limit)
        ).all()
    return [_article_line(r) for r in rows]


def leases_by_owner(engine: Engine, now: datetime) -> dict[str, tuple[int, int]]:
    """Replica name → (sources, alerts) it holds a live lease on."""
    out: dict[str, list[int]] = {}
    with Session(engine) as session:
        for index, table in enumerate((SourceRow, AlertRow)):
            owner = col(table.lease_owner)  # type: ignore[attr-defined]
            stmt = select(owner, func.count()).where(
                col(table.lease_until) > now, owner.is_not(None)  # type: ignore[attr-defined]
            )
            if table is AlertRow:  # only a row being sent is leased: the status index finds it
                stmt = stmt.where(col(AlertRow.status) == "sending")
            for name, count in session.execute(stmt.group_by(owner)):
                out.setdefault(str(name), [0, 0])[index] = int(count)
    return {name: (v[0], v[1]) for name, v in out.items()}


# --- alerts --------------------------------------------------------------------------------------


def list_alerts(
    engine: Engine,
    *,
    status: str | None = None,
    watchlist_id: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[RecentAlert]:
    """Newest first, one page (keyset on the id, so page 100 costs what page 1 does)."""
    stmt = select(*_alert_columns()).outerjoin(
        ArticleRow, col(ArticleRow.id) == col(AlertRow.article_id)
    )
    if status:
        stmt = stmt.where(col(AlertRow.status) == status)
    if watchlist_id:
        stmt = stmt.where(col(AlertRow.watchlist_id) == watchlist_id)
    if before_id is not None:
        stmt = stmt.where(col(AlertRow.id) < before_id)
    with Session(engine) as session:
        rows = session.execute(stmt.order_by(col(AlertRow.id).desc()).limit(limit)).all()
    return [_recent(r) for r in rows]


@dataclass(frozen=True, slots=True)
class AlertDetail:
    alert: RecentAlert
    article_id: int | None
    story_id: int | None
    parent_alert_id: int | None
    first_due_at: datetime | None
    next_attempt_at: datetime
    attempt_started_at: datetime | None
    lease_owner: str | None
    provider_ref: str | None
    thread_ref: str | None
    payload: dict[str, Any]


def get_alert(engine: Engine, alert_id: int) -> AlertDetail | None:
    with Session(engine) as session:
        row = session.execute(
            select(
                *_alert_columns(),
                col(AlertRow.article_id),
                col(AlertRow.story_id),
                col(AlertRow.parent_alert_id),
                col(AlertRow.first_due_at),
                col(AlertRow.next_attempt_at),
                col(AlertRow.attempt_started_at),
                col(AlertRow.lease_owner),
                col(AlertRow.provider_ref),
                col(AlertRow.thread_ref),
                col(AlertRow.payload_json),
            )
            .outerjoin(ArticleRow, col(ArticleRow.id) == col(AlertRow.article_id))
            .where(col(AlertRow.id) == alert_id)
        ).first()
    if row is None:
        return None
    base = _recent(row)
    base = RecentAlert(
        **{
            **{f: getattr(base, f) for f in RecentAlert.__dataclass_fields__},
            "error": redact_text(base.error) if base.error else None,
        }
    )
    try:
        payload = json.loads(row[22] or "{}")
    except ValueError:
        payload = {}
    return AlertDetail(
        alert=base,
        article_id=row[13],
        story_id=row[14],
        parent_alert_id=row[15],
        first_due_at=as_utc_or_none(row[16]),
        next_attempt_at=as_utc(row[17]),
        attempt_started_at=as_utc_or_none(row[18]),
        lease_owner=row[19],
        provider_ref=row[20],
        thread_ref=row[21],
        payload=payload if isinstance(payload, dict) else {},
    )


def alert_counts_by_watchlist(
    engine: Engine, since: datetime, recent: datetime
) -> dict[str, tuple[int, int]]:
    """Top-level alerts per watchlist created since `since` and since `recent` (follow-ups
    and digests left out), in one pass over the created_at index."""
    newer = func.sum(case((col(AlertRow.created_at) >= recent, 1), else_=0))
    with Session(engine) as session:
        return {
            str(w): (int(n or 0), int(total))
            for w, n, total in session.execute(
                select(col(AlertRow.watchlist_id), newer, func.count())
                .where(col(AlertRow.created_at) >= since, col(AlertRow.kind) == "alert")
                .group_by(col(AlertRow.watchlist_id))
            )
        }


# --- articles and stories ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArticleDetail:
    stored: StoredArticle
    revision: int
    copies: tuple[tuple[str, str, datetime], ...]  # (source id, url, seen at)
    alerts: tuple[RecentAlert, ...]


def get_article(engine: Engine, article_id: int) -> ArticleDetail | None:
    with Session(engine) as session:
        row = session.get(ArticleRow, article_id)
        if row is None:
            return None
        stored = StoredArticle(
            id=int(row.id or 0),
            article=Article(
                source_id=row.source_id,
                entry_key=row.entry_key,
                url=row.url,
                title=row.title,
                text=row.summary,
                published=as_utc_or_none(row.published),
                content_hash=row.content_hash,
                link=row.link,
            ),
            first_seen=as_utc(row.first_seen),
            source_id=row.source_id,
            story_id=row.story_id,
            catchup=row.catchup,
        )
        copies = tuple(
            (str(s), str(u), as_utc(t))
            for s, u, t in session.execute(
                select(
                    col(ArticleCopyRow.source_id),
                    col(ArticleCopyRow.url),
                    col(ArticleCopyRow.seen_at),
                )
                .where(col(ArticleCopyRow.article_id) == article_id)
                .order_by(col(ArticleCopyRow.id))
                .limit(100)
            )
        )
        alerts = tuple(
            _recent(r)
            for r in session.execute(
                select(*_alert_columns())
                .outerjoin(ArticleRow, col(ArticleRow.id) == col(AlertRow.article_id))
                .where(col(AlertRow.article_id) == article_id)
                .order_by(col(AlertRow.id))
                .limit(100)
            )
        )
        return ArticleDetail(stored, row.revision, copies, alerts)


@dataclass(frozen=True, slots=True)
class StoryLine:
    id: int
    title: str
    article_count: int
    created_at: datetime
    last_seen_at: datetime


def list_stories(
    engine: Engine, *, before_id: int | None = None, min_articles: int = 1, limit: int = 50
) -> list[StoryLine]:
    """Newest stories first (keyset on the id)."""
    stmt = select(
        col(Story.id),
        col(Story.title),
        col(Story.article_count),
        col(Story.created_at),
        col(Story.last_seen_at),
    ).where(col(Story.article_count) >= min_articles)
    if before_id is not None:
        stmt = stmt.where(col(Story.id) < before_id)
    with Session(engine) as session:
        rows = session.execute(stmt.order_by(col(Story.id).desc()).limit(limit)).all()
    return [
        StoryLine(int(r[0] or 0), str(r[1]), int(r[2]), as_utc(r[3]), as_utc(r[4])) for r in rows
    ]


@dataclass(frozen=True, slots=True)
class StoryDetail:
    story: StoryLine
    articles: tuple[tuple[ArticleLine, str], ...]  # each with its text (for the language)
    source_names: dict[str, str]


def get_story(engine: Engine, story_id: int, limit: int = 200) -> StoryDetail | None:
    with Session(engine) as session:
        row = session.execute(
            select(
                col(Story.id),
                col(Story.title),
                col(Story.article_count),
                col(Story.created_at),
                col(Story.last_seen_at),
            ).where(col(Story.id) == story_id)
        ).first()
        if row is None:
            return None
        story = StoryLine(
            int(row[0] or 0), str(row[1]), int(row[2]), as_utc(row[3]), as_utc(row[4])
        )
        rows = session.execute(
            select(*_LINE, col(ArticleRow.summary))
            .where(col(ArticleRow.story_id) == story_id)
            .order_by(col(ArticleRow.first_seen), col(ArticleRow.id))
            .limit(limit)
        ).all()
        ids = sorted({str(r[1]) for r in rows})
        names = {
            str(i): str(n)
            for i, n in session.execute(
                select(col(SourceRow.id), col(SourceRow.name)).where(col(SourceRow.id).in_(ids))
            )
        }
    return StoryDetail(story, tuple((_article_line(r), str(r[8])) for r in rows), names)


# --- backtests ----------------------------------------------------------------------------------


def count_articles_since(engine: Engine, since: datetime) -> int:
    with Session(engine) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(ArticleRow)
                .where(col(ArticleRow.first_seen) >= since)
            )
            or 0
        )


def newest_article_id(engine: Engine) -> int:
    with Session(engine) as session:
        found = session.scalar(select(func.max(col(ArticleRow.id))))
        return int(found or 0)


def iter_articles_since(
    engine: Engine, since: datetime, *, chunk: int = 1000
) -> Iterator[list[StoredArticle]]:
    """Articles first seen since `since`, newest first, in chunks (keyset on first_seen and
    id): a 30-day backtest streams instead of loading everything at once."""
    cursor: tuple[datetime, int] | None = None
    while True:
        stmt = select(
            *_LINE,
            col(ArticleRow.summary),
            col(ArticleRow.entry_key),
            col(ArticleRow.content_hash),
            col(ArticleRow.link),
        ).where(col(ArticleRow.first_seen) >= since)
        if cursor is not None:
            seen, last = cursor
            stmt = stmt.where(
                (col(ArticleRow.first_seen) < seen)
                | ((col(ArticleRow.first_seen) == seen) & (col(ArticleRow.id) < last))
            )
        with Session(engine) as session:
            rows = session.execute(
                stmt.order_by(col(ArticleRow.first_seen).desc(), col(ArticleRow.id).desc()).limit(
                    chunk
                )
            ).all()
        if not rows:
            return
        yield [_stored(r) for r in rows]
        cursor = (rows[-1][5], int(rows[-1][0] or 0))
        if len(rows) < chunk:
            return


def _stored(r: Sequence[Any]) -> StoredArticle:
    return StoredArticle(
        id=int(r[0]),
        article=Article(
            source_id=str(r[1]),
            entry_key=str(r[9]),
            url=str(r[3]),
            title=str(r[2]),
            text=str(r[8]),
            published=as_utc_or_none(r[4]),
            content_hash=str(r[10]),
            link=str(r[11]),
        ),
        first_seen=as_utc(r[5]),
        source_id=str(r[1]),
        story_id=r[6],
        catchup=bool(r[7]),
    )


__all__ = [
    "HEALTH",
    "AlertDetail",
    "ArticleDetail",
    "ArticleLine",
    "PollEvent",
    "SourceView",
    "StoryDetail",
    "StoryLine",
    "alert_counts_by_watchlist",
    "count_articles_since",
    "get_alert",
    "get_article",
    "get_source",
    "get_story",
    "iter_articles_since",
    "leases_by_owner",
    "list_alerts",
    "list_sources",
    "list_stories",
    "newest_article_id",
    "poll_events",
    "source_articles",
    "source_health_counts",
]
