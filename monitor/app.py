"""The App: what every command and the service share, built once from settings, closed once.

Each part is made on first use, so a command pays only for what it touches: `monitor watchlists
check` never opens the database, `monitor health` never imports the ORM. The service and the
commands receive the App instead of reading settings or opening engines of their own.
"""

from __future__ import annotations

import contextlib
from functools import cached_property
from typing import TYPE_CHECKING, TextIO

from monitor.settings import Settings, get_settings

if TYPE_CHECKING:
    from collections.abc import Iterable

    from monitor.fetch import Fetcher
    from monitor.model import Watchlist
    from monitor.notify import Notifier
    from monitor.relevance.embed import Embedder
    from monitor.relevance.examples import Example
    from monitor.relevance.models import RelevanceModels, VectorCache
    from monitor.store.db import Engine
    from monitor.watchlists import WatchlistRegistry


class App:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        console: TextIO | None = None,
        notifiers: dict[str, Notifier] | None = None,
    ) -> None:
        """`notifiers` replaces the configured senders (`monitor demo` draws its alerts in the
        terminal and must never reach a real Slack or SMTP server)."""
        if settings is not None:
            self.__dict__["settings"] = settings
        if notifiers is not None:
            self.__dict__["notifiers"] = notifiers
        self._console = console
        self._fetcher: Fetcher | None = None
        #: Train the watchlists' models on first use instead of on load (`monitor poll --once`:
        #: a catch-up never judges, so it never needs them).
        self.lazy_models = False

    @cached_property
    def settings(self) -> Settings:
        """Read from the environment on first use (`monitor config check` reports bad values)."""
        return get_settings()

    @cached_property
    def engine(self) -> Engine:
        from monitor.store import db

        return db.open_engine(self.settings)

    @cached_property
    def watchlists(self) -> WatchlistRegistry:
        """The live watchlist set; loaded by `reload()` (the service) or on first use here."""
        from monitor.watchlists import WatchlistRegistry

        return WatchlistRegistry(
            self.settings.watchlists_dir, trainer=self.train_models, lazy_models=self.lazy_models
        )

    @cached_property
    def embedder(self) -> Embedder:
        from monitor.relevance.embed import make_embedder

        return make_embedder(self.settings.embedder)

    @cached_property
    def vectors(self) -> VectorCache:
        """Embeddings kept in the database (shared by restarts, replicas and backtests)."""
        from monitor.store.vectors import DatabaseVectors

        return DatabaseVectors(self.engine)

    def train_models(self, watchlists: Iterable[Watchlist]) -> RelevanceModels:
        """The models of the watchlists that have examples, from their files and the desk's
        feedback (run at start-up, on reload, and when feedback changed)."""
        from monitor.relevance.models import RelevanceModels, train_models

        self.forget_desk_labels()
        selected = [w for w in watchlists if self.has_examples(w)]
        if not selected:
            return RelevanceModels()
        return train_models(selected, self.embedder, self.vectors, source=self.examples)

    def _desk_labels(self) -> dict[str, int]:
        """Watchlist id → active desk labels; empty where there is no current database."""
        if "desk_labels" not in self.__dict__:
            try:
                from monitor.store import db, feedback

                current = db.schema_is_current(self.engine)
                self.__dict__["desk_labels"] = (
                    feedback.labelled_watchlists(self.engine) if current else {}
                )
            except Exception:  # no database here (a command on files alone)
                self.__dict__["desk_labels"] = {}
        labels: dict[str, int] = self.__dict__["desk_labels"]
        return labels

    def forget_desk_labels(self) -> None:
        self.__dict__.pop("desk_labels", None)

    def has_examples(self, watchlist: Watchlist) -> bool:
        return watchlist.examples is not None or watchlist.id in self._desk_labels()

    def examples(self, watchlist: Watchlist) -> list[Example]:
        """The examples file plus desk feedback (the desk wins on an article in both)."""
        from monitor.feedback import merge_examples
        from monitor.relevance.models import file_examples

        files = file_examples(watchlist)
        if watchlist.id not in self._desk_labels():
            return files
        from monitor.store import feedback

        return merge_examples(files, feedback.labelled_articles(self.engine, watchlist.id))

    @cached_property
    def notifiers(self) -> dict[str, Notifier]:
        from monitor.deliver import build_notifiers

        return build_notifiers(self.settings, self._console)

    @property
    def fetcher(self) -> Fetcher:
        """The one HTTP client; made inside the running event loop that will use it."""
        if self._fetcher is None:
            from monitor.fetch import Fetcher

            self._fetcher = Fetcher(self.settings)
        return self._fetcher

    async def aclose(self) -> None:
        """Close what was opened: the HTTP client, the notifiers' clients, the engine."""
        if self._fetcher is not None:
            await self._fetcher.aclose()
            self._fetcher = None
        if "notifiers" in self.__dict__:
            for notifier in self.notifiers.values():
                with contextlib.suppress(Exception):
                    await notifier.aclose()
            del self.__dict__["notifiers"]
        self.close()

    def close(self) -> None:
        """Close the engine (the synchronous part; commands without an event loop call this)."""
        if "engine" in self.__dict__:
            self.engine.dispose()
            del self.__dict__["engine"]
