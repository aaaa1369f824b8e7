"""The machinery around one poll (`pipeline.poll_fetched`): claim due sources, fetch them
concurrently, batch the writes of unchanged sources, and drain cleanly on shutdown.

A 304 or an unchanged body never imports `monitor.pipeline` (parsers, story grouping, matching,
numpy): a one-shot poll of unchanged feeds starts fetching sooner and does less.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from monitor.clock import utcnow
from monitor.logs import get_logger
from monitor.model import FetchError, FetchRequest, FetchResult, PollStatus, Watchlist
from monitor.outcome import PollReport, quiet_status, success_update
from monitor.settings import Settings
from monitor.store import sources
from monitor.store.db import Engine
from monitor.store.sources import ClaimedSource, SourceUpdate

if TYPE_CHECKING:  # the ingest path (`monitor.pipeline`) is imported by the first poll needing it
    from monitor.fetch import Fetcher
    from monitor.pipeline import PollContext
    from monitor.query.matcher import Matcher
    from monitor.relevance.embed import Embedder
    from monitor.relevance.models import RelevanceModels

log = get_logger(__name__)


class LiveWatchlists(Protocol):
    """The watchlists in force now (the registry swaps them on reload)."""

    @property
    def watchlists(self) -> Mapping[str, Watchlist]: ...

    @property
    def matcher(self) -> Matcher: ...

    @property
    def relevance(self) -> RelevanceModels: ...


class Poller:
    """Polls claimed sources; built once per process, shared by the tick job and the CLI."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        fetcher: Fetcher,
        live: LiveWatchlists,
        *,
        owner: str,
        dry_run: bool = False,
        on_report: Callable[[PollReport], None] | None = None,
        story_embedder: Embedder | None = None,
        story_embedder_factory: Callable[[], Embedder | None] | None = None,
    ) -> None:
        """`story_embedder_factory` makes the story embedder when the first poll needs it
        (instead of `story_embedder`; the text model is not loaded for unchanged feeds)."""
        self.settings = settings
        self.engine = engine
        self.fetcher = fetcher
        self.live = live
        self.owner = owner
        self.dry_run = dry_run
        self.on_report = on_report
        self._story_embedder = story_embedder
        self._story_embedder_factory = story_embedder_factory
        self.draining = False
        self._fetching: set[asyncio.Task[PollReport]] = set()
        self._storing: set[asyncio.Future[PollReport]] = set()
        # 304s and unchanged bodies only move next_poll_at: written in batches, not one
        # transaction each (1,000 unchanged sources must poll in well under two seconds).
        self._quiet: list[tuple[ClaimedSource, SourceUpdate]] = []
        self._quiet_lock = threading.Lock()
        # Ingests (parse, store, stories) run here, not in asyncio's default executor: a few
        # workers keep a core busy, while every extra thread holding a parsed feed and its
        # allocator arena costs memory (a 500-feed catch-up peaked 35 MiB higher at six).
        self._ingest: ThreadPoolExecutor | None = None
        # Polls past the fetch hold their body until stored: with ingest the slower half, a
        # catch-up of big feeds would otherwise hold every fetched body at once. This many
        # polls run at a time: every fetch slot, and two bodies waiting per ingest worker.
        self._slots_size = settings.fetch_concurrency + 2 * settings.ingest_workers
        self._slots_of: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    async def poll_due(
        self,
        *,
        force: bool = False,
        only: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
    ) -> list[PollReport]:
        """Claim one batch of due sources (all with `force`) and poll them concurrently."""
        if self.draining:
            return []
        only_ids = list(only or [])
        claims = await asyncio.to_thread(
            self._claim, utcnow(), force, only_ids, list(exclude or [])
        )
        if not claims:
            return []
        if self.draining:  # shutdown began while we were claiming: give them straight back
            await asyncio.to_thread(
                sources.release, self.engine, self.owner, [c.id for c in claims]
            )
            return []
        tasks = [asyncio.create_task(self.poll_source(claim)) for claim in claims]
        self._fetching.update(tasks)
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            self._fetching.difference_update(tasks)
            await asyncio.to_thread(self.flush_quiet)

    async def poll_all_due(
        self, *, force: bool = False, only: Iterable[str] | None = None
    ) -> list[PollReport]:
        """A one-shot poll: batch after batch (`MONITOR_POLL_BATCH` each) until every due
        source (with `force`: every source) was polled once, so `--all` means all."""
        reports: list[PollReport] = []
        done: set[str] = set()
        while not self.draining:
            batch = await self.poll_due(force=force, only=only, exclude=done)
            if not batch:
                break
            reports.extend(batch)
            done.update(r.source_id for r in batch)
        return reports

    def _claim(
        self, now: datetime, force: bool, only: list[str], exclude: list[str]
    ) -> list[ClaimedSource]:
        return sources.claim(
            self.engine,
            owner=self.owner,
            now=now,
            lease_seconds=self.settings.lease_seconds,
            limit=max(self.settings.poll_batch, len(only)),
            force=force,
            only=only,
            exclude=exclude,
        )

    @property
    def story_embedder(self) -> Embedder | None:
        if self._story_embedder_factory is not None:
            self._story_embedder = self._story_embedder_factory()
            self._story_embedder_factory = None
        return self._story_embedder

    def context(self) -> PollContext:
        """The watchlists in force now, for one poll."""
        from monitor.pipeline import PollContext

        return PollContext(
            self.settings,
            self.engine,
            self.owner,
            self.live.matcher,
            self.live.watchlists,
            self.dry_run,
            self.live.relevance,
            self.story_embedder,
        )

    async def poll_source(self, claim: ClaimedSource) -> PollReport:
        slots = self._slots()
        try:
            await slots.acquire()
        except asyncio.CancelledError:
            await self._give_back(claim)
            raise
        try:
            return await self._poll_source(claim)
        finally:
            slots.release()

    def _slots(self) -> asyncio.Semaphore:
        """The slots of the running loop (a one-shot command or a test may run several)."""
        loop = asyncio.get_running_loop()
        if self._slots_of is None or self._slots_of[0] is not loop:
            self._slots_of = (loop, asyncio.Semaphore(max(self._slots_size, 1)))
        return self._slots_of[1]

    async def _give_back(self, claim: ClaimedSource) -> None:
        # While draining, `drain` gives back every lease in one statement afterwards: a
        # transaction per cancelled claim (hundreds at scale) would outlast the grace period.
        if not self.draining:
            await asyncio.to_thread(sources.release, self.engine, self.owner, [claim.id])

    async def _poll_source(self, claim: ClaimedSource) -> PollReport:
        started = time.monotonic()
        request = FetchRequest(claim.id, claim.url, claim.etag, claim.last_modified)
        try:
            fetched = await self.fetcher.fetch(request)
        except asyncio.CancelledError:
            await self._give_back(claim)
            raise
        report = self._batch_if_quiet(claim, fetched)
        if report is None:
            from monitor.pipeline import poll_fetched

            ctx = self.context()
            # From here on the result is ours to keep: finish storing even while shutting down.
            call = functools.partial(
                contextvars.copy_context().run, poll_fetched, ctx, claim, fetched, utcnow()
            )
            store = asyncio.get_running_loop().run_in_executor(self._ingest_pool(), call)
            self._storing.add(store)
            store.add_done_callback(self._storing.discard)
            try:
                report = await asyncio.shield(store)
            except Exception as exc:  # one source's failed ingest, not the whole tick's
                report = await asyncio.to_thread(self._failed_ingest, claim, exc)
        report = replace(report, seconds=time.monotonic() - started)
        self._log_report(claim, report)
        if self.on_report is not None:
            self.on_report(report)
        return report

    def _failed_ingest(self, claim: ClaimedSource, exc: Exception) -> PollReport:
        """An ingest that raised (a database error such as SQLite's `database is locked`, or a
        bug): its transaction rolled back, so nothing of the failed chunk is stored or alerted.
        The lease is given back and the source, still due, is polled again by the next tick;
        the chunks committed before are known entries then."""
        from monitor.redact import redact_text

        cause = getattr(exc, "orig", None) or exc  # a database error: the driver's words alone,
        # not SQLAlchemy's statement and parameters (article text)
        message = redact_text(f"ingest failed: {type(exc).__name__}: {cause}", claim.url)[:500]
        log.error("ingest failed", source=claim.id, error=message)  # no traceback: SQL values
        try:
            sources.release(self.engine, self.owner, [claim.id])
        except Exception as again:  # the lease then runs out by itself
            log.warning("lease not given back", source=claim.id, error=str(again)[:200])
        return PollReport(claim.id, PollStatus.ERROR, message=message)

    def _ingest_pool(self) -> ThreadPoolExecutor:
        if self._ingest is None:
            self._ingest = ThreadPoolExecutor(
                max_workers=self.settings.ingest_workers, thread_name_prefix="ingest"
            )
        return self._ingest

    def close(self) -> None:
        """Stop the ingest workers (after `drain`, or once a one-shot poll is done)."""
        if self._ingest is not None:
            self._ingest.shutdown(wait=True)
            self._ingest = None

    def _batch_if_quiet(
        self, claim: ClaimedSource, fetched: FetchResult | FetchError
    ) -> PollReport | None:
        """A 304 or an unchanged body of a known source: queue its schedule update."""
        if self.dry_run or isinstance(fetched, FetchError) or not claim.first_poll_done:
            return None
        status = quiet_status(claim, fetched)
        if status is None:
            return None
        update = success_update(self.settings, claim, fetched, utcnow(), None, status)
        with self._quiet_lock:
            self._quiet.append((claim, update))
        return PollReport(claim.id, status)

    def flush_quiet(self) -> int:
        """Write the batched schedule updates in one fenced transaction."""
        with self._quiet_lock:
            batch, self._quiet = self._quiet, []
        if not batch:
            return 0
        lost = sources.complete_many(self.engine, self.owner, batch)
        for source_id in lost:  # fenced off: another replica took the source over meanwhile
            log.warning(
                "lease lost; poll result dropped", source=source_id, status=PollStatus.LOST_LEASE
            )
        return len(batch) - len(lost)

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
        await asyncio.to_thread(sources.release, self.engine, self.owner)

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
        if report.skipped:  # entries beyond MONITOR_MAX_ENTRIES_PER_DOCUMENT
            fields["skipped"] = report.skipped
        if report.status == PollStatus.ERROR:
            log.warning("poll failed", error=report.message, **fields)
        elif report.status == PollStatus.LOST_LEASE:
            log.warning("lease lost; poll result dropped", **fields)
        elif report.status in (PollStatus.NOT_MODIFIED, PollStatus.UNCHANGED):
            log.debug("polled", **fields)
        else:
            log.info("polled", **fields)
