"""The live set of watchlist models: built from the watchlists and their examples at start-up
and on every reload, and asked by the pipeline to judge what passed each gate.

Vectors of examples and articles come through a `VectorCache` (the database in the service,
so restarts, replicas and backtests never embed a text twice).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt

from monitor.logs import get_logger
from monitor.model import Article, Match, Watchlist
from monitor.query.matcher import Matcher, Signals, compile_matcher, compile_signals
from monitor.relevance.classifier import Sample, TrainingError, WatchlistModel, train
from monitor.relevance.embed import Embedder, article_text, text_key
from monitor.relevance.examples import Example, read_examples

log = get_logger(__name__)

Vector = npt.NDArray[np.float32]


class VectorCache(Protocol):
    def get_many(self, model: str, keys: Sequence[str]) -> dict[str, Vector]: ...

    def put_many(self, model: str, items: Mapping[str, Vector]) -> None: ...


@dataclass(slots=True)
class MemoryCache:
    """A cache in memory, for one command's run."""

    rows: dict[tuple[str, str], Vector] = field(default_factory=dict)

    def get_many(self, model: str, keys: Sequence[str]) -> dict[str, Vector]:
        return {k: self.rows[(model, k)] for k in keys if (model, k) in self.rows}

    def put_many(self, model: str, items: Mapping[str, Vector]) -> None:
        for key, vector in items.items():
            self.rows[(model, key)] = vector


def embed_articles(
    embedder: Embedder, cache: VectorCache | None, articles: Sequence[Article]
) -> list[Vector]:
    """One vector per article, embedding only what the cache does not hold."""
    texts = [article_text(a) for a in articles]
    keys = [text_key(embedder.name, t) for t in texts]
    known = cache.get_many(embedder.name, list(dict.fromkeys(keys))) if cache else {}
    missing = list(dict.fromkeys(k for k in keys if k not in known))
    if missing:
        first = {k: t for k, t in zip(keys, texts, strict=True)}
        fresh = embedder.embed([first[k] for k in missing])
        made = {k: fresh[i] for i, k in enumerate(missing)}
        if cache is not None:
            cache.put_many(embedder.name, made)
        known = {**known, **made}
    return [known[k] for k in keys]


def gate_of(watchlist: Watchlist) -> Matcher:
    """The watchlist's query as the model's gate; examples come from any outlet, so a
    `sources:` limit does not apply to them."""
    return compile_matcher([replace(watchlist, sources=())])


@dataclass(frozen=True, slots=True)
class Prepared:
    """A watchlist's examples as the model sees them."""

    examples: tuple[Example, ...]
    samples: tuple[Sample, ...]
    passes: npt.NDArray[np.bool_]  # passes the gate
    labels: npt.NDArray[np.bool_]


def prepare(
    watchlist: Watchlist,
    examples: Sequence[Example],
    embedder: Embedder,
    cache: VectorCache | None,
) -> Prepared:
    """Gate every example; embed only those that pass (the others are "no alert" whatever
    the model would say), through the cache."""
    gate, signals = gate_of(watchlist), compile_signals(watchlist)
    found = [gate.match(e.article) for e in examples]
    passing = [e.article for e, f in zip(examples, found, strict=True) if f]
    vectors = iter(embed_articles(embedder, cache, passing))
    blank = np.zeros(embedder.dim, dtype=np.float32)
    samples: list[Sample] = []
    for example, matches in zip(examples, found, strict=True):
        if matches:  # only what passes the gate is trained on or judged
            sample = Sample(
                next(vectors),
                signals.hits(example.article),
                matches[0].score,
                example.article.title,
            )
        else:
            sample = Sample(blank, (False,) * len(signals), 0.0, example.article.title)
        samples.append(sample)
    return Prepared(
        tuple(examples),
        tuple(samples),
        np.array([bool(f) for f in found], dtype=bool),
        np.array([e.relevant for e in examples], dtype=bool),
    )


def fit(watchlist: Watchlist, prepared: Prepared) -> WatchlistModel:
    index = np.flatnonzero(prepared.passes)
    return train(
        watchlist.id,
        [prepared.samples[i] for i in index],
        [bool(prepared.labels[i]) for i in index],
        threshold=watchlist.min_confidence,
        signal_names=tuple(name for name, _ in watchlist.signals),
        total_examples=len(prepared.examples),
        total_relevant=int(prepared.labels.sum()),
    )


@dataclass(frozen=True, slots=True)
class RelevanceModels:
    """Models by watchlist id, with what judging needs; empty when no watchlist has examples."""

    embedder: Embedder | None = None
    models: Mapping[str, WatchlistModel] = field(default_factory=dict)
    signals: Mapping[str, Signals] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)  # watchlist id: why no model

    def wants_vector(self, matches: Iterable[Match]) -> bool:
        return any(m.watchlist_id in self.models for m in matches)

    def judge(
        self, article: Article, vector: Vector | None, matches: Sequence[Match]
    ) -> list[Match]:
        """Every match, with the model's judgement attached where the watchlist has one."""
        out: list[Match] = []
        for match in matches:
            model = self.models.get(match.watchlist_id)
            if model is None or vector is None:
                out.append(match)
                continue
            signals = self.signals[match.watchlist_id].hits(article)
            sample = Sample(vector, signals, match.score, article.title)
            out.append(match.with_judgement(model.judge(sample)))
        return out


class LazyRelevanceModels(RelevanceModels):
    """Models trained on first use: a one-shot poll whose sources are all new (a catch-up
    stores and alerts nobody) never needs them, so it never pays for training, scikit-learn or
    the text model. The service trains at start-up instead (the first alert must not wait)."""

    __slots__ = ("_build", "_built", "_lock")
    _build: Callable[[], RelevanceModels]
    _built: RelevanceModels | None
    _lock: threading.Lock

    def __init__(self, build: Callable[[], RelevanceModels]) -> None:
        object.__setattr__(self, "_build", build)
        object.__setattr__(self, "_built", None)
        object.__setattr__(self, "_lock", threading.Lock())

    @property
    def pending(self) -> bool:
        return self._built is None

    def _get(self) -> RelevanceModels:
        with self._lock:
            built = self._built
            if built is None:
                built = self._build()
                object.__setattr__(self, "_built", built)
            return built

    @property  # type: ignore[override]
    def embedder(self) -> Embedder | None:
        return self._get().embedder

    @property  # type: ignore[override]
    def models(self) -> Mapping[str, WatchlistModel]:
        return self._get().models

    @property  # type: ignore[override]
    def signals(self) -> Mapping[str, Signals]:
        return self._get().signals

    @property  # type: ignore[override]
    def problems(self) -> Mapping[str, str]:
        return self._get().problems


def accepted(matches: Iterable[Match]) -> tuple[Match, ...]:
    """The matches that alert: the query's, unless the watchlist's model said no."""
    return tuple(m for m in matches if m.judgement is None or m.judgement.relevant)


ExampleSource = Callable[[Watchlist], Sequence[Example]]


def file_examples(watchlist: Watchlist) -> list[Example]:
    """The watchlist's examples file (already validated by the loader; bad lines are skipped)."""
    if watchlist.examples is None:
        return []
    found, _ = read_examples(watchlist.examples)
    return found


def train_models(
    watchlists: Iterable[Watchlist],
    embedder: Embedder,
    cache: VectorCache | None,
    source: ExampleSource = file_examples,
) -> RelevanceModels:
    """A model for every watchlist with examples; one that cannot be trained is reported
    and falls back to its query alone (so a bad examples file never stops alerts)."""
    models: dict[str, WatchlistModel] = {}
    signals: dict[str, Signals] = {}
    problems: dict[str, str] = {}
    for wl in watchlists:
        examples = source(wl)
        if not examples:
            continue
        started = time.perf_counter()
        try:
            models[wl.id] = fit(wl, prepare(wl, examples, embedder, cache))
        except TrainingError as exc:
            problems[wl.id] = str(exc)
            log.error("watchlist_model_not_trained", watchlist=wl.id, error=str(exc))
            continue
        signals[wl.id] = compile_signals(wl)
        stats = models[wl.id].stats
        log.info(
            "watchlist_model_trained",
            watchlist=wl.id,
            examples=stats.examples,
            relevant=stats.relevant,
            trained_on=stats.trained_on,
            seconds=round(time.perf_counter() - started, 3),
            embedder=embedder.name,
        )
    return RelevanceModels(embedder, models, signals, problems)
