"""One poll of one source, told in one function: fetch → parse → normalize → store → story →
match → outbox.

Network I/O happens before any transaction; everything the poll learned (articles, story
links, outbox rows, the source's new state) is written in ONE transaction, fenced by the
source's lease, so a crash or a lost lease loses nothing and doubles nothing. Claiming, running
polls concurrently, batching unchanged sources and draining live beside this, in `poller.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from monitor import alerting
from monitor.clock import as_utc
from monitor.logs import get_logger
from monitor.model import (
    Article,
    ErrorKind,
    FetchError,
    FetchResult,
    IngestedItem,
    Match,
    ParsedFeed,
    PollStatus,
    SourceKind,
    Watchlist,
)
from monitor.normalize import normalize_entry
from monitor.parse import ParseError, parse_feed, parse_html_page
from monitor.query.matcher import Matcher
from monitor.redact import redact_text, redact_url
from monitor.relevance.embed import article_text, text_key
from monitor.relevance.models import RelevanceModels, accepted
from monitor.schedule import next_poll_at
from monitor.settings import Settings
from monitor.store import db, sources, stories, vectors
from monitor.store.articles import Sighting, StoredEntry, store_entries
from monitor.store.db import Engine, Session
from monitor.store.sources import ClaimedSource, SourceUpdate, Validators

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PollReport:
    """What one poll of one source did, for the CLI line, logs and metrics."""

    source_id: str
    status: PollStatus
    new: int = 0
    updated: int = 0
    alerts: int = 0
    seconds: float = 0.0
    message: str = ""
    matches: tuple[tuple[str, str, float], ...] = ()  # (article title, watchlist, score), dry runs
    previews: tuple[str, ...] = ()  # dry runs: the alerts as they would be sent
    error_kind: ErrorKind | None = None  # with status ERROR: how the poll failed

    @property
    def label(self) -> str:
        """The status as the CLI and logs show it: `error:<kind>` for a failed poll."""
        if self.status == PollStatus.ERROR:
            return f"error:{self.error_kind}"
        return str(self.status)


@dataclass(frozen=True, slots=True)
class PollContext:
    """What one poll reads besides its source: taken once per poll, so a watchlist reload in
    the middle of a poll never mixes two versions."""

    settings: Settings
    engine: Engine
    owner: str
    matcher: Matcher
    watchlists: Mapping[str, Watchlist]
    dry_run: bool = False
    relevance: RelevanceModels = field(default_factory=RelevanceModels)


class LostLease(Exception):
    """Another replica owns the source now: our results must not be written."""


def poll_fetched(
    ctx: PollContext, claim: ClaimedSource, fetched: FetchResult | FetchError, now: datetime
) -> PollReport:
    """Everything after the fetch (runs in a worker thread; the fetch is `Fetcher.fetch`)."""
    if isinstance(fetched, FetchError):
        return _complete(ctx, claim, failure_update(ctx.settings, claim, fetched, now))
    quiet = quiet_status(claim, fetched)
    if quiet is not None:  # 304, or the very bytes of last time: only the schedule moves
        return _complete(ctx, claim, success_update(ctx.settings, claim, fetched, now, None, quiet))
    try:
        feed = parse(claim, fetched)  # parse (pure)
    except ParseError as exc:  # parsers quote the URL, feedparser's complaints may too
        message = redact_text(str(exc), claim.url, fetched.url)
        error = FetchError(claim.id, exc.kind, False, message, status=fetched.status)
        return _complete(ctx, claim, failure_update(ctx.settings, claim, error, now))
    articles = [normalize_entry(e, claim.id, now=now) for e in feed.entries]  # normalize (pure)
    catchup = not claim.first_poll_done  # a new source's first poll stores and alerts nobody
    update = success_update(ctx.settings, claim, fetched, now, feed, PollStatus.OK)
    warning = redact_text(feed.warning, claim.url, fetched.url) if feed.warning else ""
    previews: tuple[str, ...] = ()
    try:
        with db.transaction(ctx.engine) as session:  # one transaction, fenced by the lease
            stored = store_entries(session, claim.id, articles, now=now, catchup=catchup)
            items = [item for e in stored if (item := _judge(ctx, session, e, now, catchup))]
            alerts = alerting.enqueue_for_poll(  # outbox rows, before any network call
                session,
                source_id=claim.id,
                source_name=claim.name,
                items=items,
                watchlists=ctx.watchlists,
                settings=ctx.settings,
                now=now,
            )
            new = sum(e.sighting is Sighting.NEW for e in stored)
            update = replace(
                update,
                body_hash=hashlib.sha256(fetched.body or b"").hexdigest(),
                first_poll_done=True,
                last_new_entries=new,
                error=f"warning: {warning}"[:2000] if warning else None,
            )
            if ctx.dry_run:
                previews = tuple(alerting.preview_for_poll(session, source_id=claim.id, now=now))
                session.rollback()
            elif not sources.complete_source(session, claim, owner=ctx.owner, update=update):
                raise LostLease(claim.id)
    except LostLease:
        message = "another replica took this source over; results dropped"
        return PollReport(claim.id, PollStatus.LOST_LEASE, message=message)
    if ctx.dry_run:
        sources.release(ctx.engine, ctx.owner, [claim.id])
    return PollReport(
        claim.id,
        PollStatus.DRY_RUN if ctx.dry_run else PollStatus.OK,
        new=new,
        updated=sum(e.sighting is Sighting.REVISION for e in stored),
        alerts=alerts,
        message=warning,
        matches=tuple((i.article.title, m.watchlist_id, m.score) for i in items for m in i.matches),
        previews=previews,
    )


def _judge(
    ctx: PollContext, session: Session, entry: StoredEntry, now: datetime, catchup: bool
) -> IngestedItem | None:
    """Story and watchlist matches of one stored entry (a copy joins its original's story)."""
    article = entry.article
    if entry.sighting is Sighting.REVISION:
        matches = _matches(ctx, session, article, catchup)
        return IngestedItem(entry.article_id, article, "update", matches, None, catchup)
    if entry.sighting is Sighting.NEW:
        window = ctx.settings.story_window_hours
        story = stories.assign_story(session, entry.article_id, article, now, window)
    else:
        found = stories.story_of_article(session, entry.article_id)
        if found is None:
            return None
        story = found
    return IngestedItem(
        entry.article_id, article, "new", _matches(ctx, session, article, catchup), story, catchup
    )


def _matches(
    ctx: PollContext, session: Session, article: Article, catchup: bool
) -> tuple[Match, ...]:
    """Gate, then judge: the query's matches, kept where the watchlist's model agrees.

    The article is embedded (once: vectors are kept by text) only when it passed the gate of
    a watchlist that has a model; a catch-up poll alerts nobody, so it is not judged."""
    matches = ctx.matcher.match(article)
    models = ctx.relevance
    if catchup or models.embedder is None or not models.wants_vector(matches):
        return tuple(matches)
    embedder = models.embedder
    key = text_key(embedder.name, article_text(article))
    vector = vectors.load(session, embedder.name, [key]).get(key)
    if vector is None:
        vector = embedder.embed([article_text(article)])[0]
        vectors.save(session, embedder.name, {key: vector})
    judged = models.judge(article, vector, matches)
    for match in judged:
        if match.judgement is not None and not match.judgement.relevant:
            log.info(
                "match_rejected_by_model",
                watchlist=match.watchlist_id,
                title=article.title[:200],
                reason=match.judgement.reason,
            )
    return accepted(judged)


def parse(claim: ClaimedSource, fetched: FetchResult) -> ParsedFeed:
    assert fetched.body is not None
    if claim.kind == SourceKind.HTML:
        if claim.selectors is None:
            raise ParseError("parse_error", "kind: html source has no selectors")
        return parse_html_page(fetched.body, fetched.headers, fetched.url, claim.selectors)
    return parse_feed(fetched.body, fetched.headers, fetched.url)


def quiet_status(claim: ClaimedSource, fetched: FetchResult) -> PollStatus | None:
    """NOT_MODIFIED for a 304, UNCHANGED for a body identical to the last one (a server that
    ignores our validators); None when there is something to parse."""
    if fetched.status == 304 or fetched.body is None:
        return PollStatus.NOT_MODIFIED
    if claim.first_poll_done and hashlib.sha256(fetched.body).hexdigest() == claim.body_hash:
        return PollStatus.UNCHANGED
    return None


def success_update(
    settings: Settings,
    claim: ClaimedSource,
    result: FetchResult,
    now: datetime,
    parsed: ParsedFeed | None,
    status: PollStatus,
) -> SourceUpdate:
    """The source's new state after an answer: next poll time, validators, a permanent move."""
    when = next_poll_at(
        now,
        claim.every_seconds,
        max_age_seconds=result.max_age_seconds,
        ttl_seconds=parsed.ttl_seconds if parsed else None,
        min_seconds=settings.min_interval_seconds,
        max_seconds=settings.max_interval_seconds,
    )
    # Stored and shown redacted (the admin knows the secrets; polling uses the configured URL),
    # so the redacted form is what tells a new move from the one already reported.
    moved_to = redact_url(result.moved_to) if result.moved_to else None
    if moved_to and moved_to != claim.moved_to:
        log.warning(
            "source moved permanently: update its url in the sources file",
            source=claim.id,
            url=claim.url,
            moved_to=moved_to,
        )
    return SourceUpdate(
        status=status,
        polled_at=now,
        next_poll_at=as_utc(when),
        failures=0,
        http_status=result.status,
        succeeded=True,
        moved_to=moved_to,
        # A 304 confirms the stored validators: only a full answer replaces them.
        validators=None if result.status == 304 else Validators(result.etag, result.last_modified),
    )


def failure_update(
    settings: Settings, claim: ClaimedSource, error: FetchError, now: datetime
) -> SourceUpdate:
    """The source's new state after a failure: backoff, Retry-After, the classified error."""
    failures = claim.failures + 1
    when = next_poll_at(
        now,
        claim.every_seconds,
        failures=failures,
        retry_after_seconds=error.retry_after_seconds,
        min_seconds=settings.min_interval_seconds,
        max_seconds=settings.max_interval_seconds,
    )
    return SourceUpdate(
        status=PollStatus.ERROR,
        error_kind=error.kind,
        polled_at=now,
        next_poll_at=as_utc(when),
        failures=failures,
        http_status=error.status,
        error=redact_text(error.message, claim.url)[:2000],
        error_transient=error.transient,
        disabled_reason=(
            "the server answered 410 Gone: fix the URL in sources.yaml or remove the source"
            if error.kind == "gone"
            else None
        ),
    )


def _complete(ctx: PollContext, claim: ClaimedSource, update: SourceUpdate) -> PollReport:
    """Write a poll that stored no articles: its new schedule and status, fenced."""
    report = PollReport(
        claim.id,
        PollStatus(update.status),
        message=update.error or "",
        error_kind=update.error_kind,
    )
    if ctx.dry_run:
        sources.release(ctx.engine, ctx.owner, [claim.id])
        return report
    if not sources.complete(ctx.engine, claim, owner=ctx.owner, update=update):
        return PollReport(claim.id, PollStatus.LOST_LEASE)
    return report
