"""Measuring watchlists and story grouping against labels (pure): the logic behind
`monitor watchlists eval` and `monitor stories test|eval`, kept out of the commands so tests and
benchmarks call the same code."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor import dedup
from monitor.corpus import CorpusItem
from monitor.model import Match
from monitor.query.explain import Explanation
from monitor.query.matcher import Matcher


@dataclass(frozen=True, slots=True)
class Score:
    watchlist: str
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    score: Score
    misses: list[tuple[CorpusItem, Explanation]]
    false_alarms: list[tuple[CorpusItem, Explanation]]


def label_key(watchlist_id: str, row: dict[str, Any]) -> str | None:
    """Labels may name a watchlist `un-mission` or `un_mission`."""
    for key in (watchlist_id, watchlist_id.replace("-", "_")):
        if key in row:
            return key
    return None


def evaluate(
    matcher: Matcher,
    watchlist_ids: list[str],
    items: list[CorpusItem],
    labels: dict[str, dict[str, Any]],
    judged: Mapping[str, Sequence[Match]] | None = None,
) -> list[Outcome]:
    """Confusion counts per watchlist over the labelled items, with each miss explained.

    `judged` (item id: matches with the models' judgements) replaces the query's own matches
    for watchlists with models; a match the model rejected counts as no alert."""
    labelled = [item for item in items if item.id in labels]
    if judged is None:
        results = {i.id: {m.watchlist_id for m in matcher.match(i.article)} for i in labelled}
    else:
        results = {
            i.id: {
                m.watchlist_id
                for m in judged.get(i.id, ())
                if m.judgement is None or m.judgement.relevant
            }
            for i in labelled
        }
    outcomes: list[Outcome] = []
    for wid in watchlist_ids:
        tp = fp = fn = 0
        misses: list[tuple[CorpusItem, Explanation]] = []
        alarms: list[tuple[CorpusItem, Explanation]] = []
        for item in labelled:
            key = label_key(wid, labels[item.id])
            if key is None:
                continue
            expected = bool(labels[item.id][key])
            got = wid in results[item.id]
            if expected and got:
                tp += 1
            elif got:
                fp += 1
                alarms.append((item, _why(matcher, item, wid, judged)))
            elif expected:
                fn += 1
                misses.append((item, _why(matcher, item, wid, judged)))
        outcomes.append(Outcome(Score(wid, tp, fp, fn), misses, alarms))
    return outcomes


def _why(
    matcher: Matcher,
    item: CorpusItem,
    watchlist_id: str,
    judged: Mapping[str, Sequence[Match]] | None,
) -> Explanation:
    """The query's explanation, with the model's reason when the model decided."""
    why = matcher.explain(item.article, watchlist_id)
    for match in (judged or {}).get(item.id, ()):
        if match.watchlist_id == watchlist_id and match.judgement is not None:
            return replace(why, reason=f"passed the query; {match.judgement.reason}")
    return why


def group(
    items: Iterable[CorpusItem],
    window_hours: float,
    on_item: Callable[[], None] | None = None,
    embeddings: Mapping[str, dedup.Embedding] | None = None,
) -> dict[str, str]:
    """Article id → story key, assigning in publication order as ingest would (`on_item` is
    called after each one: a progress bar). With `embeddings` (article id → vector and
    language) the vector signal joins the text one, as in the service."""
    latest = datetime.max.replace(tzinfo=UTC)
    ordered = sorted(items, key=lambda i: (i.article.published or latest, i.line))
    index = dedup.MemoryStoryIndex(timedelta(hours=window_hours))
    vectors = embeddings or {}
    for item in ordered:
        art = item.article
        fp = dedup.fingerprint(art.title, art.text, art.published)
        index.assign(item.id, fp, vectors.get(item.id))
        if on_item is not None:
            on_item()
    return {item.id: index.story_of(i) for i, item in enumerate(ordered)}


@dataclass(frozen=True, slots=True)
class PairScore:
    precision: float
    recall: float
    true_positive: int
    false_positive: int
    false_negative: int
    true_negative: int
    missed: tuple[tuple[str, str], ...]
    wrong: tuple[tuple[str, str], ...]


def score_pairs(stories: dict[str, str], pairs: Iterable[tuple[str, str, bool]]) -> PairScore:
    """Pair precision/recall: a pair is predicted same when both ids got one story key."""
    tp = fp = fn = tn = 0
    missed: list[tuple[str, str]] = []
    wrong: list[tuple[str, str]] = []
    for a, b, same in pairs:
        predicted = stories[a] == stories[b]
        if same and predicted:
            tp += 1
        elif same:
            fn += 1
            missed.append((a, b))
        elif predicted:
            fp += 1
            wrong.append((a, b))
        else:
            tn += 1
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return PairScore(precision, recall, tp, fp, fn, tn, tuple(missed), tuple(wrong))
