"""The one place where the stages are joined: fetch → parse → normalize → store → story → match
→ outbox, for each claimed source.

Network I/O happens outside any transaction; everything a poll learned (articles, story links,
outbox rows, the source's new state) is written in ONE transaction, fenced by the source lease,
so a crash or a lost lease loses nothing and doubles nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from monitor import alerting
from monitor.clock import as_utc, utcnow
from monitor.fetch import Fetcher
from monitor.logs import get_logger
from monitor.model import (
    Article,
    ErrorKind,
    FetchError,
    FetchRequest,
    FetchResult,
    IngestedItem,
    ParsedFeed,
    PollStatus,
    SourceKind,
)
from monitor.normalize import normalize_entry
from monitor.parse import ParseError, parse_feed, parse_html_page
from monitor.schedule import next_poll_at
from monitor.settings import Settings
from monitor.store import articles as store_articles
from monitor.store import db, sources, stories
from monitor.store.db import Engine, Session
from monitor.store.sources import ClaimedSource, SourceUpdate, Validators

log = get_logger(__name__)


class LostLease(Exception):
    """Another replica owns the source now: our results must not be written."""


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


class Poller:
    """Polls claimed sources; built once per process, shared by the tick job and the CLI."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        fetcher: Fetcher,
        *,
        watchlists: Callable[[], Mapping[str, Any]],
        matcher: Callable[[], Any],
        owner: str,
        dry_run: bool = False,
        on_report: Callable[[PollReport], None] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.fetcher = fetcher
        self._watchlists = watchlists
        self._matcher = matcher
        self.owner = owner
        self.dry_run = dry_run
        self.on_report = on_report
        self.draining = False
        self._fetching: set[asyncio.Task[PollReport]] = set()
        self._storing: set[asyncio.Future[PollReport]] = set()
        # 304s and unchanged bodies only move next_poll_at: written in batches, not one
        # transaction each (1,000 unchanged sources must poll in well under two seconds).
        self._quiet: list[tuple[ClaimedSource, SourceUpdate]] = []
        self._quiet_lock = threading.Lock()

    # --- ticks -----------------------------------------------------------------------------

    async def poll_due(
        self, *, force: bool = False, only: Iterable[str] | None = None
    ) -> list[PollReport]:
        """Claim due sources (all with `force`) and poll them concurrently."""
        if self.draining:
            return []
        now = utcnow()
        only_ids = list(only or [])
        claims = await asyncio.to_thread(self._claim, now, force, only_ids)
        if not claims:
            return []
        if self.draining:  # shutdown began while we were claiming: give them straight back
            await asyncio.to_thread(self._release_ids, [c.id for c in claims])
            return []
        tasks = [asyncio.create_task(self.poll_source(claim)) for claim in claims]
        self._fetching.update(tasks)
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            self._fetching.difference_update(tasks)
            await asyncio.to_thread(self.flush_quiet)

    def _claim(self, now: datetime, force: bool, only: list[str]) -> list[ClaimedSource]:
        return sources.claim(
            self.engine,
            owner=self.owner,
            now=now,
            lease_seconds=self.settings.lease_seconds,
            limit=max(self.settings.poll_batch, len(only)),
            force=force,
            only=only,
        )

    async def poll_source(self, claim: ClaimedSource) -> PollReport:
        started = time.monotonic()
        request = FetchRequest(claim.id, claim.url, claim.etag, claim.last_modified)
        try:
            outcome = await self.fetcher.fetch(request)
        except asyncio.CancelledError:
            # While draining, `drain` gives back every lease in one statement afterwards: a
            # transaction per cancelled claim (hundreds at scale) would outlast the grace period.
            if not self.draining:
                await asyncio.to_thread(self._release_ids, [claim.id])
            raise
        quiet = self._quiet_outcome(claim, outcome, started)
        if quiet is not None:
            self._log_report(claim, quiet)
            if self.on_report is not None:
                self.on_report(quiet)
            return quiet
        # From here on the result is ours to keep: finish storing even while shutting down.
        store = asyncio.ensure_future(
            asyncio.to_thread(self._store_outcome, claim, outcome, started)
        )
        self._storing.add(store)
        store.add_done_callback(self._storing.discard)
        report = await asyncio.shield(store)
        self._log_report(claim, report)
        if self.on_report is not None:
            self.on_report(report)
        return report

    def _release_ids(self, ids: list[str]) -> None:
        sources.release(self.engine, self.owner, ids)

    async def drain(self, grace: float) -> None:
        """Stop claiming, give in-flight fetches `grace` seconds, keep every fetched result."""
        self.draining = True
        pending = set(self._fetching)
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=2)
        if self._storing:
            await asyncio.wait(set(self._storing), timeout=max(grace, 5))
        await asyncio.to_thread(self.flush_quiet)
        await asyncio.to_thread(self._release_all)

    def _quiet_outcome(
        self, claim: ClaimedSource, outcome: FetchResult | FetchError, started: float
    ) -> PollReport | None:
        """A 304 or an unchanged body: nothing to parse, only the schedule to move."""
        if self.dry_run or isinstance(outcome, FetchError) or not claim.first_poll_done:
            return None
        if outcome.status == 304 or outcome.body is None:
            status = PollStatus.NOT_MODIFIED
        elif hashlib.sha256(outcome.body).hexdigest() == claim.body_hash:
            status = PollStatus.UNCHANGED
        else:
            return None
        change = self._success_update(claim, outcome, utcnow(), None, status=status)
        with self._quiet_lock:
            self._quiet.append((claim, change))
        return PollReport(claim.id, status, seconds=time.monotonic() - started)

    def flush_quiet(self) -> int:
        """Write the batched schedule updates in one fenced transaction."""
        with self._quiet_lock:
            batch, self._quiet = self._quiet, []
        if not batch:
            return 0
        lost = sources.complete_many(self.engine, self.owner, batch)
        written = len(batch) - len(lost)
        for source_id in lost:  # fenced off: another replica took the source over meanwhile
            log.warning(
                "lease lost; poll result dropped", source=source_id, status=PollStatus.LOST_LEASE
            )
        return written

    def _release_all(self) -> None:
        sources.release(self.engine, self.owner)

    # --- one source --------------------------------------------------------------------------

    def _store_outcome(
        self, claim: ClaimedSource, outcome: FetchResult | FetchError, started: float
    ) -> PollReport:
        now = utcnow()
        if isinstance(outcome, FetchError):
            return self._finish_error(claim, outcome, now, started)
        if outcome.status == 304 or outcome.body is None:
            status = PollStatus.NOT_MODIFIED
            change = self._success_update(claim, outcome, now, None, status=status)
            return self._finish(claim, change, PollReport(claim.id, status), started)
        body_hash = hashlib.sha256(outcome.body).hexdigest()
        if body_hash == claim.body_hash and claim.first_poll_done:
            status = PollStatus.UNCHANGED
            change = self._success_update(claim, outcome, now, None, status=status)
            return self._finish(claim, change, PollReport(claim.id, status), started)
        try:
            parsed = self._parse(claim, outcome)
        except ParseError as exc:
            error = FetchError(claim.id, exc.kind, False, str(exc), status=outcome.status)
            return self._finish_error(claim, error, now, started)
        articles = [normalize_entry(entry, claim.id) for entry in parsed.entries]
        change = self._success_update(claim, outcome, now, parsed, status=PollStatus.OK)
        previews: tuple[str, ...] = ()
        try:
            # One poll, one transaction, fenced by the lease: all of it is written or none.
            with db.transaction(self.engine) as session:
                report = self._ingest(session, claim, articles, now)
                change = replace(
                    change,
                    body_hash=body_hash,
                    first_poll_done=True,
                    last_new_entries=report.new,
                    error=f"warning: {parsed.warning}"[:2000] if parsed.warning else None,
                )
                if self.dry_run:
                    previews = tuple(
                        alerting.preview_for_poll(session, source_id=claim.id, now=now)
                    )
                    session.rollback()
                elif not sources.complete_source(
                    session, claim, owner=self.owner, update=change
                ):
                    raise LostLease(claim.id)
        except LostLease:
            return PollReport(
                claim.id,
                PollStatus.LOST_LEASE,
                seconds=time.monotonic() - started,
                message="another replica took this source over; results dropped",
            )
        if self.dry_run:
            self._release_ids([claim.id])
        return PollReport(
            claim.id,
            PollStatus.DRY_RUN if self.dry_run else PollStatus.OK,
            new=report.new,
            updated=report.updated,
            alerts=report.alerts,
            seconds=time.monotonic() - started,
            message=parsed.warning or "",
            matches=report.matches,
            previews=previews,
        )

    def _parse(self, claim: ClaimedSource, result: FetchResult) -> ParsedFeed:
        assert result.body is not None
        if claim.kind == SourceKind.HTML:
            if claim.selectors is None:
                raise ParseError("parse_error", "kind: html source has no selectors")
            return parse_html_page(result.body, result.headers, result.url, claim.selectors)
        return parse_feed(result.body, result.headers, result.url)

    def _ingest(
        self, session: Session, claim: ClaimedSource, articles: list[Article], now: datetime
    ) -> PollReport:
        catchup = not claim.first_poll_done
        unique: dict[str, Article] = {}
        for article in articles:
            unique.setdefault(article.entry_key, article)
        known = store_articles.known_entries(session, claim.id, list(unique))
        fresh = [a for key, a in unique.items() if key not in known]
        by_hash = store_articles.articles_by_hash(session, [a.content_hash for a in fresh])
        matcher = self._matcher()
        # Same text twice among the fresh ones (or already stored): the later ones are copies.
        to_insert: dict[str, Article] = {}
        for article in fresh:
            if article.content_hash not in by_hash:
                to_insert.setdefault(article.content_hash, article)
        inserted = store_articles.insert_articles(
            session, list(to_insert.values()), now=now, catchup=catchup
        )
        for article in to_insert.values():
            if article.entry_key in inserted:
                by_hash[article.content_hash] = inserted[article.entry_key]
        items: list[IngestedItem] = []
        new = updated = 0
        for key, article in unique.items():
            entry = known.get(key)
            if entry is None:
                article_id = inserted.get(key)
                if article_id is not None and to_insert.get(article.content_hash) is article:
                    new += 1
                    story = stories.assign_story(
                        session, article_id, article, now, self.settings.story_window_hours
                    )
                    matches = tuple(matcher.match(article))
                    items.append(IngestedItem(article_id, article, "new", matches, story, catchup))
                    continue
                original = by_hash.get(article.content_hash)
                linked = original is not None and store_articles.insert_copy(
                    session, original, article, now=now
                )
                if linked and original is not None:
                    copy = self._copy_item(session, original, article, matcher, catchup)
                    if copy is not None:
                        items.append(copy)
                # else: stored meanwhile by another replica
            elif entry.content_hash and entry.content_hash != article.content_hash:
                store_articles.record_revision(session, entry, article, now=now)
                updated += 1
                matches = tuple(matcher.match(article))
                items.append(
                    IngestedItem(entry.article_id, article, "update", matches, None, catchup)
                )
        alerts = alerting.enqueue_for_poll(
            session,
            source_id=claim.id,
            source_name=claim.name,
            items=items,
            watchlists=self._watchlists(),
            settings=self.settings,
            now=now,
        )
        hits = tuple(
            (item.article.title, m.watchlist_id, m.score) for item in items for m in item.matches
        )
        return PollReport(
            claim.id, PollStatus.OK, new=new, updated=updated, alerts=alerts, matches=hits
        )

    def _copy_item(
        self, session: Session, original: int, article: Article, matcher: Any, catchup: bool
    ) -> IngestedItem | None:
        """The same text from another outlet: a later member of the original's story."""
        story = stories.story_of_article(session, original)
        if story is None:
            return None
        matches = tuple(matcher.match(article))
        return IngestedItem(original, article, "new", matches, story, catchup)

    # --- source state ----------------------------------------------------------------------

    def _success_update(
        self,
        claim: ClaimedSource,
        result: FetchResult,
        now: datetime,
        parsed: ParsedFeed | None,
        *,
        status: PollStatus,
    ) -> SourceUpdate:
        when = next_poll_at(
            now,
            claim.every_seconds,
            max_age_seconds=result.max_age_seconds,
            ttl_seconds=parsed.ttl_seconds if parsed else None,
            min_seconds=self.settings.min_interval_seconds,
            max_seconds=self.settings.max_interval_seconds,
        )
        if result.moved_to and result.moved_to != claim.moved_to:
            log.warning(
                "source moved permanently: update its url in the sources file",
                source=claim.id,
                url=claim.url,
                moved_to=result.moved_to,
            )
        return SourceUpdate(
            status=status,
            polled_at=now,
            next_poll_at=as_utc(when),
            failures=0,
            http_status=result.status,
            succeeded=True,
            moved_to=result.moved_to,
            # A 304 confirms the stored validators: only a full answer replaces them.
            validators=(
                None if result.status == 304 else Validators(result.etag, result.last_modified)
            ),
        )

    def _finish_error(
        self, claim: ClaimedSource, error: FetchError, now: datetime, started: float
    ) -> PollReport:
        failures = claim.failures + 1
        when = next_poll_at(
            now,
            claim.every_seconds,
            failures=failures,
            retry_after_seconds=error.retry_after_seconds,
            min_seconds=self.settings.min_interval_seconds,
            max_seconds=self.settings.max_interval_seconds,
        )
        change = SourceUpdate(
            status=PollStatus.ERROR,
            error_kind=error.kind,
            polled_at=now,
            next_poll_at=as_utc(when),
            failures=failures,
            http_status=error.status,
            error=error.message[:2000],
            error_transient=error.transient,
            disabled_reason=(
                "the server answered 410 Gone: fix the URL in sources.yaml or remove the source"
                if error.kind == "gone"
                else None
            ),
        )
        report = PollReport(
            claim.id, PollStatus.ERROR, message=error.message, error_kind=error.kind
        )
        return self._finish(claim, change, report, started)

    def _finish(
        self, claim: ClaimedSource, change: SourceUpdate, report: PollReport, started: float
    ) -> PollReport:
        seconds = time.monotonic() - started
        if self.dry_run:
            self._release_ids([claim.id])
            return replace(report, seconds=seconds)
        if not sources.complete(self.engine, claim, owner=self.owner, update=change):
            return PollReport(claim.id, PollStatus.LOST_LEASE, seconds=seconds)
        return replace(report, seconds=seconds)

    def _log_report(self, claim: ClaimedSource, report: PollReport) -> None:
        fields = {
            "source": claim.id,
            "url": claim.url,
            "status": report.label,
            "new": report.new,
            "updated": report.updated,
            "alerts": report.alerts,
            "seconds": round(report.seconds, 3),
        }
        if report.status == PollStatus.ERROR:
            log.warning("poll failed", error=report.message, **fields)
        elif report.status == PollStatus.LOST_LEASE:
            log.warning("lease lost; poll result dropped", **fields)
        elif report.status in (PollStatus.NOT_MODIFIED, PollStatus.UNCHANGED):
            log.debug("polled", **fields)
        else:
            log.info("polled", **fields)

