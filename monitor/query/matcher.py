"""All watchlists against one article: the prefilter picks the candidates, then each is
evaluated exactly, scored (title hits weigh double) and given a highlighted snippet.

Every watchlist query is compiled (`monitor.query.evaluate`) into evaluators; `Prefilter`
(`monitor.query.prefilter`) indexes the literals each must contain, so an article only evaluates
the watchlists whose every required literal occurs in it. A watchlist that does not match says
why, as a typed `Miss`; `explain` turns that into words for admins. Pure: plain values in,
`Match` values out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from monitor.model import Article, Match, Span, Watchlist
from monitor.query import syntax as q
from monitor.query.evaluate import (
    DEFAULT_FIELDS,
    FIELD_WEIGHT,
    SUMMARY,
    TITLE,
    CNode,
    Compiler,
    Doc,
    Hit,
    screen_probes,
)
from monitor.query.explain import Explanation, found_terms, why_not
from monitor.query.prefilter import Prefilter
from monitor.textnorm import fold, fold_words, split_folded

SNIPPET_CHARS = 240


class MissKind(StrEnum):
    SOURCE = "source"  # the watchlist is limited to other sources
    NO_MATCH = "no_match"
    EXCLUDED = "excluded"
    LOW_SCORE = "low_score"


@dataclass(frozen=True, slots=True)
class Miss:
    """Why one watchlist did not match one article."""

    kind: MissKind
    reason: str


@dataclass(frozen=True, slots=True)
class CompiledWatchlist:
    watchlist: Watchlist
    query: CNode
    exclude: CNode | None
    requires: tuple[frozenset[str], ...]  # prefilter: a key of each set must occur; () = always
    ast: q.Node  # the parsed query, to say which part found nothing


def compile_watchlist(
    watchlist: Watchlist, aliases: Mapping[str, Sequence[str]], compiler: Compiler | None = None
) -> CompiledWatchlist:
    """Compile one watchlist; raises QueryError (unknown alias, bad regex)."""
    compiler = compiler or Compiler(aliases)
    ast = q.parse(watchlist.query)
    node = compiler.compile(ast)
    exclude = compiler.compile(q.parse(watchlist.exclude)) if watchlist.exclude else None
    requires = tuple(dict.fromkeys(node.clauses()))
    return CompiledWatchlist(watchlist, node, exclude, requires, ast)


def _score(hits: list[Hit]) -> tuple[float, tuple[str, ...]]:
    """Each distinct matched term adds its best field weight, but text is credited once.

    Terms are credited longest match first; a term whose every hit lies inside text already
    credited ("test" inside "test-fired", two spellings of one alias member) adds nothing and
    is left out of the terms.
    """
    by_label: dict[str, list[Hit]] = {}
    wide = False  # a hit over several words
    for hit in hits:
        found = by_label.get(hit[0])
        if found is None:
            by_label[hit[0]] = [hit]
        else:
            found.append(hit)
        if hit[3] != hit[2]:
            wide = True
    if len(by_label) <= 1:  # nothing credited before the one term: all of it counts
        if not hits:
            return 0, ()
        return round(max(FIELD_WEIGHT[h[1]] for h in hits), 3), (hits[0][0],)
    # One word each: all equally long, so in their order (as the stable sort would leave them).
    order: Iterable[str] = by_label
    if wide:
        order = sorted(by_label, key=lambda label: -max(h[3] - h[2] for h in by_label[label]))
    # Per field, each credited word: the furthest end of a credited range over it. A hit lies
    # inside a credited range exactly when the one over its first word reaches its last. A
    # term's hits are credited as they come: one inside an earlier one of the same term lies
    # in the same field, so it would add no weight and no reach.
    reach: tuple[dict[int, int], ...] = ({}, {}, {}, {})
    kept: dict[str, float] = {}
    for label in order:
        weight = -1.0
        for _, field, first, last in by_label[label]:
            marks = reach[field]
            if marks.get(first, -1) < last:
                if FIELD_WEIGHT[field] > weight:
                    weight = FIELD_WEIGHT[field]
                for word in range(first, last + 1):
                    if marks.get(word, -1) < last:
                        marks[word] = last
        if weight >= 0:
            kept[label] = weight
    terms = tuple(label for label in by_label if label in kept)
    return round(sum(kept.values()), 3), terms


def _snippet(doc: Doc, hits: list[Hit]) -> tuple[str, tuple[Span, ...]]:
    """A window of the summary around its first hit (else the title), with highlight spans.

    Word positions become character offsets here, and only as far into the text as needed.
    """
    body = sorted((h for h in hits if h[1] == SUMMARY), key=lambda h: h[2])
    chosen: list[tuple[int, int]] = []
    if body:
        text = doc.texts[SUMMARY]
        spans = doc.word_spans(SUMMARY, body[0][2])
        _, anchor, anchor_end = next(spans)
        start = max(0, anchor - 60)
        if start > 0:
            space = text.rfind(" ", 0, start)
            start = space + 1 if space >= 0 and start - space < 30 else start
        end = min(len(text), start + SNIPPET_CHARS)
        if end < len(text):
            space = text.find(" ", end)
            end = space if 0 <= space < end + 30 else end
        lead = "…" if start > 0 else ""
        snippet = lead + text[start:end] + ("…" if end < len(text) else "")
        shift = len(lead) - start
        window = {body[0][2]: (anchor, anchor_end)}  # word index -> span, inside the window
        needed = max(h[3] for h in body)  # no hit ends after this word
        if needed > body[0][2]:
            for index, s, e in spans:
                if s >= end:
                    break
                window[index] = (s, e)
                if index >= needed:
                    break
        for _, _, first, last in body:
            if first in window and last in window and window[last][1] <= end:
                chosen.append((window[first][0] + shift, window[last][1] + shift))
    else:
        title = [h for h in hits if h[1] == TITLE]
        if title:
            snippet = doc.texts[TITLE]
            bounds = doc.bounds(TITLE)
            chosen = [(bounds[first][0], bounds[last][1]) for _, _, first, last in title]
        else:
            text = doc.texts[SUMMARY] or doc.texts[TITLE]
            snippet = text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else "")
    merged: list[list[int]] = []
    for s, e in sorted(chosen):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return snippet, tuple(Span(s, e) for s, e in merged)


def _veto(vetoed: list[Hit]) -> Miss:
    vetoing = ", ".join(dict.fromkeys(h[0] for h in vetoed)) or "exclude"
    return Miss(MissKind.EXCLUDED, f"vetoed by exclude ({vetoing})")


class _Evidence:
    """A match's hits, score and snippet, collected from the article's `Doc` when first read
    (`Match.pending`); the `Doc` is let go once both are known."""

    __slots__ = ("_doc", "_hits", "_query", "_scored", "_shown")

    def __init__(self, query: CNode, doc: Doc) -> None:
        self._query: CNode | None = query
        self._doc: Doc | None = doc
        self._hits: list[Hit] | None = None
        self._scored: tuple[float, tuple[str, ...]] | None = None
        self._shown: tuple[str, tuple[Span, ...]] | None = None

    def _collected(self) -> tuple[Doc, list[Hit]]:
        doc, hits = self._doc, self._hits
        assert doc is not None and self._query is not None
        if hits is None:
            hits = self._hits = []
            self._query.collect(doc, DEFAULT_FIELDS, hits)
        return doc, hits

    def scored(self) -> tuple[float, tuple[str, ...]]:
        if self._scored is None:
            self._scored = _score(self._collected()[1])
            self._release()
        return self._scored

    def shown(self) -> tuple[str, tuple[Span, ...]]:
        if self._shown is None:
            self._shown = _snippet(*self._collected())
            self._release()
        return self._shown

    def _release(self) -> None:
        if self._scored is not None and self._shown is not None:
            self._doc = self._query = self._hits = None


class Matcher:
    """Every watchlist compiled together behind one Aho-Corasick automaton.

    Each watchlist is indexed under its most selective required key set; the automaton's hits
    then also check the watchlist's other required sets, so only watchlists whose every required
    literal occurs in the article are evaluated.
    """

    def __init__(self, compiled: Iterable[CompiledWatchlist]):
        self.compiled = list(compiled)
        self.by_id = {c.watchlist.id: c for c in self.compiled}
        nodes = [n for c in self.compiled for n in (c.query, c.exclude) if n is not None]
        self._prefilter = Prefilter([c.requires for c in self.compiled], screen_probes(nodes))

    def __len__(self) -> int:
        return len(self.compiled)

    def candidates(self, article: Article) -> list[int]:
        """Indices of the watchlists whose required literals all occur in the article."""
        title, text = fold_words(article.title), fold_words(article.text)
        return self._prefilter.candidates(title, text, (article.title, article.text))[0]

    def match(self, article: Article) -> list[Match]:
        """Every watchlist that matches, best score first."""
        folded = (fold(article.title), fold(article.text))
        title, text = split_folded(folded[0]), split_folded(folded[1])
        prefilter = self._prefilter
        indices, present, hay, found = prefilter.candidates(
            title, text, (article.title, article.text)
        )
        if not indices:
            return []
        doc = Doc(article, (title, text), folded, present, hay, (prefilter.searched, found))
        out: list[Match] = []
        for index in indices:
            item = self.compiled[index]
            result = self._run(item, article, doc)
            if isinstance(result, Match):
                out.append(result)
        if len(out) > 1:
            out.sort(key=lambda m: (-m.score, m.watchlist_id))
        return out

    def match_exhaustive(self, article: Article) -> list[Match]:
        """`match` the slow way: no prefilter, every watchlist fully evaluated (`evaluate`,
        every child of every OR). The reference the fast path is tested against."""
        doc = Doc(article)
        out = [m for c in self.compiled if isinstance(m := self._run(c, article, doc, True), Match)]
        out.sort(key=lambda m: (-m.score, m.watchlist_id))
        return out

    def _run(
        self, item: CompiledWatchlist, article: Article, doc: Doc, full: bool = False
    ) -> Match | Miss:
        """Decide first (`test`), then collect the hits of a match only; `full` takes the
        reference path (`evaluate`) instead."""
        wl = item.watchlist
        if wl.sources and article.source_id not in wl.sources:
            reason = f"source {article.source_id!r} is not in sources: {', '.join(wl.sources)}"
            return Miss(MissKind.SOURCE, reason)
        hits: list[Hit] = []
        if full:
            if not item.query.evaluate(doc, DEFAULT_FIELDS, hits):
                return Miss(MissKind.NO_MATCH, "no match")
        elif not item.query.test(doc, DEFAULT_FIELDS):
            return Miss(MissKind.NO_MATCH, "no match")
        elif wl.min_score <= 0:
            # A score is never negative, so the decision needs no evidence: the match works
            # it out when read (`_Evidence`), which most matches never are.
            if item.exclude is not None and item.exclude.test(doc, DEFAULT_FIELDS):
                return self._vetoed(item, doc)
            return Match.pending(wl.id, wl.name, _Evidence(item.query, doc))
        else:
            item.query.collect(doc, DEFAULT_FIELDS, hits)
        score, terms = _score(hits)
        if item.exclude is not None:
            vetoed: list[Hit] = []
            if full:
                if item.exclude.evaluate(doc, DEFAULT_FIELDS, vetoed):
                    return _veto(vetoed)
            elif item.exclude.test(doc, DEFAULT_FIELDS):
                return self._vetoed(item, doc)
        if score < wl.min_score:
            return Miss(MissKind.LOW_SCORE, f"score {score:g} is below min_score {wl.min_score:g}")
        snippet, highlights = _snippet(doc, hits)
        return Match(wl.id, wl.name, score, terms, snippet, highlights)

    @staticmethod
    def _vetoed(item: CompiledWatchlist, doc: Doc) -> Miss:
        vetoed: list[Hit] = []
        assert item.exclude is not None
        item.exclude.collect(doc, DEFAULT_FIELDS, vetoed)
        return _veto(vetoed)

    def explain(self, article: Article, watchlist_id: str) -> Explanation:
        """Run one watchlist without the prefilter and say why it matched or not."""
        item = self.by_id[watchlist_id]
        doc = Doc(article)
        result = self._run(item, article, doc)
        if isinstance(result, Match):
            reason = (
                f"score {result.score:g} ≥ min_score {item.watchlist.min_score:g}; "
                f"terms: {', '.join(result.terms)}"
            )
            return Explanation(watchlist_id, True, reason, result.score, result.terms, result)
        hits: list[Hit] = []
        item.query.evaluate(doc, DEFAULT_FIELDS, hits)
        score, terms = _score(hits)
        reason = result.reason
        if result.kind is MissKind.NO_MATCH:
            reason = why_not(item.ast, item.query, doc, DEFAULT_FIELDS)
            found = found_terms(item.query, doc, DEFAULT_FIELDS)
            if found:
                reason += "; found: " + ", ".join(found)
                terms = tuple(found)
        return Explanation(watchlist_id, False, reason, score, terms, None)


def compile_matcher(
    watchlists: Iterable[Watchlist], aliases: Mapping[str, Sequence[str]] | None = None
) -> Matcher:
    """Compile watchlists (already validated) with the aliases they were validated against.

    Without `aliases`, each watchlist's own `aliases` snapshot is used (set by the loader).
    """
    compilers: dict[int, Compiler] = {}
    compiled: list[CompiledWatchlist] = []
    for wl in watchlists:
        table = aliases if aliases is not None else wl.aliases
        compiler = compilers.get(id(table))
        if compiler is None:
            compiler = compilers[id(table)] = Compiler(table)
        compiled.append(compile_watchlist(wl, table, compiler))
    return Matcher(compiled)


class Signals:
    """A watchlist's named sub-queries (`signals:`), each a yes/no feature of its model: the
    precise event wording an admin knows, weighed by the model rather than gating alone."""

    def __init__(self, named: Sequence[tuple[str, CNode]]) -> None:
        self.names = tuple(name for name, _ in named)
        self._nodes = tuple(node for _, node in named)

    def __len__(self) -> int:
        return len(self._nodes)

    def hits(self, article: Article) -> tuple[bool, ...]:
        if not self._nodes:
            return ()
        doc = Doc(article)
        return tuple(node.test(doc, DEFAULT_FIELDS) for node in self._nodes)

    def hits_exhaustive(self, article: Article) -> tuple[bool, ...]:
        """`hits` by the reference path (`evaluate`), for tests."""
        doc = Doc(article)
        return tuple(node.evaluate(doc, DEFAULT_FIELDS, []) for node in self._nodes)


def compile_signals(watchlist: Watchlist) -> Signals:
    """Compile a validated watchlist's signals with the aliases it was validated against."""
    compiler = Compiler(watchlist.aliases)
    return Signals([(name, compiler.compile(q.parse(text))) for name, text in watchlist.signals])
