"""Plan outbox rows for one poll, inside the ingest transaction (the transactional outbox).

This module decides what to send; `monitor.store.alerts` looks up earlier alerts and writes
the rows, in the poll's transaction (the session is passed through, never opened here).

Rules, in the order they apply:
* catch-up items (a new source's first poll) and articles published more than
  `max_article_age_hours` ago never alert;
* an edited article ("update") is a follow-up in the thread of its first alert; a later copy of
  a story that already alerted for the watchlist is an "also reported by" follow-up; neither is
  ever a second top-level alert;
* `mode: digest` watchlists hold their rows until `next_digest_at`, then one message per period;
* more than `flood_threshold` messages from one source in one poll to one destination, new
  top-level alerts and updates counted together, become one summary per destination (a feed
  that rotated its GUIDs, or rewrites every description, must not flood a channel). A poll
  written in several transactions keeps one `FloodGuard` across them.

Routing: Slack channels need a bot token or a webhook, email needs MONITOR_SMTP_HOST; whatever a
watchlist names that cannot be delivered goes to the console instead (with a warning once), so
no match is ever silently dropped. With neither configured everything goes to the console.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from monitor import languages, storyvec
from monitor.clock import as_utc_or_none
from monitor.logs import get_logger
from monitor.model import AlertKind, AlertStatus, Article, Channel, IngestedItem, Match
from monitor.render import AlertContent
from monitor.settings import Settings
from monitor.store import alerts as outbox
from monitor.store import feedback as feedback_store
from monitor.store.alerts import NewAlert, short_hash
from monitor.store.db import Session

log = get_logger(__name__)

Route = tuple[Channel, str]
SUMMARY_ITEMS = 40

_warned: set[tuple[str, str]] = set()


@dataclass(frozen=True, slots=True)
class Routing:
    """Which channels this process can deliver to (from settings)."""

    slack: Literal["bot", "webhook"] | None
    email: bool
    default_channel: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Routing:
        slack: Literal["bot", "webhook"] | None = None
        if settings.slack_bot_token is not None and settings.slack_bot_token.get_secret_value():
            slack = "bot"
        elif (
            settings.slack_webhook_url is not None and settings.slack_webhook_url.get_secret_value()
        ):
            slack = "webhook"
        return cls(slack, bool(settings.smtp_host), settings.slack_default_channel)

    def routes(self, watchlist: Any) -> list[Route]:
        """Destinations for one watchlist; undeliverable ones fall back to the console."""
        spec = watchlist.alert
        out: list[Route] = []
        fallback = False
        channels = list(spec.slack) or ([self.default_channel] if self.default_channel else [])
        if channels:
            if self.slack == "bot":
                out.extend((Channel.SLACK, ch) for ch in dict.fromkeys(channels))
            elif self.slack == "webhook":
                out.append((Channel.SLACK, "webhook"))  # one fixed channel per webhook URL
            elif spec.slack:
                fallback = True
                _warn_once(
                    watchlist.id,
                    "slack",
                    "watchlist names Slack channels but neither MONITOR_SLACK_BOT_TOKEN nor "
                    "MONITOR_SLACK_WEBHOOK_URL is set: its alerts go to the console",
                )
        if spec.email:
            if self.email:
                out.extend((Channel.EMAIL, addr) for addr in dict.fromkeys(spec.email))
            else:
                fallback = True
                _warn_once(
                    watchlist.id,
                    "email",
                    "watchlist names email addresses but MONITOR_SMTP_HOST is not set: its "
                    "alerts go to the console",
                )
        if fallback or not out:
            out.append((Channel.CONSOLE, "console"))
        return out


def _warn_once(watchlist_id: str, what: str, message: str) -> None:
    if (watchlist_id, what) not in _warned:
        _warned.add((watchlist_id, what))
        log.warning(message, watchlist=watchlist_id)


def _key(*parts: object) -> str:
    key = ":".join(str(p) for p in parts)
    return key if len(key) <= 400 else f"{key[:300]}#{short_hash(key)}"


def content_for(
    item: IngestedItem, match: Match, source_name: str, kind: AlertKind
) -> AlertContent:
    article = item.article
    published = as_utc_or_none(article.published)
    return AlertContent(
        kind=kind,
        watchlist_id=match.watchlist_id,
        watchlist_name=match.watchlist_name,
        title=article.title,
        url=article.link or article.url,
        source=source_name or article.source_id,
        published=published.isoformat() if published else None,
        score=match.score,
        terms=match.terms,
        snippet=match.snippet or article.text[:600],
        highlights=tuple((s.start, s.end) for s in match.highlights) if match.snippet else (),
        story_id=item.story.story_id if item.story else None,
        reason=match.judgement.reason if match.judgement else "",
        language=_language(article),
    )


def _language(article: Article) -> str:
    """The article's language by name, for "Also reported by PAP (Polish)"; empty if unsure."""
    code = storyvec.language_of(article)
    return "" if code == "?" else languages.name(code)


@dataclass
class _TopLevel:
    """A planned message the flood guard counts: a top-level alert with the same-poll copies of
    its story that go under it, or (with `parent`) an update in the thread of an earlier alert."""

    item: IngestedItem
    content: AlertContent
    alsos: list[tuple[IngestedItem, AlertContent]] = field(default_factory=list)
    parent: int | None = None  # an update: the alert it follows up
    key: str = ""  # an update: its dedup key


@dataclass
class FloodGuard:
    """One poll's flood guard: more than `threshold` messages from the poll to one destination
    are folded into a summary instead of being sent one by one.

    The poll keeps one guard across its write transactions (a big document is written in
    chunks): once a destination flooded, the later chunks fold theirs too, so no destination
    ever gets more than `threshold` single messages from one poll.
    """

    threshold: int
    singles: dict[Route, int] = field(default_factory=dict)  # sent one by one so far
    flooded: set[Route] = field(default_factory=set)

    def folds(self, route: Route, count: int) -> bool:
        """Must these `count` messages to `route` become a summary? Counted when they need not."""
        total = self.singles.get(route, 0) + count
        if route in self.flooded or total > self.threshold:
            self.flooded.add(route)
            return True
        self.singles[route] = total
        return False


def enqueue_for_poll(
    session: Session,
    *,
    source_id: str,
    source_name: str,
    items: Sequence[IngestedItem],
    watchlists: Mapping[str, Any],
    settings: Settings,
    now: datetime,
    flood: FloodGuard | None = None,
) -> int:
    """Write the outbox rows for one poll's items; returns how many rows were written.

    A poll written in several transactions passes the same `flood` guard to each call; without
    one, the call is the whole poll."""
    guard = flood if flood is not None else FloodGuard(settings.flood_threshold)
    routing = Routing.from_settings(settings)
    cutoff = now - timedelta(hours=settings.max_article_age_hours)
    written = 0
    planned: dict[Route, list[_TopLevel]] = {}
    # (watchlist, route, story) → the top-level alert planned in this poll
    story_plan: dict[tuple[str, Route, int], _TopLevel] = {}
    for item in items:
        if item.catchup:
            continue
        published = as_utc_or_none(item.article.published)
        if published is not None and published < cutoff:
            continue
        for match in item.matches:
            watchlist = watchlists.get(match.watchlist_id)
            if watchlist is None:
                continue
            sources = getattr(watchlist, "sources", ())
            if sources and source_id not in sources:
                continue
            for route in routing.routes(watchlist):
                if watchlist.alert.mode == "digest":
                    written += _hold_for_digest(
                        session, item, match, watchlist, route, source_id, source_name, now
                    )
                    continue
                written += _plan_immediate(
                    session, item, match, route, source_id, source_name, now, planned, story_plan
                )
    for route, tops in planned.items():
        if guard.folds(route, len(tops)):
            written += _write_summary(session, route, tops, source_id, source_name, settings, now)
        else:
            for top in tops:
                written += _write_top(session, route, top, source_id, now)
    return written


def _plan_immediate(
    session: Session,
    item: IngestedItem,
    match: Match,
    route: Route,
    source_id: str,
    source_name: str,
    now: datetime,
    planned: dict[Route, list[_TopLevel]],
    story_plan: dict[tuple[str, Route, int], _TopLevel],
) -> int:
    channel, destination = route
    wl = match.watchlist_id
    story = item.story
    if item.change == "update":
        parent = outbox.find_first_alert(
            session,
            watchlist_id=wl,
            channel=channel,
            destination=destination,
            article_id=item.article_id,
        )
        if parent is not None and feedback_store.alert_muted(session, parent):
            return 0  # the desk muted this story in this channel
        if parent is not None:  # planned like an alert: updates count against the flood guard
            content = content_for(item, match, source_name, AlertKind.UPDATE)
            key = _key(
                "u", wl, item.article_id, item.article.content_hash[:16], channel, destination
            )
            planned.setdefault(route, []).append(_TopLevel(item, content, parent=parent, key=key))
            return 0
    elif story is not None and not story.is_new:
        if feedback_store.is_muted(
            session, channel=channel, destination=destination, story_id=story.story_id
        ):
            return 0  # the desk muted this story in this channel: no more copies
        same_poll = story_plan.get((wl, route, story.story_id))
        if same_poll is not None:
            same_poll.alsos.append((item, content_for(item, match, source_name, AlertKind.ALSO)))
            return 0
        parent = outbox.find_first_alert(
            session,
            watchlist_id=wl,
            channel=channel,
            destination=destination,
            story_id=story.story_id,
        )
        if parent is not None:
            content = content_for(item, match, source_name, AlertKind.ALSO)
            key = _also_key(wl, item, route)
            return _write(session, _row(key, route, content, item, source_id, parent), now)
    top = _TopLevel(item, content_for(item, match, source_name, AlertKind.ALERT))
    planned.setdefault(route, []).append(top)
    if story is not None:
        story_plan.setdefault((wl, route, story.story_id), top)
    return 0


def _also_key(wl: str, item: IngestedItem, route: Route) -> str:
    article = item.article
    return _key("s", wl, short_hash(article.source_id, article.entry_key), route[0], route[1])


def _row(
    key: str,
    route: Route,
    content: AlertContent,
    item: IngestedItem,
    source_id: str,
    parent: int | None,
    *,
    status: AlertStatus = AlertStatus.PENDING,
    digest_at: datetime | None = None,
) -> NewAlert:
    """The outbox row for one item's message (its kind is the content's)."""
    return NewAlert(
        dedup_key=key,
        kind=content.kind,
        watchlist_id=content.watchlist_id,
        channel=route[0],
        destination=route[1],
        payload_json=content.to_json(),
        article_id=item.article_id,
        story_id=item.story.story_id if item.story else None,
        source_id=source_id,
        parent_alert_id=parent,
        status=status,
        digest_at=digest_at,
    )


def _write(session: Session, row: NewAlert, now: datetime) -> int:
    return 0 if outbox.enqueue(session, row, now=now) is None else 1


def _write_top(
    session: Session, route: Route, top: _TopLevel, source_id: str, now: datetime
) -> int:
    if top.parent is not None:  # an update, under its alert
        return _write(
            session, _row(top.key, route, top.content, top.item, source_id, top.parent), now
        )
    wl = top.content.watchlist_id
    key = _key("a", wl, top.item.article_id, route[0], route[1])
    alert = _row(key, route, top.content, top.item, source_id, None)
    alsos = [
        _row(_also_key(wl, item, route), route, content, item, source_id, None)
        for item, content in top.alsos
    ]
    return outbox.enqueue_thread(session, alert, alsos, now=now)


def _write_summary(
    session: Session,
    route: Route,
    tops: list[_TopLevel],
    source_id: str,
    source_name: str,
    settings: Settings,
    now: datetime,
) -> int:
    entries: list[AlertContent] = []
    for top in tops:
        entries.append(top.content)
        entries.extend(content for _item, content in top.alsos)
    names = sorted({t.content.watchlist_name for t in tops})
    updates = sum(t.parent is not None for t in tops)
    extra = {"threshold": str(settings.flood_threshold)}
    if updates:
        extra["updates"] = str(updates)
    summary = AlertContent(
        kind=AlertKind.SUMMARY,
        watchlist_id=",".join(sorted({t.content.watchlist_id for t in tops}))[:200],
        watchlist_name=", ".join(names)[:300],
        source=source_name or source_id,
        items=tuple(entries[:SUMMARY_ITEMS]),
        total=len(tops),
        extra=extra,
    )
    # New articles by id; updates by id and content, so a later flood of edits of the same
    # articles is a summary of its own, not a duplicate of this one.
    ids = sorted(t.item.article_id for t in tops if t.parent is None)
    edits = sorted(
        f"{t.item.article_id}:{t.item.article.content_hash[:16]}" for t in tops if t.parent
    )
    key = _key("f", source_id, short_hash(*ids, *edits), route[0], route[1])
    log.warning(
        "flood guard: alerts folded into one summary",
        source=source_id,
        alerts=len(tops),
        updates=updates,
        threshold=settings.flood_threshold,
        channel=route[0],
    )
    row_id = outbox.enqueue(
        session,
        NewAlert(
            dedup_key=key,
            kind=AlertKind.SUMMARY,
            watchlist_id=summary.watchlist_id,
            channel=route[0],
            destination=route[1],
            payload_json=summary.to_json(),
            source_id=source_id,
        ),
        now=now,
    )
    return 0 if row_id is None else 1


def _hold_for_digest(
    session: Session,
    item: IngestedItem,
    match: Match,
    watchlist: Any,
    route: Route,
    source_id: str,
    source_name: str,
    now: datetime,
) -> int:
    from monitor.watchlists import next_digest_at

    spec = watchlist.alert.digest or "daily 08:00 UTC"
    digest_at = next_digest_at(spec, now)
    wl = match.watchlist_id
    story = item.story
    if item.change == "update":
        kind = AlertKind.UPDATE
        key = _key("hu", wl, item.article_id, item.article.content_hash[:16], *route)
    elif (
        story is not None
        and not story.is_new
        and outbox.story_alerted(session, watchlist_id=wl, story_id=story.story_id)
    ):
        kind = AlertKind.ALSO
        key = _key("hs", wl, short_hash(item.article.source_id, item.article.entry_key), *route)
    else:
        kind = AlertKind.ALERT
        key = _key("a", wl, item.article_id, *route)
    content = replace(content_for(item, match, source_name, kind), extra={"digest": spec})
    row = _row(
        key, route, content, item, source_id, None, status=AlertStatus.HELD, digest_at=digest_at
    )
    return _write(session, row, now)


def preview_for_poll(session: Session, *, source_id: str, now: datetime) -> list[str]:
    """Console renderings of the rows this poll just planned (for dry runs, before rollback)."""
    from monitor.render import render_console

    out = []
    for row in outbox.rows_for_poll(session, source_id=source_id, created_at=now):
        label = f"{row.channel}:{row.destination}"
        if row.status == AlertStatus.HELD:
            label += " (digest)"
        out.append(render_console(AlertContent.from_json(row.payload_json), label))
    return out


__all__ = ["FloodGuard", "Routing", "content_for", "enqueue_for_poll", "preview_for_poll"]
