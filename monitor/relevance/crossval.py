"""k-fold cross-validation of a watchlist's model over its examples: every figure is
measured on examples the fold's model was not trained on.

An example that fails the query gate counts as "no alert" (the gate caps recall; gate recall
is reported on its own). Folds are stratified and seeded, so the report is repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.model import Watchlist
from monitor.relevance.classifier import TrainingError, train
from monitor.relevance.models import Prepared

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.1, 0.95, 0.1))


@dataclass(frozen=True, slots=True)
class Point:
    threshold: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int


@dataclass(frozen=True, slots=True)
class CvReport:
    watchlist_id: str
    folds: int
    examples: int
    relevant: int
    gate_passed: int
    gate_recall: float  # relevant examples that pass the query
    at_threshold: Point  # at the watchlist's min_confidence
    fold_points: tuple[Point, ...]  # per fold, at min_confidence
    curve: tuple[Point, ...]
    query_only: Point  # what the query alone would do (the behaviour without examples)
    confidences: tuple[float, ...]  # out-of-fold confidence per example (0 when gated out)

    @property
    def spread(self) -> tuple[float, float, float, float]:
        """(min P, max P, min R, max R) over the folds."""
        ps = [p.precision for p in self.fold_points]
        rs = [p.recall for p in self.fold_points]
        return min(ps), max(ps), min(rs), max(rs)


def point(threshold: float, y: np.ndarray, predicted: np.ndarray) -> Point:
    tp = int((y & predicted).sum())
    fp = int((~y & predicted).sum())
    fn = int((y & ~predicted).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Point(threshold, precision, recall, f1, tp, fp, fn)


def cross_validate(watchlist: Watchlist, prepared: Prepared, folds: int = 5) -> CvReport:
    """Out-of-fold confidences for every example; raises TrainingError when too small."""
    from sklearn.model_selection import StratifiedKFold

    y = prepared.labels
    if int(y.sum()) < folds or int((~y).sum()) < folds:
        raise TrainingError(
            f"{int(y.sum())} relevant and {int((~y).sum())} not-relevant examples: "
            f"{folds}-fold cross-validation needs at least {folds} of each"
        )
    confidence = np.zeros(len(y))
    fold_of = np.zeros(len(y), dtype=int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    names = tuple(name for name, _ in watchlist.signals)
    for number, (train_ix, test_ix) in enumerate(splitter.split(np.zeros(len(y)), y)):
        fit_ix = [int(i) for i in train_ix if prepared.passes[i]]
        model = train(
            watchlist.id,
            [prepared.samples[i] for i in fit_ix],
            [bool(y[i]) for i in fit_ix],
            threshold=watchlist.min_confidence,
            signal_names=names,
        )
        judged = [int(i) for i in test_ix if prepared.passes[i]]
        confidence[judged] = model.confidence([prepared.samples[i] for i in judged])
        fold_of[test_ix] = number
    threshold = watchlist.min_confidence
    predicted = prepared.passes & (confidence >= threshold)
    per_fold = tuple(
        point(threshold, y[fold_of == f], predicted[fold_of == f]) for f in range(folds)
    )
    curve = tuple(point(t, y, prepared.passes & (confidence >= t)) for t in THRESHOLDS)
    relevant = int(y.sum())
    return CvReport(
        watchlist_id=watchlist.id,
        folds=folds,
        examples=len(y),
        relevant=relevant,
        gate_passed=int(prepared.passes.sum()),
        gate_recall=int((y & prepared.passes).sum()) / relevant if relevant else 1.0,
        at_threshold=point(threshold, y, predicted),
        fold_points=per_fold,
        curve=curve,
        query_only=point(0.0, y, prepared.passes),
        confidences=tuple(float(c) for c in confidence),
    )
