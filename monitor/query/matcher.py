"""All watchlists against one article: a literal prefilter, then exact evaluation.

Every watchlist query is compiled (monitor.query.evaluate) into evaluators. For the prefilter, each
query states the literals any match must contain (an AND of OR-sets); the most selective set is
indexed (whole words by a set intersection with the article's words, prefixes and Hangul by an
Aho-Corasick automaton) and the others are checked by substring search, so an article only
evaluates the watchlists whose every required literal occurs in it. Watchlists with no such
literal (a lone NOT, a bare regex, `source:` filters) are always evaluated. Pure: plain values
in, `Match` values out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ahocorasick

from monitor.model import Article, Match, Span, Watchlist
from monitor.query import syntax as q
from monitor.query.evaluate import (
    DEFAULT_FIELDS,
    FIELD_WEIGHT,
    SUMMARY,
    TITLE,
    CAlias,
    CAnd,
    CField,
    CNear,
    CNode,
    CNot,
    Compiler,
    COr,
    CRegex,
    CWords,
    Doc,
    Fields,
    Hit,
    key_rarity,
    rarity,
)
from monitor.textnorm import fold, fold_words, split_folded

SNIPPET_CHARS = 240


# ------------------------------------------------------------------------------- matcher


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a watchlist did or did not match an article (for `test`, `eval` and admins)."""

    watchlist_id: str
    matched: bool
    reason: str
    score: float
    terms: tuple[str, ...]
    match: Match | None


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
    for hit in hits:
        by_label.setdefault(hit[0], []).append(hit)
    order = sorted(by_label, key=lambda label: -max(h[3] - h[2] for h in by_label[label]))
    credited: list[tuple[int, int, int]] = []
    kept: dict[str, float] = {}
    for label in order:
        fresh = [
            h
            for h in by_label[label]
            if not any(f == h[1] and s <= h[2] and h[3] <= e for f, s, e in credited)
        ]
        if fresh:
            kept[label] = max(FIELD_WEIGHT[h[1]] for h in fresh)
            credited.extend((h[1], h[2], h[3]) for h in fresh)
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
        for index, s, e in spans:
            if s >= end:
                break
            window[index] = (s, e)
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


class Matcher:
    """Every watchlist compiled together behind one Aho-Corasick automaton.

    Each watchlist is indexed under its most selective required key set; the automaton's hits
    then also check the watchlist's other required sets, so only watchlists whose every required
    literal occurs in the article are evaluated.
    """

    def __init__(self, compiled: Iterable[CompiledWatchlist]):
        self.compiled = list(compiled)
        self.by_id = {c.watchlist.id: c for c in self.compiled}
        self._always: list[int] = []
        # Whole-word keys are found by a set intersection on their rarest word, then confirmed
        # by substring search; prefix and Hangul keys go through the Aho-Corasick automaton.
        self._by_word: dict[str, list[tuple[str | None, int]]] = {}  # key None: the word itself
        self._by_ac: dict[str, list[int]] = {}
        self._rest: list[tuple[tuple[frozenset[str], tuple[str, ...]], ...]] = []
        for index, item in enumerate(self.compiled):
            if not item.requires:
                self._always.append(index)
                self._rest.append(())
                continue
            best = max(item.requires, key=rarity)
            self._rest.append(tuple(_split_clause(c) for c in item.requires if c is not best))
            for key in best:
                if len(key) > 2 and key[0] == " " and key[-1] == " ":
                    word = max(key.split(), key=key_rarity)
                    single = key == f" {word} "
                    self._by_word.setdefault(word, []).append((None if single else key, index))
                else:
                    self._by_ac.setdefault(key, []).append(index)
        self._word_keys = frozenset(self._by_word)
        # Keys with non-ASCII letters (Hangul) can only occur in non-ASCII text: a second
        # automaton spares the scan of every English article.
        self._ac_ascii = _automaton([k for k in self._by_ac if k.isascii()])
        self._ac_other = _automaton([k for k in self._by_ac if not k.isascii()])

    def __len__(self) -> int:
        return len(self.compiled)

    def candidates(self, article: Article) -> list[int]:
        """Indices of the watchlists whose required literals all occur in the article."""
        return self._candidates(fold_words(article.title), fold_words(article.text))[0]

    def _candidates(self, title: list[str], text: list[str]) -> tuple[list[int], set[str] | None]:
        found: set[int] = set(self._always)
        # Two spaces between the fields: a phrase key never spans title and summary.
        hay = " " + " ".join(title) + "  " + " ".join(text) + " "
        words = title + text
        present: set[str] | None = None
        rest = self._rest
        hits: list[int] = []
        by_word = self._by_word
        for word in self._word_keys.intersection(words):
            for key, index in by_word[word]:
                if key is None or key in hay:
                    hits.append(index)
        for automaton in (self._ac_ascii, self._ac_other if not hay.isascii() else None):
            if automaton is not None:
                for key in {key for _, key in automaton.iter(hay)}:
                    hits.extend(self._by_ac[key])
        for index in hits:
            if index in found:
                continue
            clauses = rest[index]
            if clauses:
                if present is None:
                    present = set(words)
                for bare, other in clauses:
                    if bare.isdisjoint(present) and not any(k in hay for k in other):
                        break
                else:
                    found.add(index)
                continue
            found.add(index)
        return sorted(found), present

    def match(self, article: Article) -> list[Match]:
        """Every watchlist that matches, best score first."""
        folded = (fold(article.title), fold(article.text))
        title, text = split_folded(folded[0]), split_folded(folded[1])
        indices, present = self._candidates(title, text)
        if not indices:
            return []
        doc = Doc(article, (title, text), folded, present)
        out: list[Match] = []
        for index in indices:
            item = self.compiled[index]
            result = self._run(item, article, doc)
            if isinstance(result, Match):
                out.append(result)
        out.sort(key=lambda m: (-m.score, m.watchlist_id))
        return out

    def _run(self, item: CompiledWatchlist, article: Article, doc: Doc) -> Match | str:
        wl = item.watchlist
        if wl.sources and article.source_id not in wl.sources:
            return f"source {article.source_id!r} is not in sources: {', '.join(wl.sources)}"
        hits: list[Hit] = []
        if not item.query.evaluate(doc, DEFAULT_FIELDS, hits):
            return "no match"
        score, terms = _score(hits)
        if item.exclude is not None:
            vetoed: list[Hit] = []
            if item.exclude.evaluate(doc, DEFAULT_FIELDS, vetoed):
                vetoing = ", ".join(dict.fromkeys(h[0] for h in vetoed)) or "exclude"
                return f"vetoed by exclude ({vetoing})"
        if score < wl.min_score:
            return f"score {score:g} is below min_score {wl.min_score:g}"
        snippet, highlights = _snippet(doc, hits)
        return Match(wl.id, wl.name, score, terms, snippet, highlights)

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
        if result == "no match":
            result = _why_not(item.ast, item.query, doc, DEFAULT_FIELDS)
            found = _found_terms(item.query, doc, DEFAULT_FIELDS)
            if found:
                result += "; found: " + ", ".join(found)
                terms = tuple(found)
        return Explanation(watchlist_id, False, result, score, terms, None)


def _short(node: q.Node, limit: int = 80) -> str:
    text = q.to_string(node)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _why_not(ast: q.Node, node: CNode, doc: Doc, fields: Fields) -> str:
    """The smallest part of a query that explains a miss, e.g. 'no @un_activity OR …'."""
    if isinstance(node, CAnd) and isinstance(ast, q.And):
        return "; ".join(
            _why_not(a, c, doc, fields)
            for a, c in zip(ast.children, node.children, strict=True)
            if not c.evaluate(doc, fields, [])
        )
    if isinstance(node, CField) and isinstance(ast, q.Field):
        return _why_not(ast.child, node.child, doc, node.fields)
    if isinstance(node, CNear) and isinstance(ast, q.Near):
        if not node.left.positions(doc, fields):
            return _why_not(ast.left, node.left, doc, fields)
        if not node.right.positions(doc, fields):
            return _why_not(ast.right, node.right, doc, fields)
        return (
            f"{_short(ast.left, 40)} and {_short(ast.right, 40)} both found, "
            f"but not within {node.distance} words"
        )
    if isinstance(node, CNot):
        hits: list[Hit] = []
        node.child.evaluate(doc, fields, hits)
        return "excluded by NOT: " + ", ".join(dict.fromkeys(h[0] for h in hits))
    return "no " + _short(ast)


def _found_terms(node: CNode, doc: Doc, fields: Fields) -> list[str]:
    """Positive terms present anywhere in the article, whether or not the query matched."""
    if isinstance(node, CWords | CRegex):
        return [node.label] if node.positions(doc, fields) else []
    children: Sequence[CNode] = ()
    if isinstance(node, CAlias):
        children = node.members
    elif isinstance(node, CAnd | COr):
        children = node.children
    elif isinstance(node, CNear):
        children = (node.left, node.right)
    elif isinstance(node, CField):
        return _found_terms(node.child, doc, node.fields)
    out: list[str] = []
    for child in children:
        out.extend(t for t in _found_terms(child, doc, fields) if t not in out)
    return out


def _split_clause(clause: frozenset[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """Single whole words (checked against the article's word set) and the other keys."""
    bare = frozenset(
        k.strip() for k in clause if k.startswith(" ") and k.endswith(" ") and k.count(" ") == 2
    )
    other = tuple(k for k in clause if k.strip() not in bare or k.count(" ") != 2)
    return bare, other


def _automaton(keys: list[str]) -> Any:
    if not keys:
        return None
    automaton = ahocorasick.Automaton()
    for key in keys:
        automaton.add_word(key, key)
    automaton.make_automaton()
    return automaton


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
