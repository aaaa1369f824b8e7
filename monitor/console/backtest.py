"""Backtests: what a draft watchlist would have alerted on among the stored articles of the
last N days, beside what the saved version did, judged by each version's model as ingest
judges; and each version's precision and recall over its examples (cross-validated). Examples
are the service's: the watchlist's file plus the desk's labels in effect.

Runs on a worker thread (never the event loop), streams its progress, and stops when the
browser goes away. Models and cross-validation reports are cached per model key (the parts
of a watchlist that change its model, plus the examples file's content), since training and
five folds cost seconds with the real text model.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitor.model import Match, Watchlist
from monitor.query.matcher import Matcher, compile_matcher
from monitor.relevance.classifier import TrainingError
from monitor.relevance.models import (
    ExampleSource,
    RelevanceModels,
    VectorCache,
    accepted,
    embed_articles,
    file_examples,
    prepare,
    train_models,
)
from monitor.store import console as store
from monitor.store.articles import StoredArticle

if TYPE_CHECKING:
    from monitor.relevance.crossval import CvReport
    from monitor.relevance.embed import Embedder
    from monitor.store.db import Engine

LIST_LIMIT = 100  # articles shown per list (all are counted)
KEPT_LIMIT = 30  # unchanged alerts shown (the diff is what matters)
REVERSE_LIMIT = 300  # query misses the model is asked about, per backtest


def model_key(watchlist: Watchlist, embedder_name: str) -> str:
    """What a watchlist's model depends on: its gate, signals, threshold and examples."""
    digest = hashlib.sha256()
    for part in (
        embedder_name,
        watchlist.query,
        watchlist.exclude or "",
        repr(watchlist.signals),
        repr(watchlist.min_confidence),
        repr(sorted(watchlist.aliases.items())),
    ):
        digest.update(part.encode() + b"\0")
    if watchlist.examples is not None:
        try:
            digest.update(watchlist.examples.read_bytes())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Quality:
    """Cross-validated figures of a watchlist over its examples, or why there are none."""

    report: CvReport | None
    problem: str | None
    seconds: float


class Models:
    """Trained models and cross-validation reports, cached by model key (LRU)."""

    def __init__(
        self,
        embedder: Callable[[], Embedder],
        vectors: VectorCache,
        live: Callable[[], tuple[Mapping[str, Watchlist], RelevanceModels]] | None = None,
        *,
        examples: ExampleSource = file_examples,
        generation: Callable[[], object] = lambda: 0,
    ) -> None:
        self._embedder = embedder
        self.vectors = vectors
        self._live = live  # the registry's watchlists and models: never trained twice
        # Where examples come from: the service's own source (the file plus the desk's
        # labels), so a draft is judged by the model it would get when it goes live.
        self._examples = examples
        # Changes whenever the live models were refitted on new desk feedback (cache keys).
        self._generation = generation
        self._models: OrderedDict[str, RelevanceModels] = OrderedDict()
        self._quality: OrderedDict[str, Quality] = OrderedDict()
        # The saved version's verdict per article, for the backtest being typed against:
        # (model key, since) -> {article id: (its match, alerted)}. Only the draft changes
        # from keystroke to keystroke, so only the draft is matched and judged again.
        self.saved_runs: OrderedDict[tuple[str, str], dict[int, tuple[Match, bool]]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        return self._embedder()

    def key(self, watchlist: Watchlist) -> str:
        return f"{model_key(watchlist, self.embedder.name)}:{self._generation()}"

    def models(self, watchlist: Watchlist) -> RelevanceModels:
        """The watchlist's model (empty without examples, file or desk); trained once per
        model key."""
        if self._live is not None:
            watchlists, live = self._live()
            if watchlists.get(watchlist.id) == watchlist and (
                watchlist.id in live.models or watchlist.id in live.problems
            ):
                return live
        key = self.key(watchlist)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        built = train_models([watchlist], self.embedder, self.vectors, source=self._examples)
        with self._lock:
            self._models[key] = built
            while len(self._models) > 8:
                self._models.popitem(last=False)
        return built

    def cached_quality(self, watchlist: Watchlist) -> Quality | None:
        with self._lock:
            return self._quality.get(self.key(watchlist))

    def quality(self, watchlist: Watchlist) -> Quality:
        """5-fold cross-validation over the examples (seconds; cached per model key)."""
        from monitor.relevance.crossval import cross_validate

        cached = self.cached_quality(watchlist)
        if cached is not None:
            return cached
        started = time.perf_counter()
        examples = self._examples(watchlist)
        if not examples:
            quality = Quality(None, "no examples: the query alone decides", 0.0)
        else:
            try:
                report = cross_validate(
                    watchlist, prepare(watchlist, examples, self.embedder, self.vectors)
                )
                quality = Quality(report, None, time.perf_counter() - started)
            except TrainingError as exc:
                quality = Quality(None, str(exc), time.perf_counter() - started)
        with self._lock:
            self._quality[self.key(watchlist)] = quality
            while len(self._quality) > 32:
                self._quality.popitem(last=False)
        return quality


@dataclass(frozen=True, slots=True)
class Hit:
    """One article of a backtest with the match that put it there (judged, if a model)."""

    article: StoredArticle
    match: Match
    why: str = ""  # for query misses the model liked: the smallest part that found nothing


@dataclass(slots=True)
class Backtest:
    days: float
    scanned: int = 0
    total: int = 0
    seconds: float = 0.0
    alerts: int = 0  # the draft's
    saved_alerts: int = 0
    gained: list[Hit] = field(default_factory=list)
    gained_count: int = 0
    lost: list[Hit] = field(default_factory=list)
    lost_count: int = 0
    kept: list[Hit] = field(default_factory=list)
    kept_count: int = 0
    rejected: list[Hit] = field(default_factory=list)  # passed the gate, the model said no
    rejected_count: int = 0
    reverse: list[Hit] = field(default_factory=list)  # the model says yes, the query said no
    reverse_checked: int = 0
    model_problem: str | None = None
    cancelled: bool = False
    has_saved: bool = True


def _add(items: list[Hit], hit: Hit) -> None:
    if len(items) < LIST_LIMIT:
        items.append(hit)


def run_backtest(
    engine: Engine,
    models: Models,
    draft: Watchlist,
    saved: Watchlist | None,
    *,
    since: datetime,
    days: float,
    saved_models: RelevanceModels | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Backtest:
    """Both versions over the same stored articles, newest first."""
    started = time.perf_counter()
    result = Backtest(days=days, has_saved=saved is not None)
    result.total = store.count_articles_since(engine, since)
    if progress is not None:
        progress(0, result.total)  # before the draft's model trains (a second or more)
    draft_models = models.models(draft)
    result.model_problem = draft_models.problems.get(draft.id)
    old_models = (
        saved_models if saved_models is not None else (models.models(saved) if saved else None)
    )
    draft_matcher = compile_matcher([draft])
    saved_matcher = compile_matcher([saved]) if saved is not None else None
    known: dict[int, tuple[Match, bool]] | None = None
    fresh: dict[int, tuple[Match, bool]] = {}
    if saved is not None:
        # Keyed by the version and the window's length: as the window slides, an article the
        # run has not seen (a new one) is judged afresh; the others keep their verdict.
        run_key = (models.key(saved) + saved.query, f"{days:g}")
        known = models.saved_runs.get(run_key)
    embedder = draft_models.embedder or (old_models.embedder if old_models else None)
    for chunk in store.iter_articles_since(engine, since):
        if cancelled is not None and cancelled():
            result.cancelled = True
            break
        _chunk(result, chunk, draft, draft_matcher, draft_models, saved_matcher, old_models,
               models.vectors, embedder, known, fresh)
        result.scanned += len(chunk)
        if progress is not None:
            progress(result.scanned, result.total)
    if saved is not None and not result.cancelled:
        models.saved_runs[run_key] = {**(known or {}), **fresh}
        while len(models.saved_runs) > 4:
            models.saved_runs.popitem(last=False)
    result.seconds = time.perf_counter() - started
    return result


def _chunk(
    result: Backtest,
    chunk: list[StoredArticle],
    draft: Watchlist,
    draft_matcher: Matcher,
    draft_models: RelevanceModels,
    saved_matcher: Matcher | None,
    saved_models: RelevanceModels | None,
    vectors: VectorCache,
    embedder: Embedder | None,
    known: dict[int, tuple[Match, bool]] | None,
    fresh: dict[int, tuple[Match, bool]],
) -> None:
    found = [draft_matcher.match(s.article) for s in chunk]
    old: list[list[Match]] = [
        saved_matcher.match(s.article)
        if saved_matcher is not None and (known is None or s.id not in known)
        else []
        for s in chunk
    ]
    reverse_ix: list[int] = []
    if draft_models.models and result.reverse_checked < REVERSE_LIMIT:
        for i, stored in enumerate(chunk):
            if not found[i] and draft_matcher.candidates(stored.article):
                reverse_ix.append(i)
        reverse_ix = reverse_ix[: REVERSE_LIMIT - result.reverse_checked]
    wanted = [
        i
        for i in range(len(chunk))
        if draft_models.wants_vector(found[i])
        or (saved_models is not None and saved_models.wants_vector(old[i]))
        or i in reverse_ix
    ]
    by_index = {}
    if wanted and embedder is not None:
        vecs = embed_articles(embedder, vectors, [chunk[i].article for i in wanted])
        by_index = dict(zip(wanted, vecs, strict=True))
    for i, stored in enumerate(chunk):
        vec = by_index.get(i)
        mine = draft_models.judge(stored.article, vec, found[i]) if found[i] else []
        old_alerts = _saved_verdict(stored, vec, old[i], saved_models, known, fresh)
        now_alerts = accepted(mine)
        result.alerts += bool(now_alerts)
        result.saved_alerts += bool(old_alerts)
        if now_alerts and old_alerts:
            result.kept_count += 1
            if len(result.kept) < KEPT_LIMIT:
                result.kept.append(Hit(stored, now_alerts[0]))
        elif now_alerts:
            result.gained_count += 1
            _add(result.gained, Hit(stored, now_alerts[0]))
        elif old_alerts:
            result.lost_count += 1
            _add(result.lost, Hit(stored, old_alerts[0]))
        if mine and not now_alerts:
            result.rejected_count += 1
            _add(result.rejected, Hit(stored, mine[0]))
    _reverse(result, [(chunk[i], by_index.get(i)) for i in reverse_ix], draft, draft_matcher,
             draft_models)


def _saved_verdict(
    stored: StoredArticle,
    vec: Any,
    matches: list[Match],
    models: RelevanceModels | None,
    known: dict[int, tuple[Match, bool]] | None,
    fresh: dict[int, tuple[Match, bool]],
) -> tuple[Match, ...]:
    """The saved version's alerting match of one article: remembered, or judged now (and
    remembered for the next keystroke)."""
    if known is not None and stored.id in known:
        seen = known[stored.id]
        return (seen[0],) if seen[1] else ()
    judged = models.judge(stored.article, vec, matches) if matches and models else matches
    alerts = accepted(judged)
    fresh[stored.id] = (
        (alerts[0] if alerts else judged[0], bool(alerts)) if judged else (_NONE, False)
    )
    return alerts


_NONE = Match("", "", 0.0, ())  # the saved version did not match this article


def _reverse(
    result: Backtest,
    items: list[tuple[StoredArticle, Any]],
    draft: Watchlist,
    matcher: Matcher,
    models: RelevanceModels,
) -> None:
    """Articles the query stopped although all its required words are there: would the
    model have alerted? Those are near misses the other way round."""
    for stored, vec in items:
        if vec is None:
            continue
        result.reverse_checked += 1
        probe = Match(draft.id, draft.name, 0.0, ())
        judged = models.judge(stored.article, vec, [probe])[0]
        if judged.judgement is not None and judged.judgement.relevant:
            why = matcher.explain(stored.article, draft.id).reason
            _add(result.reverse, Hit(stored, replace(judged, snippet=""), why))
