"""The matcher's fast path (prefilter, `test` first, `collect` for matches, skipped children,
answers remembered per article) against the full evaluation (`evaluate` of every watchlist,
every child of every OR): the same decision, the same reason and the same evidence, on every
corpus article × every shipped and synthetic watchlist, and on generated queries."""

from __future__ import annotations

import pickle
import random
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.match import synthetic
from monitor.corpus import read_articles
from monitor.model import Article, Judgement, Match, Watchlist
from monitor.query.evaluate import (
    DEFAULT_FIELDS,
    FIELD_WEIGHT,
    CAlias,
    CField,
    CNear,
    CNode,
    COr,
    CRegex,
    CWords,
    Doc,
    Hit,
)
from monitor.query.matcher import Matcher, _score, compile_matcher, compile_signals
from monitor.textnorm import words
from monitor.watchlists import AlertSpec, load_watchlists
from tests.support.paths import CORPUS, REPO


def _articles() -> list[Article]:
    return [item.article for item in read_articles(CORPUS / "articles.jsonl")]


def _shipped() -> list[Watchlist]:
    found, errors = load_watchlists(REPO / "watchlists")
    assert not errors
    return list(found.values())


def _vocabulary(articles: list[Article]) -> list[str]:
    """Entity words drawn as benchmarks/relevance.py draws them for its synthetic watchlists."""
    freq: dict[str, int] = {}
    for article in articles:
        for word in set(words(article.title + " " + article.text)):
            freq[word] = freq.get(word, 0) + 1
    rare = sorted(w for w, n in freq.items() if 1 <= n <= 5 and len(w) > 3 and w.isalpha())
    common = sorted(w for w, n in freq.items() if 6 <= n <= 40 and len(w) > 3 and w.isalpha())
    return rare + common[: len(rare) // 10]


def _nodes(node: object) -> list[CNode]:
    """Every compiled node of a tree (aliases' members included)."""
    out: list[CNode] = [node]  # type: ignore[list-item]
    for name in ("children", "members"):
        for child in getattr(node, name, ()):
            out.extend(_nodes(child))
    for name in ("child", "left", "right"):
        if hasattr(node, name):
            out.extend(_nodes(getattr(node, name)))
    return out


def _same_everywhere(matcher: Matcher, articles: list[Article]) -> int:
    """Assert fast == full for each article and watchlist; return the number of matches."""
    matched = 0
    for article in articles:
        fast = matcher.match(article)
        assert fast == matcher.match_exhaustive(article), article.title
        matched += len(fast)
        fast_doc, full_doc = Doc(article), Doc(article)
        for item in matcher.compiled:
            # The same Match or the same typed Miss (kind and reason), without the prefilter.
            assert matcher._run(item, article, fast_doc) == matcher._run(
                item, article, full_doc, True
            ), (item.watchlist.id, article.title)
    return matched


def _positional(node: object) -> bool:
    """Whether a node has word positions (what NEAR accepts on its sides)."""
    if isinstance(node, CWords | CRegex | CAlias | CNear):
        return True
    if isinstance(node, CField):
        return _positional(node.child)
    return isinstance(node, COr) and all(_positional(c) for c in node.children)


def _same_nodes(trees: list[CNode], articles: list[Article]) -> None:
    """Node by node: `test` and `collect` agree with `evaluate`, `spans` with `positions`."""
    nodes = [n for tree in trees for n in _nodes(tree)]
    for article in articles:
        fast, full = Doc(article), Doc(article)
        for node in nodes:
            for fields in (DEFAULT_FIELDS, frozenset({0}), frozenset({1})):
                expected: list[Hit] = []
                truth = node.evaluate(full, fields, expected)
                assert node.test(fast, fields) is truth
                got: list[Hit] = []
                assert node.collect(fast, fields, got) is truth
                assert got == expected
                if _positional(node):
                    spans = node.spans(fast, fields)  # type: ignore[attr-defined]
                    assert spans == node.positions(full, fields)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_fast_path_equals_full_evaluation_on_the_corpus() -> None:
    """Every corpus article × the 3 shipped + 997 synthetic watchlists of the benchmarks."""
    articles = _articles()
    shipped = _shipped()
    extra = synthetic(997, _vocabulary(articles), random.Random(7))
    matcher = compile_matcher([*shipped, *extra])
    matched = _same_everywhere(matcher, articles)
    assert matched > 500  # the comparison covered matches, not only misses


@pytest.mark.slow
def test_every_node_of_the_shipped_watchlists_agrees_on_the_corpus() -> None:
    """Queries, excludes and signals, each node on its own, and the signals as features."""
    articles = _articles()
    shipped = _shipped()
    matcher = compile_matcher(shipped)
    trees: list[CNode] = []
    for item in matcher.compiled:
        trees.append(item.query)
        if item.exclude is not None:
            trees.append(item.exclude)
    signals = [compile_signals(w) for w in shipped]
    for s in signals:
        trees.extend(s._nodes)
    _same_nodes(trees, articles)
    fired = 0
    for article in articles:
        for s in signals:
            hits = s.hits(article)
            assert hits == s.hits_exhaustive(article)
            fired += sum(hits)
    assert fired > 100


def test_fast_path_equals_full_evaluation_on_a_corpus_sample() -> None:
    """The fast tier's share of the corpus comparison: every 15th article, every shipped and
    100 synthetic watchlists."""
    articles = _articles()
    extra = synthetic(100, _vocabulary(articles), random.Random(7))
    matcher = compile_matcher([*_shipped(), *extra])
    assert _same_everywhere(matcher, articles[::15]) > 20


def _unread(match: Match, name: str) -> bool:
    """Whether a match's evidence slot is still unset (a pending match not yet read)."""
    try:
        getattr(Match, name).__get__(match, Match)
    except AttributeError:
        return True
    return False


def test_matches_work_out_their_evidence_when_read_and_then_equal_the_full_evaluation() -> None:
    """The gate decides without evidence; read in any order, through `with_judgement` or a
    pickle, a pending match has the full evaluation's score, terms, snippet and highlights."""
    articles = _articles()[::5]
    matcher = compile_matcher(_shipped())
    judgement = Judgement(True, 0.9, 0.5)
    pending = 0
    for article in articles:
        fast = matcher.match(article)
        full = matcher.match_exhaustive(article)
        assert [m.watchlist_id for m in fast] == [m.watchlist_id for m in full]
        for i, (match, expected) in enumerate(zip(fast, full, strict=True)):
            if len(fast) == 1:  # one match needs no order, so nothing of it was read
                assert all(_unread(match, n) for n in ("score", "terms", "snippet"))
                pending += 1
            assert _unread(match, "snippet")  # ordering reads scores, never snippets
            if i % 3 == 0:
                assert (match.snippet, match.highlights) == (expected.snippet, expected.highlights)
                assert (match.score, match.terms) == (expected.score, expected.terms)
            elif i % 3 == 1:
                judged = match.with_judgement(judgement)
                assert judged == replace(expected, judgement=judgement)
                assert match == expected  # read through the copy, the same values
            else:
                assert pickle.loads(pickle.dumps(match)) == expected
    assert pending > 20


def _score_by_pairs(hits: list[Hit]) -> tuple[float, tuple[str, ...]]:
    """The scoring rule as first written (each hit against every credited range), the
    reference for `_score`'s one look-up per hit."""
    by_label: dict[str, list[Hit]] = {}
    for hit in hits:
        by_label.setdefault(hit[0], []).append(hit)
    order = sorted(by_label, key=lambda label: -max(h[3] - h[2] for h in by_label[label]))
    credited: tuple[list[tuple[int, int]], ...] = ([], [], [], [])
    kept: dict[str, float] = {}
    for label in order:
        fresh = [
            h
            for h in by_label[label]
            if not any(s <= h[2] and h[3] <= e for s, e in credited[h[1]])
        ]
        if fresh:
            kept[label] = max(FIELD_WEIGHT[h[1]] for h in fresh)
            for h in fresh:
                credited[h[1]].append((h[2], h[3]))
    return round(sum(kept.values()), 3), tuple(label for label in by_label if label in kept)


_HITS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d"]),
        st.integers(0, 3),
        st.integers(0, 12),
        st.integers(0, 4),
    ).map(lambda t: (t[0], t[1], t[2], t[2] + t[3])),
    max_size=14,
)


@settings(max_examples=300, deadline=None)
@given(_HITS)
def test_score_credits_text_once_as_the_pairwise_rule_does(hits: list[Hit]) -> None:
    score, terms = _score(hits)
    assert (score, terms) == _score_by_pairs(hits)
    assert type(score) is type(_score_by_pairs(hits)[0])


def test_score_equals_the_pairwise_rule_on_the_corpus() -> None:
    """On the hits of every shipped watchlist's matches (long alias lists, repeated terms)."""
    matcher = compile_matcher(_shipped())
    compared = 0
    for article in _articles()[::3]:
        doc = Doc(article)
        for item in matcher.compiled:
            hits: list[Hit] = []
            if item.query.evaluate(doc, DEFAULT_FIELDS, hits):
                assert _score(hits) == _score_by_pairs(hits)
                compared += len(hits) > 5
    assert compared > 50


# --------------------------------------------------------------- generated queries

_ALIASES = {
    "kim": ("Kim Jong Un", "Kim Jong-un", "Kim Dzong Un*", "김정은"),
    "dprk": ("North Korea", "DPRK", "Pyongyang", "북한", "北朝鮮"),
}
_WORDS = ["kim", "korea", "north", "missile", "missiles", "launch", "launched", "test", "un"]
_ATOMS = [
    *_WORDS,
    "launch*",
    "test*",
    "missil*",
    '"north korea"',
    '"missile launch"~2',
    '"test launch*"',
    "@kim",
    "@dprk",
    "북한",
    "발사",
    "北朝鮮",
    "/(?-i)\\bUN\\b/",
    "/launch(ed)?/",
    "title:missile",
    "summary:(korea OR 북한)",
    "source:agency",
    "url:example",
]
_TEXT = [*_WORDS, "Kim Jong-un", "North Korea's", "UN", "un", "북한이", "발사했다", "北朝鮮が", "x"]


def _query(rng: random.Random, depth: int = 0) -> str:
    if depth >= 3 or rng.random() < 0.35:
        return rng.choice(_ATOMS)
    kind = rng.choice(["AND", "OR", "OR", "NOT", "NEAR"])
    if kind == "NOT":
        return f"({_query(rng, depth + 1)} AND NOT {_query(rng, depth + 1)})"
    if kind == "NEAR":
        # NEAR takes positional sides: words, phrases, aliases, regexes, ORs of them.
        sides = [a for a in _ATOMS if not a.startswith(("source:", "url:"))]
        left = " OR ".join(rng.sample(sides, rng.randint(1, 3)))
        right = " OR ".join(rng.sample(sides, rng.randint(1, 3)))
        return f"(({left}) NEAR/{rng.randint(0, 6)} ({right}))"
    parts = [_query(rng, depth + 1) for _ in range(rng.randint(2, 4))]
    return "(" + f" {kind} ".join(parts) + ")"


def _watchlist(i: int, query: str, exclude: str | None) -> Watchlist:
    return Watchlist(
        id=f"g{i}",
        name=f"g{i}",
        description="",
        query=query,
        exclude=exclude,
        min_score=0.0,
        sources=(),
        alert=AlertSpec(),
        path=Path(f"g{i}.yaml"),
        aliases=_ALIASES,
    )


_MATCHERS: list[Matcher] = []


def _generated() -> Matcher:
    """Eighty random queries (a fixed seed) with random excludes, compiled once."""
    if not _MATCHERS:
        rng = random.Random(11)
        lists = [
            _watchlist(i, _query(rng), _query(rng) if rng.random() < 0.3 else None)
            for i in range(80)
        ]
        _MATCHERS.append(compile_matcher(lists))
    return _MATCHERS[0]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(_TEXT), max_size=10).map(" ".join),
    st.lists(st.sampled_from(_TEXT), max_size=40).map(" ".join),
    st.sampled_from(["agency", "paper"]),
)
def test_generated_queries_agree(title: str, text: str, source: str) -> None:
    matcher = _generated()
    article = Article(
        source_id=source,
        entry_key="k",
        url="https://example.org/a" if source == "agency" else "https://news.test/b",
        title=title,
        text=text,
        published=None,
        content_hash="h",
    )
    _same_everywhere(matcher, [article])
    trees = [c.query for c in matcher.compiled]
    _same_nodes(trees, [article])


def test_generated_queries_agree_on_random_articles() -> None:
    """A fixed sample of random articles, so the comparison is known to cover matches, NOT
    and exclusions (a miss of every query would prove nothing)."""
    matcher = _generated()
    rng = random.Random(5)
    matched = 0
    for i in range(60):
        article = Article(
            source_id=rng.choice(["agency", "paper"]),
            entry_key=str(i),
            url=rng.choice(["https://example.org/a", "https://news.test/b"]),
            title=" ".join(rng.choices(_TEXT, k=rng.randint(0, 8))),
            text=" ".join(rng.choices(_TEXT, k=rng.randint(0, 30))),
            published=None,
            content_hash=str(i),
        )
        matched += _same_everywhere(matcher, [article])
    assert matched > 200
