"""The live watchlist set: reloaded when files change, swapped atomically, and the last good
version of a broken file kept."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import structlog

from monitor.model import Watchlist
from monitor.query import syntax as q
from monitor.query.matcher import Matcher, compile_matcher
from monitor.watchlists.errors import WatchlistError
from monitor.watchlists.files import config_hash, load_watchlists

log = structlog.get_logger(__name__)


class WatchlistRegistry:
    """The live watchlist set: swapped atomically on reload, last good kept per broken file."""

    def __init__(self, directory: Path, *, safety_reload_seconds: float = 300.0) -> None:
        self.directory = directory
        self.safety_reload_seconds = safety_reload_seconds
        self._state: tuple[dict[str, Watchlist], Matcher] = ({}, compile_matcher([]))
        self.loaded = False
        self.reloads_ok = 0
        self.reloads_error = 0
        self.last_success: float | None = None
        self.last_errors: list[WatchlistError] = []
        self.config_hash = ""

    @property
    def watchlists(self) -> dict[str, Watchlist]:
        return self._state[0]

    @property
    def matcher(self) -> Matcher:
        return self._state[1]

    def reload(self) -> list[WatchlistError]:
        """Re-read every file; keep the previous version of a watchlist whose file broke."""
        loaded, errors = load_watchlists(self.directory)
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
        self._state = (merged, matcher)
        self.config_hash = config_hash(self.directory)
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
        """Reload on file changes (watching the folder: editors replace files by rename)."""
        from watchfiles import awatch

        async def safety_net() -> None:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), self.safety_reload_seconds)
                except TimeoutError:
                    await asyncio.to_thread(self.reload)

        net = asyncio.create_task(safety_net())
        try:
            async for changes in awatch(
                self.directory,
                stop_event=stop,
                debounce=400,
                step=50,
                force_polling=force_polling,
                recursive=False,
            ):
                names = {Path(path).name for _, path in changes}
                if any(n.endswith((".yaml", ".yml")) and n != "sources.yaml" for n in names):
                    await asyncio.to_thread(self.reload)
        finally:
            net.cancel()
