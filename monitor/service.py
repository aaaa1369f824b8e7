"""The running service: builds every part once, runs the tick jobs, shuts down cleanly.

`monitor run` and `monitor poll --once` both go through `Service`, so the CLI holds no logic and
the scheduler only triggers: which source is due is decided by the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor import __version__
from monitor.app import App
from monitor.clock import utcnow
from monitor.logs import get_logger
from monitor.outcome import PollReport
from monitor.poller import Poller
from monitor.settings import Settings
from monitor.store import db, sources
from monitor.store.db import Engine

if TYPE_CHECKING:  # made on first use: a one-shot poll of unchanged feeds needs none of them
    from monitor.deliver import Dispatcher
    from monitor.feedback import FeedbackDesk
    from monitor.fetch import Fetcher
    from monitor.metrics import ServiceMetrics
    from monitor.query.matcher import Matcher
    from monitor.relevance.models import RelevanceModels
    from monitor.store.replicas import SqliteInstanceLock
    from monitor.watchlists import WatchlistRegistry

log = get_logger(__name__)


class StartupError(Exception):
    """The service cannot start; the message says what to do."""


def default_owner(settings: Settings) -> str:
    return settings.instance_name or f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Health:
    """Process state the health endpoints read (database checks are made by web.py itself)."""

    started: float = field(default_factory=time.time)
    heartbeat: float = field(default_factory=time.monotonic)
    draining: bool = False


class WatchlistsOnFirstUse:
    """The watchlists of a one-shot poll, loaded (and validated, errors logged) when the first
    poll that has something to match asks for them: a 304 or an unchanged body never does, so
    a run over unchanged feeds does not import the query language, the matcher or the models."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self._lock = threading.Lock()
        self._loaded = False

    def _registry(self) -> WatchlistRegistry:
        with self._lock:
            if not self._loaded:
                self._service.load_watchlists()
                self._loaded = True
        return self._service.registry

    @property
    def watchlists(self) -> dict[str, Any]:
        return self._registry().watchlists

    @property
    def matcher(self) -> Matcher:
        return self._registry().matcher

    @property
    def relevance(self) -> RelevanceModels:
        return self._registry().relevance


class Service:
    """The poller, the dispatcher and the ticks, over the parts the App built once.

    `one_shot` (`monitor poll --once`): the watchlists load when the first poll needs them,
    polls are not counted in metrics (nothing serves them) and no replica row is forgotten (a
    one-shot poll never beats). The dispatcher, the feedback desk and the metrics are made on
    first use, so a poll of unchanged feeds imports none of them."""

    def __init__(self, app: App, *, dry_run: bool = False, one_shot: bool = False) -> None:
        settings = app.settings
        self.app = app
        self.settings = settings
        self.dry_run = dry_run
        self.one_shot = one_shot
        self.owner = default_owner(settings)
        self.engine: Engine = app.engine
        self.health = Health()
        self.fetcher: Fetcher = app.fetcher
        self.poller = Poller(
            settings,
            self.engine,
            self.fetcher,
            WatchlistsOnFirstUse(self) if one_shot else self.registry,
            owner=self.owner,
            dry_run=dry_run,
            on_report=self._count,
            story_embedder_factory=self._story_embedder,
        )
        if not one_shot:
            self.metrics.watch_channels(self.dispatcher.notifiers)
        self._sources_mtime: float | None = None
        self._lock: SqliteInstanceLock | None = None
        self._feedback_seen: tuple[int, int] | None = None
        self.feedback_generation = 0  # refits on desk feedback so far (console cache keys)

    @cached_property
    def registry(self) -> WatchlistRegistry:
        return self.app.watchlists

    @cached_property
    def metrics(self) -> ServiceMetrics:
        from monitor.metrics import ServiceMetrics

        return ServiceMetrics()

    @cached_property
    def dispatcher(self) -> Dispatcher:
        from monitor.deliver import Dispatcher

        return Dispatcher(
            self.settings,
            self.engine,
            owner=self.owner,
            dry_run=self.dry_run,
            notifiers=self.app.notifiers,
            on_result=self.metrics.observe_delivery,
        )

    @cached_property
    def feedback(self) -> FeedbackDesk:
        from monitor.feedback import FeedbackDesk

        return FeedbackDesk(
            self.engine, self.dispatcher.notifiers.get("slack"), read_only=self.dry_run
        )

    def _story_embedder(self) -> Any:
        """The vector rule's thresholds are measured with USE; the hashing stand-in's cosines
        mean something else, so with it stories keep MinHash alone."""
        if self.settings.story_vectors != "off" and self.settings.embedder == "use":
            return self.app.embedder
        return None

    # --- start -----------------------------------------------------------------------------

    def prepare(self, *, exclusive: bool, watchlists: bool = True) -> None:
        """Check the database, schema, watchlists and sources before any work.

        `monitor run` passes `watchlists=False` and loads them in `run()` once the health
        listener is up: training the watchlists' models takes seconds, and /livez should answer
        meanwhile (/readyz says "not ready" until the watchlists are loaded)."""
        if "MONITOR_DELIVER_MAX_ATTEMPTS" in os.environ:
            log.warning(
                "MONITOR_DELIVER_MAX_ATTEMPTS is no longer read: alerts are retried for "
                "MONITOR_DELIVER_RETRY_HOURS (default 24) from when they were first due"
            )
        path = db.sqlite_path(self.settings.db_url)
        if exclusive and path is not None:
            from monitor.store.replicas import DatabaseInUse, SqliteInstanceLock

            self._lock = SqliteInstanceLock(path)
            try:
                self._lock.acquire()
            except DatabaseInUse as exc:
                raise StartupError(str(exc)) from None
        if self.settings.migrate_on_start or (path is not None and not path.exists()):
            # A fresh embedded database is created on first run; PostgreSQL migrates on request.
            db.upgrade(self.settings.db_url)
        try:
            current = db.schema_is_current(self.engine)
        except Exception as exc:
            raise StartupError(f"cannot reach the database: {exc}") from exc
        if not current:
            raise StartupError(
                "the database schema is not at the current version: run `monitor db upgrade` "
                "(or set MONITOR_MIGRATE_ON_START=true)"
            )
        if not self.one_shot:  # the feedback tick's starting point (a one-shot poll has none)
            from monitor.store import feedback as feedback_store

            self._feedback_seen = feedback_store.version(self.engine)
        if watchlists:
            self.load_watchlists()
        self.sync_sources(force=True)

    def load_watchlists(self) -> None:
        errors = self.registry.reload()
        for error in errors:
            log.error("watchlist invalid", error=str(error))
        log.info("watchlists loaded", watchlists=sorted(self.registry.watchlists))

    def sync_sources(self, *, force: bool = False) -> None:
        """Follow sources.yaml when it changed; a broken file keeps the last good sources."""
        path = self.settings.sources_path
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = None
        if not force and mtime == self._sources_mtime:
            return
        self._sources_mtime = mtime
        digest = self._sources_digest(path)
        if digest is not None and digest == sources.synced_digest(self.engine):
            # The table follows this very file already (this process or another synced it):
            # parsing 500 sources with ruamel takes longer than polling them when unchanged.
            log.debug("sources unchanged since the last sync", file=str(path))
            return
        from monitor.sources import SourcesError, load_sources

        try:
            configs = load_sources(path)
        except SourcesError as exc:
            for line in exc.errors:
                log.error("sources file invalid; keeping the last good sources", error=line)
            if force and not self._has_sources():
                raise StartupError("no valid sources file:\n" + "\n".join(exc.errors)) from exc
            return
        # Replicas starting together insert the same new sources; the loser reads again.
        sources.sync_from_config(self.engine, configs, utcnow(), digest=digest)
        log.info("sources synced", sources=len(configs), file=str(path))

    @staticmethod
    def _sources_digest(path: Path) -> str | None:
        """What identifies a synced file: its bytes and the rules that map it to rows (a
        new monitor version syncs again), None when it cannot be read (the load says why)."""
        try:
            data = path.read_bytes()
        except OSError:
            return None
        rules = f"{__version__}/{sources.SYNC_RULES}\0".encode()
        return hashlib.sha256(rules + data).hexdigest()

    def _has_sources(self) -> bool:
        return sources.has_sources(self.engine)

    def _count(self, report: PollReport) -> None:
        for preview in report.previews:  # --dry-run: show what would have been sent
            print(f"[dry run] would send:\n{preview}\n", flush=True)
        if self.one_shot:
            return
        self.metrics.observe_poll(
            report.status,
            report.seconds,
            error_kind=report.error_kind,
            new=report.new,
            updated=report.updated,
            alerts=report.alerts,
            matches=len(report.matches),
        )

    # --- ticks -----------------------------------------------------------------------------

    async def poll_tick(self) -> None:
        await self._timed("poll", self._poll_tick)

    async def _poll_tick(self) -> None:
        await asyncio.to_thread(self.sync_sources)
        await self.poller.poll_due()

    async def deliver_tick(self) -> None:
        await self._timed("deliver", self.dispatcher.tick)

    async def heartbeat_tick(self) -> None:
        await self._timed("heartbeat", self._heartbeat)

    async def stories_tick(self) -> None:
        """Merge stories two replicas started at once; prune old band rows."""
        await self._timed("stories", self._stories)

    async def _stories(self) -> None:
        if self.dry_run:
            return
        from monitor.store import stories

        merged, pruned = await asyncio.to_thread(
            stories.stories_tick,
            self.engine,
            self.settings.story_window_hours,
            should_stop=lambda: self.health.draining,
        )
        if merged or pruned:
            log.info("stories upkeep", merged=merged, pruned=pruned)

    async def feedback_tick(self) -> None:
        """Desk feedback changed since the models were fitted: fit them again."""
        await self._timed("feedback", self.retrain_if_feedback_changed)

    async def retrain_if_feedback_changed(self) -> bool:
        if self.dry_run:
            return False
        from monitor.store import feedback as feedback_store

        seen = await asyncio.to_thread(feedback_store.version, self.engine)
        if seen == self._feedback_seen:
            return False
        first = self._feedback_seen is None
        self._feedback_seen = seen
        if first:  # the models of start-up already include it
            return False
        await asyncio.to_thread(self.registry.retrain)
        self.feedback_generation += 1
        log.info("watchlist models refitted after desk feedback")
        return True

    async def _heartbeat(self) -> None:
        from monitor.store import replicas

        def beat() -> None:
            replicas.heartbeat(self.engine, self.owner, version=__version__, now=utcnow())

        await asyncio.to_thread(beat)

    async def _timed(self, job: str, func: Any) -> None:
        started = time.monotonic()
        self.health.heartbeat = started
        try:
            await func()
        except Exception as exc:
            log.error("tick failed", job=job, error=str(exc).splitlines()[0][:500])
        finally:
            self.metrics.observe_tick(job, time.monotonic() - started)

    # --- run / stop ------------------------------------------------------------------------

    async def run(self, *, stop: asyncio.Event | None = None) -> int:
        """Run until SIGTERM/SIGINT (or `stop`), then drain and exit within the grace period."""
        from monitor.scheduler import build_scheduler

        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        web = await self._start_web()
        if self.registry.reloads_ok + self.registry.reloads_error == 0:  # not loaded yet
            await asyncio.to_thread(self.load_watchlists)  # models train while /livez answers
        socket = await self._start_socket_mode()
        scheduler = build_scheduler(self)
        scheduler.start()
        watcher = (
            asyncio.create_task(self.registry.watch(stop))
            if self.settings.watchlists_reload
            else None
        )
        log.info(
            "monitor started",
            replica=self.owner,
            version=__version__,
            http_port=self.settings.http_port,
            dry_run=self.dry_run,
        )
        await stop.wait()
        log.info("shutting down: draining in-flight work")
        self.health.draining = True
        scheduler.pause()
        grace = self.settings.shutdown_grace_seconds
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(self.poller.drain(grace * 0.6), self.dispatcher.drain()),
                timeout=grace,
            )
        # A drain cut short by the grace period (a loaded machine) must not leave source leases
        # for the next replica to wait out; a store still running is fenced off and refetched.
        with contextlib.suppress(Exception):
            await asyncio.to_thread(sources.release, self.engine, self.owner)
        scheduler.shutdown(wait=False)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        if socket is not None:
            await socket.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.feedback.drain(), timeout=2)
        if web is not None:
            with contextlib.suppress(Exception):
                await web.stop()
        await self.aclose()
        log.info("monitor stopped")
        return 0

    async def _start_web(self) -> Any:
        if self.settings.http_port < 0:
            return None
        from monitor.web import WebServer

        server = WebServer(self)
        await server.start()
        return server

    async def _start_socket_mode(self) -> Any:
        """Clicks over Slack Socket Mode when an app token is set (no public URL needed)."""
        if self.settings.slack_app_token is None or self.dry_run:
            return None
        from monitor.feedback_socket import SocketListener

        listener = SocketListener(self.settings, self.feedback)
        try:
            await listener.start()
        except Exception as exc:  # the SDK reconnects later; alerts go on meanwhile
            log.error("slack socket mode did not connect", error=str(exc)[:300])
        return listener

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):  # a store still running ends before the engine
            await asyncio.to_thread(self.poller.close)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._forget_replica)
        with contextlib.suppress(Exception):
            await self.app.aclose()  # the fetcher, the notifiers' clients, the engine
        if self._lock is not None:
            self._lock.release()

    def _forget_replica(self) -> None:
        if self.one_shot:
            return
        from monitor.store import replicas

        replicas.forget(self.engine, self.owner)
