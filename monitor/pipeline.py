"""One poll of one source, told in one function: fetch → parse → normalize → cap → prepare
(match, story keys) → store → story → outbox.

Network I/O and every costly computation (parsing, watchlist matching, near-duplicate
fingerprints) happen before any write transaction, so the database's write lock (SQLite has one
for the whole file) is held only for the writes and cheap look-ups. The writes go in short
transactions of at most `MONITOR_WRITE_CHUNK_ENTRIES` entries (a few hundred keep each well
under a second: that is all the dispatcher and other sources wait), each fenced by the
source's lease and renewing it. A chunk holds its articles, story links and outbox rows
together, and the last one also completes the source. So a crash or a lost lease between chunks
loses no alert and doubles none: what a chunk stored, it alerted for in the same commit, and
the next poll finds those entries known and stores the rest (a first poll that crashed stays a
catch-up: only the last chunk marks the source polled). Claiming, running polls concurrently,
batching unchanged sources and draining live beside this, in `poller.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from monitor import alerting, storyvec
from monitor.clock import as_utc, utcnow
from monitor.dedup import Embedding
from monitor.logs import get_logger
from monitor.model import (
    Article,
    FetchError,
    FetchResult,
    IngestedItem,
    Match,
    ParsedFeed,
    PollStatus,
    SourceKind,
    StoryAssignment,
    Watchlist,
)
from monitor.normalize import normalize_entry

# The parts the unchanged-source path uses live in `monitor.outcome` (no ingest imports).
from monitor.outcome import PollReport, quiet_status, success_update
from monitor.parse import ParseError, ParserChoice, parse_feed, parse_html_page
from monitor.query.matcher import Matcher
from monitor.redact import redact_text
from monitor.relevance.embed import Embedder, article_text, text_key
from monitor.relevance.models import RelevanceModels, Vector, accepted
from monitor.schedule import next_poll_at
from monitor.settings import Settings
from monitor.store import db, sources, stories, vectors
from monitor.store.articles import Sighting, StoredEntry, entries_to_write, store_entries
from monitor.store.db import Engine, Session
from monitor.store.sources import ClaimedSource, SourceUpdate
from monitor.store.stories import StoryKeys

log = get_logger(__name__)


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
    story_embedder: Embedder | None = None  # the vector signal of stories (None: MinHash alone)


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
        feed = parse(claim, fetched, ctx.settings.parser)  # parse (pure)
    except ParseError as exc:  # parsers quote the URL, feedparser's complaints may too
        message = redact_text(str(exc), claim.url, fetched.url)
        error = FetchError(claim.id, exc.kind, False, message, status=fetched.status)
        return _complete(ctx, claim, failure_update(ctx.settings, claim, error, now))
    articles = [normalize_entry(e, claim.id, now=now) for e in feed.entries]  # normalize (pure)
    kept, skipped = newest_entries(articles, ctx.settings.max_entries_per_document, now)  # cap
    fresh = entries_to_write(ctx.engine, claim.id, kept)  # a short read: new and edited only
    catchup = not claim.first_poll_done  # a new source's first poll stores and alerts nobody
    judged = judge_articles(ctx, fresh, catchup)  # gate, then the watchlists' models
    embedded = story_embeddings(ctx, fresh, judged, catchup)  # the vector signal of stories
    keys = stories.story_keys_many(fresh, now, _story_model(ctx), embedded)  # pure
    prepared = [prepare(a, judged, k) for a, k in zip(fresh, keys, strict=True)]
    notes = _notes(claim, feed, len(kept), skipped, fetched.url)
    update = replace(
        success_update(ctx.settings, claim, fetched, now, feed, PollStatus.OK),
        body_hash=hashlib.sha256(fetched.body or b"").hexdigest(),
        first_poll_done=True,
        error=f"warning: {notes}"[:2000] if notes else None,
    )
    try:
        written = write(ctx, claim, prepared, update, catchup=catchup, now=now)  # short, fenced
    except LostLease:
        message = "another replica took this source over; results dropped"
        return PollReport(claim.id, PollStatus.LOST_LEASE, skipped=skipped, message=message)
    if ctx.dry_run:
        sources.release(ctx.engine, ctx.owner, [claim.id])
    return PollReport(
        claim.id,
        PollStatus.DRY_RUN if ctx.dry_run else PollStatus.OK,
        new=written.new,
        updated=written.updated,
        alerts=written.alerts,
        skipped=skipped,
        message=notes,
        matches=tuple(
            (i.article.title, m.watchlist_id, m.score) for i in written.items for m in i.matches
        ),
        previews=written.previews,
    )


# --- prepare: pure, before any transaction ------------------------------------------------------


def newest_entries(
    articles: Sequence[Article], limit: int, now: datetime
) -> tuple[list[Article], int]:
    """At most `limit` distinct entries of one document, the newest ones, in document order;
    and how many were skipped.

    Newest by published date; an entry without one counts as published `now`, when it is first
    seen (as everywhere else), and ties keep document order, so a document without dates keeps
    its first `limit` entries. A repeated entry key counts once (its first occurrence, the one
    `store_entries` keeps).
    """
    first: dict[str, Article] = {}
    for article in articles:
        first.setdefault(article.entry_key, article)
    unique = list(first.values())
    if len(unique) <= limit:
        return unique, 0
    seen = as_utc(now)
    order = sorted(
        range(len(unique)),
        key=lambda i: (-(as_utc(p) if (p := unique[i].published) else seen).timestamp(), i),
    )
    keep = sorted(order[:limit])
    return [unique[i] for i in keep], len(unique) - limit


def _notes(claim: ClaimedSource, feed: ParsedFeed, kept: int, skipped: int, url: str) -> str:
    """What the poll report and the source's last status say besides success: the parser's
    warning (redacted: parsers may quote the URL), and how many entries the cap skipped (also
    logged, for operators)."""
    notes = [redact_text(feed.warning, claim.url, url)] if feed.warning else []
    if skipped:
        total = kept + skipped
        notes.append(
            f"kept the newest {kept:,} of {total:,} entries (MONITOR_MAX_ENTRIES_PER_DOCUMENT)"
        )
        log.warning(
            "document has more entries than MONITOR_MAX_ENTRIES_PER_DOCUMENT; oldest skipped",
            source=claim.id,
            url=claim.url,
            entries=total,
            kept=kept,
            skipped=skipped,
        )
    return "; ".join(notes)


@dataclass(frozen=True, slots=True)
class PreparedEntry:
    """One entry to write, with what costs CPU already worked out (outside any transaction)."""

    article: Article
    matches: tuple[Match, ...]
    story: StoryKeys
    vectors: Mapping[str, Vector] = field(default_factory=dict)  # new embeddings to keep


@dataclass(frozen=True, slots=True)
class Judged:
    """The matches of each article after its watchlists' models judged them, and the vectors
    embedded for that (saved with the articles)."""

    matches: Mapping[str, tuple[Match, ...]]  # by entry key
    vectors: Mapping[str, Mapping[str, Vector]]  # entry key: {text key: vector}, new ones only
    gated: frozenset[str] = frozenset()  # entry keys that passed some watchlist's gate
    used: Mapping[str, Vector] = field(default_factory=dict)  # entry key: the vector judged


def prepare(article: Article, judged: Judged, keys: stories.StoryKeys) -> PreparedEntry:
    """One normalized entry with its watchlist matches and its story keys (pure)."""
    return PreparedEntry(
        article,
        judged.matches.get(article.entry_key, ()),
        keys,
        judged.vectors.get(article.entry_key, {}),
    )


def _story_model(ctx: PollContext) -> str | None:
    return ctx.story_embedder.name if ctx.story_embedder is not None else None


def story_embeddings(
    ctx: PollContext, articles: Sequence[Article], judged: Judged, catchup: bool
) -> dict[str, Embedding]:
    """The vector and language of the articles that get the story vector signal (outside any
    transaction), by entry key: with MONITOR_STORY_VECTORS=gated those that passed a watchlist's
    gate outside a catch-up (every article that can alert or follow one up), with `all` every
    new article. A vector the watchlist models just used is reused, not embedded again."""
    embedder = ctx.story_embedder
    mode = ctx.settings.story_vectors
    if embedder is None or mode == "off":
        return {}
    if mode == "gated":
        wanted = [a for a in articles if not catchup and a.entry_key in judged.gated]
    else:
        wanted = list(articles)
    if not wanted:
        return {}
    same_model = ctx.relevance.embedder is not None and ctx.relevance.embedder.name == embedder.name
    reuse = judged.used if same_model else {}
    out = {
        a.entry_key: Embedding(reuse[a.entry_key], storyvec.language_of(a))
        for a in wanted
        if a.entry_key in reuse
    }
    missing = [a for a in wanted if a.entry_key not in out]
    for article, made in zip(missing, storyvec.embeddings(embedder, missing), strict=True):
        out[article.entry_key] = made
    return out


def match_article(ctx: PollContext, article: Article) -> tuple[Match, ...]:
    """The query's matches of one normalized article (the gate; pure)."""
    return tuple(ctx.matcher.match(article))


def judge_articles(ctx: PollContext, articles: Sequence[Article], catchup: bool) -> Judged:
    """Gate, then judge: each article's matches, kept where the watchlist's model agrees.

    Outside any transaction. An article is embedded (once: vectors are kept by text, looked up
    in a short read first) only when it passed the gate of a watchlist that has a model; a
    catch-up poll alerts nobody, so it is not judged."""
    gated = {a.entry_key: match_article(ctx, a) for a in articles}
    passed = frozenset(k for k, m in gated.items() if m)
    models = ctx.relevance
    if catchup or models.embedder is None:
        return Judged(gated, {}, passed)
    wanted = [a for a in articles if models.wants_vector(gated[a.entry_key])]
    if not wanted:
        return Judged(gated, {}, passed)
    embedder = models.embedder
    keys = {a.entry_key: text_key(embedder.name, article_text(a)) for a in wanted}
    with db.transaction(ctx.engine) as session:
        known = vectors.load(session, embedder.name, list(keys.values()))
    missing = [a for a in wanted if keys[a.entry_key] not in known]
    fresh = embedder.embed([article_text(a) for a in missing]) if missing else None
    made = {
        a.entry_key: {keys[a.entry_key]: fresh[i]}
        for i, a in enumerate(missing)
        if fresh is not None
    }
    out = dict(gated)
    used: dict[str, Vector] = {}
    for article in wanted:
        key = keys[article.entry_key]
        vector = known[key] if key in known else made[article.entry_key][key]
        used[article.entry_key] = vector
        judged = models.judge(article, vector, gated[article.entry_key])
        for match in judged:
            if match.judgement is not None and not match.judgement.relevant:
                log.info(
                    "match_rejected_by_model",
                    watchlist=match.watchlist_id,
                    title=article.title[:200],
                    reason=match.judgement.reason,
                )
        out[article.entry_key] = accepted(judged)
    return Judged(out, made, passed, used)


# --- write: short transactions, fenced by the lease ---------------------------------------------


@dataclass
class Written:
    """What a poll's writes stored and planned, summed over its chunks."""

    new: int = 0
    updated: int = 0
    alerts: int = 0
    items: list[IngestedItem] = field(default_factory=list)
    previews: tuple[str, ...] = ()


def write(
    ctx: PollContext,
    claim: ClaimedSource,
    prepared: Sequence[PreparedEntry],
    update: SourceUpdate,
    *,
    catchup: bool,
    now: datetime,
) -> Written:
    """Store the prepared entries, their stories and outbox rows in transactions of at most
    `write_chunk_entries`; raises LostLease when the source is no longer ours.

    Each transaction but the last starts by renewing the lease (fenced by the epoch), the last
    one completes the source with `update`. Entries with matches go first, so a poll's alerts
    normally share one transaction; one `FloodGuard` spans the chunks anyway. A dry run writes
    nothing, so it uses one transaction and rolls it back.
    """
    ordered = sorted(prepared, key=lambda p: not p.matches)  # stable: document order otherwise
    size = max(len(ordered), 1) if ctx.dry_run else ctx.settings.write_chunk_entries
    chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)] or [[]]
    flood = alerting.FloodGuard(ctx.settings.flood_threshold)
    lease = timedelta(seconds=ctx.settings.lease_seconds)
    done = Written()
    for number, chunk in enumerate(chunks, start=1):
        last = number == len(chunks)
        with db.transaction(ctx.engine) as session:
            if not last and not sources.renew_lease(
                session, claim, owner=ctx.owner, until=utcnow() + lease
            ):
                raise LostLease(claim.id)
            _write_chunk(ctx, session, claim, chunk, flood, done, catchup=catchup, now=now)
            if not last:
                continue
            final = replace(update, last_new_entries=done.new)
            if ctx.dry_run:
                done.previews = tuple(
                    alerting.preview_for_poll(session, source_id=claim.id, now=now)
                )
                session.rollback()
            elif not sources.complete_source(session, claim, owner=ctx.owner, update=final):
                raise LostLease(claim.id)
    return done


def _write_chunk(
    ctx: PollContext,
    session: Session,
    claim: ClaimedSource,
    chunk: Sequence[PreparedEntry],
    flood: alerting.FloodGuard,
    done: Written,
    *,
    catchup: bool,
    now: datetime,
) -> None:
    """One chunk: store the entries, place them in stories, write their outbox rows."""
    by_key = {p.article.entry_key: p for p in chunk}
    stored = store_entries(session, claim.id, [p.article for p in chunk], now=now, catchup=catchup)
    made = {k: v for p in chunk for k, v in p.vectors.items()}  # judging's, kept for next time
    # Only when judging made vectors: asking for the embedder of models not trained yet (a
    # one-shot catch-up) would train them here, inside the write transaction.
    embedder = ctx.relevance.embedder if made else None
    if embedder is not None:
        vectors.save(session, embedder.name, made)
    window = timedelta(hours=ctx.settings.story_window_hours)
    fresh = [
        (e.article_id, by_key[e.article.entry_key].story)
        for e in stored
        if e.sighting is Sighting.NEW
    ]
    index = stories.BandIndex.prefetch(session, fresh, window)
    items = [
        item
        for e in stored
        if (item := _judge(ctx, session, e, by_key[e.article.entry_key], now, catchup, index))
    ]
    index.flush(session.connection())
    done.alerts += alerting.enqueue_for_poll(  # outbox rows, before any network call
        session,
        source_id=claim.id,
        source_name=claim.name,
        items=items,
        watchlists=ctx.watchlists,
        settings=ctx.settings,
        now=now,
        flood=flood,
    )
    done.new += sum(e.sighting is Sighting.NEW for e in stored)
    done.updated += sum(e.sighting is Sighting.REVISION for e in stored)
    done.items.extend(items)


def _judge(
    ctx: PollContext,
    session: Session,
    entry: StoredEntry,
    prepared: PreparedEntry,
    now: datetime,
    catchup: bool,
    index: stories.BandIndex | None = None,
) -> IngestedItem | None:
    """The alerting view of one stored entry: its prepared matches, and its story (a copy
    joins its original's; a new article is placed with its prepared keys: look-ups only)."""
    article, matches = entry.article, prepared.matches
    if entry.sighting is Sighting.REVISION:
        return IngestedItem(entry.article_id, article, "update", matches, None, catchup)
    if entry.sighting is Sighting.NEW:
        window = ctx.settings.story_window_hours
        story = stories.assign_story(
            session, entry.article_id, article, now, window, keys=prepared.story, index=index
        )
    else:  # a copy: of an article this chunk placed, or one stored before
        placed = index.assigned.get(entry.article_id) if index is not None else None
        if placed is not None:
            found: StoryAssignment | None = replace(placed, is_new=False)
        else:
            found = stories.story_of_article(session, entry.article_id)
        if found is None:
            return None
        story = found
    return IngestedItem(entry.article_id, article, "new", matches, story, catchup)


def parse(claim: ClaimedSource, fetched: FetchResult, parser: ParserChoice = "auto") -> ParsedFeed:
    assert fetched.body is not None
    if claim.kind == SourceKind.HTML:
        if claim.selectors is None:
            raise ParseError("parse_error", "kind: html source has no selectors")
        return parse_html_page(fetched.body, fetched.headers, fetched.url, claim.selectors)
    return parse_feed(fetched.body, fetched.headers, fetched.url, parser=parser)


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
