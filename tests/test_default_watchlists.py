"""The shipped watchlists against the labelled dev corpus: a regression here fails CI.

The floors are the figures reached when the watchlists were written (see docs/watchlists.md);
raise them when a change improves the rules, never lower them to make a change pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.corpus import read_articles, read_labels
from monitor.evaluation import Outcome, evaluate
from monitor.query.matcher import compile_matcher
from monitor.watchlists import load_watchlists
from tests.support.paths import CORPUS

REPO = Path(__file__).resolve().parents[1]

FLOORS = {  # watchlist: (precision, recall) reached on labels-dev.jsonl
    "un-mission": (25 / 27, 25 / 27),
    "leader-correspondence": (1.0, 1.0),
    "missile-tests": (32 / 34, 1.0),
}


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    watchlists, errors = load_watchlists(REPO / "watchlists")
    assert errors == []
    ids = sorted(FLOORS)
    matcher = compile_matcher([watchlists[i] for i in ids])
    items = list(read_articles(CORPUS / "articles.jsonl"))
    labels = read_labels(CORPUS / "labels-dev.jsonl")
    return {o.score.watchlist: o for o in evaluate(matcher, ids, items, labels)}


@pytest.mark.parametrize("watchlist", sorted(FLOORS))
def test_precision_and_recall_stay_at_or_above_the_floor(
    outcomes: dict[str, Outcome], watchlist: str
) -> None:
    score = outcomes[watchlist].score
    precision, recall = FLOORS[watchlist]
    assert score.tp + score.fn > 10, "the labels must hold positives for this watchlist"
    assert score.precision >= precision - 1e-9, outcomes[watchlist].false_alarms
    assert score.recall >= recall - 1e-9, outcomes[watchlist].misses
    assert score.precision >= 0.9 and score.recall >= 0.9


def test_hard_cases_from_the_label_notes(outcomes: dict[str, Outcome]) -> None:
    """Traps named in the notes stay out: Hwasong housing, UN Command, FM-level greetings."""
    alarms = {item.id for o in outcomes.values() for item, _ in o.false_alarms}
    for trap in [
        "k3111498202",  # 'Hwasong' housing district
        "k53f0495b48",
        "r7ee46fa13d",  # UN Command talks, not the DPRK UN mission
        "rc711921462",
        "k0f0c296c5b",  # foreign-minister greeting
        "kd3aaf570da",
        "k8c76c74194",  # party-to-party message
        "k277fc075a9",  # Russian Security Council secretary visit
        "fd1d7d9c4e3",  # ROK lunar orbiter launch (Korean)
        "r78a9e60dbf",  # South Korean missile mishap
        "r8a9286a4f2",  # warning ahead of an expected launch
        "kacca94f37e",  # artillery firing, not a missile test
    ]:
        assert trap not in alarms, trap
