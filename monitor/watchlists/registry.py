"""The live watchlist set: reloaded when files change, swapped atomically, and the last good
version of a broken file kept.

Neither `reload()` nor `watch()` ever gives up: an unexpected failure (a file vanishing while
it is read, the watched folder swapped away) is logged and counted, the last good set stays in
effect, and the watcher starts again after `watch_restart_seconds`. `health()` is what the
status page and the readiness check show.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from monitor.logs import get_logger
from monitor.model import Watchlist
from monitor.query import syntax as q
from monitor.query.matcher import Matcher, compile_matcher
from monitor.relevance.models import LazyRelevanceModels, RelevanceModels
from monitor.watchlists.errors import WatchlistError
from monitor.watchlists.files import config_hash, load_watchlists

log = get_logger(__name__)

#: Builds the models of a watchlist set (the App's `train_models`).
Trainer = Callable[[Iterable[Watchlist]], RelevanceModels]

#: Pause before a watcher that failed starts again (seconds).
WATCH_RESTART_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class RegistryHealth:
    """What `/status` and `/readyz` show about the watchlists, as plain values."""

    loaded: bool  # a valid set has been loaded at least once (it stays in effect)
    count: int
    watching: bool  # the file watcher is running now
    restarting: bool  # the watcher failed and starts again after a pause
    reloads_ok: int
    reloads_error: int  # reloads that found invalid files or failed outright
    reload_failures: int  # reloads that failed outright (an exception, not a bad file)
    watch_failures: int  # times the watcher died and was restarted
    last_success: float | None  # Unix time of the last reload with every file valid
    last_errors: tuple[str, ...]  # "file:line: message" of the last reload
    last_reload_failure: str | None  # the exception of the last reload, if it failed outright
    last_watch_failure: str | None  # the exception that last stopped the watcher
    model_problems: tuple[str, ...] = ()  # "<id>: why its model is not trained" (query alone)

    @property
    def problems(self) -> tuple[str, ...]:
        """What an operator should look at now (empty when all is well): the last reload's
        errors, and the watcher's last failure while it is down and restarting."""
        out = list(self.last_errors) + list(self.model_problems)
        if self.restarting and self.last_watch_failure is not None:
            out.append(f"file watcher restarting after: {self.last_watch_failure}")
        return tuple(out)


class WatchlistRegistry:
    """The live watchlist set: swapped atomically on reload, last good kept per broken file."""

    def __init__(
        self,
        directory: Path,
        *,
        safety_reload_seconds: float = 300.0,
        watch_restart_seconds: float = WATCH_RESTART_SECONDS,
        trainer: Trainer | None = None,
        lazy_models: bool = False,
    ) -> None:
        """`lazy_models`: train on first use, not on load (a one-shot poll; see
        `LazyRelevanceModels`)."""
        self.directory = directory
        self.lazy_models = lazy_models
        self.safety_reload_seconds = safety_reload_seconds
        self.watch_restart_seconds = watch_restart_seconds
        self._state: tuple[dict[str, Watchlist], Matcher, RelevanceModels] = (
            {},
            compile_matcher([]),
            RelevanceModels(),
        )
        self.trainer = trainer
        self.loaded = False
        self.reloads_ok = 0
        self.reloads_error = 0
        self.reload_failures = 0
        self.watch_failures = 0
        self.watching = False
        self.restarting = False
        self.last_success: float | None = None
        self.last_errors: list[WatchlistError] = []
        self.last_reload_failure: str | None = None  # cleared by the next reload that works
        self.last_watch_failure: str | None = None
        self.config_hash = ""
        # The watcher and the console (after a save) may reload at once: one at a time, so a
        # second reload sees the first one's result and does not train the models again.
        self._reload_lock = threading.Lock()

    @property
    def watchlists(self) -> dict[str, Watchlist]:
        return self._state[0]

    @property
    def matcher(self) -> Matcher:
        return self._state[1]

    @property
    def relevance(self) -> RelevanceModels:
        """The watchlists' models (empty without examples), swapped with the watchlists."""
        return self._state[2]

    def _model_problems(self) -> Mapping[str, str]:
        """Known problems only: asking for health never trains lazy models."""
        models = self.relevance
        if isinstance(models, LazyRelevanceModels) and models.pending:
            return {}
        return models.problems

    def health(self) -> RegistryHealth:
        return RegistryHealth(
            loaded=self.loaded,
            count=len(self.watchlists),
            watching=self.watching,
            restarting=self.restarting,
            reloads_ok=self.reloads_ok,
            reloads_error=self.reloads_error,
            reload_failures=self.reload_failures,
            watch_failures=self.watch_failures,
            last_success=self.last_success,
            last_errors=tuple(str(e) for e in self.last_errors),
            last_reload_failure=self.last_reload_failure,
            last_watch_failure=self.last_watch_failure,
            model_problems=tuple(
                f"{wid}: model not trained, the query alone decides: {why}"
                for wid, why in sorted(self._model_problems().items())
            ),
        )

    def _train(self, watchlists: dict[str, Watchlist]) -> RelevanceModels:
        trainer = self.trainer
        assert trainer is not None
        if self.lazy_models:
            chosen = list(watchlists.values())
            return LazyRelevanceModels(lambda: trainer(chosen))
        return trainer(watchlists.values())

    def retrain(self) -> None:
        """Fit the models again on the same watchlists (their examples changed outside the
        files: desk feedback), then swap them in."""
        if self.trainer is None:
            return
        watchlists, matcher, _ = self._state
        models = self._train(watchlists)
        if self._state[0] is watchlists:  # a reload swapped in meanwhile: its models stand
            self._state = (watchlists, matcher, models)

    def reload(self) -> list[WatchlistError]:
        """Re-read every file; keep the previous version of a watchlist whose file broke.

        Never raises: a reload that fails outright keeps the whole last good set and is
        reported as one error on the folder (and counted in `reload_failures`).
        """
        try:
            with self._reload_lock:
                return self._reload()
        except Exception as exc:
            self.reload_failures += 1
            self.reloads_error += 1
            self.last_reload_failure = f"{type(exc).__name__}: {exc}"
            error = WatchlistError(
                str(self.directory),
                None,
                f"reload failed ({type(exc).__name__}: {exc}); the last good watchlists stay "
                "in effect",
            )
            self.last_errors = [error]
            log.error("watchlist_reload_failed", error=str(error), exc_info=exc)
            return [error]

    def _reload(self) -> list[WatchlistError]:
        loaded, errors = load_watchlists(self.directory)
        self.last_reload_failure = None
        previous = self._state[0]
        merged = dict(loaded)
        for err in errors:
            path = Path(err.file)
            wid = path.stem
            if (
                wid in previous
                and wid not in merged
                and path.exists()
                and path.parent == self.directory
            ):
                merged[wid] = previous[wid]
        if not self.directory.is_dir():
            merged = dict(previous)
        try:
            matcher = compile_matcher(merged.values())
        except q.QueryError as exc:  # cannot happen for validated files; keep serving
            errors.append(WatchlistError(str(self.directory), None, f"compile failed: {exc}"))
            matcher = self._state[1]
            merged = dict(previous)
        digest = config_hash(self.directory)
        models = self._state[2]
        if self.trainer is not None and (digest != self.config_hash or merged != previous):
            models = self._train(merged)  # examples changed: retrain, then swap
        self._state = (merged, matcher, models)
        self.config_hash = digest
        self.last_errors = errors
        if errors:
            self.reloads_error += 1
            for err in errors:
                log.error("watchlist_invalid", error=str(err), file=err.file, line=err.line)
        else:
            self.reloads_ok += 1
            self.loaded = True
            self.last_success = time.time()
        log.info(
            "watchlists_loaded",
            count=len(merged),
            errors=len(errors),
            config_hash=self.config_hash,
            ids=sorted(merged),
        )
        return errors

    async def watch(self, stop: asyncio.Event, *, force_polling: bool | None = None) -> None:
        """Reload on file changes until `stop`; a watcher that fails is restarted, never lost.

        A safety-net reload every `safety_reload_seconds` catches what events miss.
        """

        async def safety_net() -> None:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), self.safety_reload_seconds)
                except TimeoutError:
                    await asyncio.to_thread(self.reload)

        net = asyncio.create_task(safety_net())
        try:
            while not stop.is_set():
                try:
                    self.watching = True
                    await self._watch_files(stop, force_polling)
                    if stop.is_set():
                        break
                    raise RuntimeError("the file watcher ended without being stopped")
                except Exception as exc:
                    self.watch_failures += 1
                    self.last_watch_failure = f"{type(exc).__name__}: {exc}"
                    log.error(
                        "watchlist_watcher_failed",
                        error=self.last_watch_failure,
                        failures=self.watch_failures,
                        restart_in_seconds=self.watch_restart_seconds,
                        exc_info=exc,
                    )
                finally:
                    self.watching = False
                self.restarting = True
                try:  # a pause, so a persistent failure does not spin
                    await asyncio.wait_for(stop.wait(), self.watch_restart_seconds)
                except TimeoutError:
                    pass
                finally:
                    self.restarting = False
                if not stop.is_set():
                    await asyncio.to_thread(self.reload)  # catch up on what changed meanwhile
        finally:
            net.cancel()

    async def _watch_files(self, stop: asyncio.Event, force_polling: bool | None) -> None:
        """One run of the folder watcher (watching the folder: editors replace by rename)."""
        from watchfiles import awatch

        async for changes in awatch(
            self.directory,
            stop_event=stop,
            debounce=400,
            step=50,
            force_polling=force_polling,
            recursive=False,
        ):
            names = {Path(path).name for _, path in changes}
            if any(
                n.endswith((".yaml", ".yml", ".jsonl")) and n != "sources.yaml" for n in names
            ):
                await asyncio.to_thread(self.reload)
