"""The feedback aggregate: what the desk said about alerts (labels and story mutes).

Every write is idempotent by construction, so Slack's retries, double clicks and two replicas
handed the same click all end in one row: `request_key` is unique per click (or per email link
use) and `active_key` is unique while an item is in effect (one label and one mute per alert,
one mute per story and channel). Undo and reject clear `active_key`; rows are never deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlmodel import col

from monitor.clock import as_utc, as_utc_or_none
from monitor.model import AlertKind, Article, FeedbackAction
from monitor.store.tables import AlertRow, ArticleRow, FeedbackRow


@dataclass(frozen=True, slots=True)
class AlertTarget:
    """The alert a click or link is about."""

    id: int
    kind: str  # an AlertKind, as stored
    watchlist_id: str
    article_id: int | None
    story_id: int | None
    channel: str  # a Channel, as stored
    destination: str
    provider_ref: str | None  # Slack "channel ts" once sent
    payload_json: str

    @property
    def takes_feedback(self) -> bool:
        """Alerts and updates are about one article; lists and "also" lines are not labelled."""
        return self.kind in (AlertKind.ALERT, AlertKind.UPDATE) and self.article_id is not None


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    id: int
    alert_id: int
    watchlist_id: str
    article_id: int | None
    story_id: int | None
    action: FeedbackAction
    user_id: str
    user_name: str
    via: str
    channel: str
    destination: str
    created_at: datetime
    undone_at: datetime | None
    undone_by: str | None
    rejected_at: datetime | None
    rejected_by: str | None
    active: bool
    title: str = ""

    @property
    def state(self) -> str:
        if self.rejected_at is not None:
            return "rejected"
        if self.undone_at is not None:
            return "undone"
        return "active"


@dataclass(frozen=True, slots=True)
class Recorded:
    """The outcome of one click: `created` False means it changed nothing (`item` is the row
    that was already there: the same request again, or the label/mute already in effect)."""

    item: FeedbackItem
    created: bool
    duplicate_request: bool = False


@dataclass(frozen=True, slots=True)
class LabelledArticle:
    """An active label with the article it is about (for training, eval and export)."""

    feedback_id: int
    article_id: int
    article: Article
    relevant: bool
    user_name: str
    created_at: datetime
    first_seen: datetime


def active_key(target: AlertTarget, action: FeedbackAction) -> str:
    if action.is_label:
        return f"label:{target.id}"
    if target.story_id is not None:
        return f"mute:{target.channel}:{target.story_id}:{target.destination}"[:600]
    return f"mute:alert:{target.id}"


# --------------------------------------------------------------------------- reads


def alert_target(engine: Engine, alert_id: int) -> AlertTarget | None:
    with Session(engine) as session:
        row = session.get(AlertRow, alert_id)
        if row is None:
            return None
        return AlertTarget(
            id=int(row.id or 0),
            kind=row.kind,
            watchlist_id=row.watchlist_id,
            article_id=row.article_id,
            story_id=row.story_id,
            channel=row.channel,
            destination=row.destination,
            provider_ref=row.provider_ref,
            payload_json=row.payload_json,
        )


def _item(row: FeedbackRow, title: str = "") -> FeedbackItem:
    return FeedbackItem(
        id=int(row.id or 0),
        alert_id=row.alert_id,
        watchlist_id=row.watchlist_id,
        article_id=row.article_id,
        story_id=row.story_id,
        action=FeedbackAction(row.action),
        user_id=row.user_id,
        user_name=row.user_name,
        via=row.via,
        channel=row.channel,
        destination=row.destination,
        created_at=as_utc(row.created_at),
        undone_at=as_utc_or_none(row.undone_at),
        undone_by=row.undone_by,
        rejected_at=as_utc_or_none(row.rejected_at),
        rejected_by=row.rejected_by,
        active=row.active_key is not None,
        title=title,
    )


def get(engine: Engine, feedback_id: int) -> FeedbackItem | None:
    with Session(engine) as session:
        row = session.get(FeedbackRow, feedback_id)
        return _item(row) if row is not None else None


def active_for_alert(engine: Engine, alert_id: int) -> list[FeedbackItem]:
    """The label and mute in effect on this alert (a mute may come from another alert of the
    same story in the same channel)."""
    target = alert_target(engine, alert_id)
    if target is None:
        return []
    keys = [active_key(target, FeedbackAction.RELEVANT), active_key(target, FeedbackAction.MUTE)]
    with Session(engine) as session:
        rows = session.scalars(
            select(FeedbackRow)
            .where(col(FeedbackRow.active_key).in_(keys))
            .order_by(col(FeedbackRow.id))
        )
        return [_item(row) for row in rows]


def list_feedback(
    engine: Engine,
    *,
    watchlist_id: str | None = None,
    since: datetime | None = None,
    limit: int = 1000,
) -> list[FeedbackItem]:
    """Feedback items, newest first, with the article's title."""
    stmt = (
        select(FeedbackRow, ArticleRow.title)  # type: ignore[call-overload]
        .outerjoin(ArticleRow, col(ArticleRow.id) == col(FeedbackRow.article_id))
        .order_by(col(FeedbackRow.id).desc())
        .limit(limit)
    )
    if watchlist_id:
        stmt = stmt.where(col(FeedbackRow.watchlist_id) == watchlist_id)
    if since is not None:
        stmt = stmt.where(col(FeedbackRow.created_at) >= since)
    with Session(engine) as session:
        return [_item(row, title or "") for row, title in session.execute(stmt)]


def labelled_articles(engine: Engine, watchlist_id: str) -> list[LabelledArticle]:
    """The active labels of a watchlist, one per article (the newest wins), oldest first."""
    stmt = (
        select(FeedbackRow, ArticleRow)  # type: ignore[call-overload]
        .join(ArticleRow, col(ArticleRow.id) == col(FeedbackRow.article_id))
        .where(
            col(FeedbackRow.watchlist_id) == watchlist_id,
            col(FeedbackRow.active_key).is_not(None),
            col(FeedbackRow.action).in_([FeedbackAction.RELEVANT, FeedbackAction.NOT_RELEVANT]),
        )
        .order_by(col(FeedbackRow.id))
    )
    by_article: dict[int, LabelledArticle] = {}
    with Session(engine) as session:
        for fb, art in session.execute(stmt):
            by_article[int(art.id or 0)] = LabelledArticle(
                feedback_id=int(fb.id or 0),
                article_id=int(art.id or 0),
                article=Article(
                    source_id=art.source_id,
                    entry_key=art.entry_key,
                    url=art.url,
                    title=art.title,
                    text=art.summary,
                    published=as_utc_or_none(art.published),
                    content_hash=art.content_hash,
                    link=art.link,
                ),
                relevant=fb.action == FeedbackAction.RELEVANT,
                user_name=fb.user_name,
                created_at=as_utc(fb.created_at),
                first_seen=as_utc(art.first_seen),
            )
    return sorted(by_article.values(), key=lambda item: item.feedback_id)


def labelled_watchlists(engine: Engine) -> dict[str, int]:
    """Watchlist id → how many active labels it has."""
    stmt = (
        select(col(FeedbackRow.watchlist_id), func.count())
        .where(
            col(FeedbackRow.active_key).is_not(None),
            col(FeedbackRow.article_id).is_not(None),
            col(FeedbackRow.action).in_([FeedbackAction.RELEVANT, FeedbackAction.NOT_RELEVANT]),
        )
        .group_by(col(FeedbackRow.watchlist_id))
    )
    with Session(engine) as session:
        return {str(wl): int(n) for wl, n in session.execute(stmt)}


def version(engine: Engine) -> tuple[int, int]:
    """Changes whenever an item is added, undone or rejected: (newest id, items in effect)."""
    with Session(engine) as session:
        newest = session.scalar(select(func.max(col(FeedbackRow.id))))
        active = session.scalar(
            select(func.count()).where(col(FeedbackRow.active_key).is_not(None))
        )
    return int(newest or 0), int(active or 0)


DESK_WINDOWS = (7, 30)  # days: the desk's precision is shown over the last week and month


@dataclass(frozen=True, slots=True)
class DeskJudgement:
    """Active desk labels of one watchlist over one window: how right its alerts were, as the
    people who read them judged."""

    relevant: int = 0
    not_relevant: int = 0

    @property
    def judged(self) -> int:
        return self.relevant + self.not_relevant

    @property
    def precision(self) -> float | None:
        """None when nobody judged (0 of 0 is no evidence, not 0 %)."""
        return self.relevant / self.judged if self.judged else None

    def as_json(self) -> dict[str, object]:
        p = self.precision
        return {
            "relevant": self.relevant,
            "not_relevant": self.not_relevant,
            "judged": self.judged,
            "precision": None if p is None else round(p, 4),
        }


def desk_precision(
    engine: Engine,
    now: datetime,
    *,
    watchlist_id: str | None = None,
    windows: tuple[int, ...] = DESK_WINDOWS,
) -> dict[str, dict[int, DeskJudgement]]:
    """Watchlist id → {days: its active labels given within the last `days`}, one aggregate
    query (rejected and undone items do not count). Watchlists without labels are absent."""
    since = {days: now - timedelta(days=days) for days in windows}
    relevant = col(FeedbackRow.action) == FeedbackAction.RELEVANT
    columns = []
    for days in windows:
        recent = col(FeedbackRow.created_at) >= since[days]
        columns += [func.count().filter(recent, relevant), func.count().filter(recent, ~relevant)]
    stmt = (
        select(col(FeedbackRow.watchlist_id), *columns)
        .where(
            col(FeedbackRow.active_key).is_not(None),
            col(FeedbackRow.created_at) >= since[max(windows)],
            col(FeedbackRow.action).in_([FeedbackAction.RELEVANT, FeedbackAction.NOT_RELEVANT]),
        )
        .group_by(col(FeedbackRow.watchlist_id))
    )
    if watchlist_id:
        stmt = stmt.where(col(FeedbackRow.watchlist_id) == watchlist_id)
    out: dict[str, dict[int, DeskJudgement]] = {}
    with Session(engine) as session:
        for wl, *counts in session.execute(stmt):
            out[str(wl)] = {
                days: DeskJudgement(int(counts[2 * n] or 0), int(counts[2 * n + 1] or 0))
                for n, days in enumerate(windows)
            }
    return out


def is_muted(session: Session, *, channel: str, destination: str, story_id: int | None) -> bool:
    """Is this story muted in this channel (the planner skips its updates and copies)?"""
    if story_id is None:
        return False
    found = session.scalar(
        select(col(FeedbackRow.id))
        .where(
            col(FeedbackRow.story_id) == story_id,
            col(FeedbackRow.channel) == channel,
            col(FeedbackRow.destination) == destination,
            col(FeedbackRow.action) == FeedbackAction.MUTE,
            col(FeedbackRow.active_key).is_not(None),
        )
        .limit(1)
    )
    return found is not None


def alert_muted(session: Session, alert_id: int) -> bool:
    """Is the story of this (parent) alert muted in its channel?"""
    row = session.get(AlertRow, alert_id)
    if row is None:
        return False
    return is_muted(
        session, channel=row.channel, destination=row.destination, story_id=row.story_id
    )


# --------------------------------------------------------------------------- writes


def record(
    engine: Engine,
    target: AlertTarget,
    action: FeedbackAction,
    *,
    user_id: str,
    user_name: str,
    via: str,
    request_key: str,
    now: datetime,
) -> Recorded:
    """Insert one feedback item unless this request, or an item to the same effect, exists."""
    values: dict[str, object] = {
        "alert_id": target.id,
        "watchlist_id": target.watchlist_id[:200],
        "article_id": target.article_id,
        "story_id": target.story_id,
        "action": action,
        "user_id": user_id[:100],
        "user_name": user_name[:200],
        "via": via[:20],
        "channel": target.channel,
        "destination": target.destination[:400],
        "request_key": request_key[:200],
        "active_key": active_key(target, action),
        "created_at": now,
    }
    with Session(engine) as session, session.begin():
        dialect = session.get_bind().dialect.name
        module = postgresql if dialect == "postgresql" else sqlite
        stmt = module.insert(FeedbackRow).values(**values).on_conflict_do_nothing()
        new_id = session.execute(stmt.returning(col(FeedbackRow.id))).scalar_one_or_none()
        if new_id is not None:
            row = session.get(FeedbackRow, new_id)
            assert row is not None
            return Recorded(_item(row), created=True)
        same = session.scalar(
            select(FeedbackRow).where(col(FeedbackRow.request_key) == values["request_key"])
        )
        if same is not None:
            return Recorded(_item(same), created=False, duplicate_request=True)
        existing = session.scalar(
            select(FeedbackRow).where(col(FeedbackRow.active_key) == values["active_key"])
        )
        if existing is None:  # undone between our insert and this read: try once more
            new_id = session.execute(stmt.returning(col(FeedbackRow.id))).scalar_one_or_none()
            existing = session.get(FeedbackRow, new_id) if new_id is not None else None
            if existing is not None:
                return Recorded(_item(existing), created=True)
            raise RuntimeError("feedback could not be recorded; try again")
        return Recorded(_item(existing), created=False)


def _close(
    engine: Engine, feedback_id: int, values: dict[str, object], *, only_active: bool
) -> FeedbackItem | None:
    with Session(engine) as session, session.begin():
        stmt = update(FeedbackRow).where(col(FeedbackRow.id) == feedback_id)
        if only_active:
            stmt = stmt.where(col(FeedbackRow.active_key).is_not(None))
        else:
            stmt = stmt.where(col(FeedbackRow.rejected_at).is_(None))
        changed = session.execute(
            stmt.values(active_key=None, **values).execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        if not changed:
            return None
        row = session.get(FeedbackRow, feedback_id)
        return _item(row) if row is not None else None


def undo(engine: Engine, feedback_id: int, *, by: str, now: datetime) -> FeedbackItem | None:
    """Take an item back; None when it was not in effect (already undone: idempotent)."""
    return _close(engine, feedback_id, {"undone_at": now, "undone_by": by[:200]}, only_active=True)


def reject(engine: Engine, feedback_id: int, *, by: str, now: datetime) -> FeedbackItem | None:
    """An admin's veto: the item stops counting (training, eval, precision, mutes)."""
    return _close(
        engine, feedback_id, {"rejected_at": now, "rejected_by": by[:200]}, only_active=False
    )
