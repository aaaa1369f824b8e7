"""Compiled queries: a tree of evaluators over one article's words, and the article view.

`Compiler` turns a parsed query (`monitor.query.syntax`) into these nodes. Each node evaluates
against a `Doc` (the article's folded words, positions found on demand) and records hits as word
ranges; each also states, as `clauses()`, the literals any match must contain, which the
matcher's prefilter indexes. Pure: no I/O.

Two paths give the same answers. `evaluate` / `positions` are the plain full evaluation (every
child of an OR is evaluated, nothing remembered), kept as the reference the fast path is tested
against and for explanations. The fast path the matcher runs is `test` (decide only, stopping at
the first true child of an OR and the first false one of an AND), then `collect` (the same hits
as `evaluate`) only for queries that matched, with `spans` for positions. It skips the children
that cannot match: each node knows `need`, words one of which must be among the article's
words, and an OR finds its possible children by one set intersection; results of shared nodes
(an alias used by many watchlists) are remembered in the `Doc`.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, Protocol

import re2

from monitor.model import Article
from monitor.query import syntax as q
from monitor.query.literals import required_literals
from monitor.textnorm import UNSPACED_RE, WORD_RE, Folded, fold_mapped, fold_term, fold_words
from monitor.textnorm import is_unspaced_word as _hangul

TITLE, SUMMARY, SOURCE, URL = 0, 1, 2, 3
FIELD_IDS = {"title": TITLE, "summary": SUMMARY, "source": SOURCE, "url": URL}
FIELD_NAMES = ("title", "summary", "source", "url")
FIELD_WEIGHT = (2.0, 1.0, 0.0, 0.0)  # title evidence counts double; filters add nothing
DEFAULT_FIELDS = frozenset({TITLE, SUMMARY})
STRIDE = 1_000_000  # word positions of field f start at f * STRIDE, so phrases never cross fields
# Words too frequent in news copy to make a good prefilter key (chosen by hand, no corpus).
_COMMON_WORDS = """a an the of in on at to and or for by with from as is are was were be
    been has have had
    it its this that these those he she they we you i his her their our not no but if than then
    so up out over after before about into more most new says said say will would can could may
    also just one two three first last year years day days week time people world news report
    reports reported government state states president minister police official officials
    country countries city national international told tells according amid while when where
    what who how why all any some other many much very make made take takes took get gets got
    go goes went back down off again still now today yesterday tomorrow live latest update
    video watch photos breaking u s uk us eu un war deal talks meeting vote votes election
    court case law plan plans group party leader leaders attack attacks killed dead death
    help home house market markets price prices company companies business money bank
    security military forces force army health public political politics top big high
    warns warned calls called call move moves set sets open opens end ends"""
_COMMON = frozenset(_COMMON_WORDS.split())

#: Marks a prefilter key that is a regex's literal, to find as written in the title or the
#: summary (case-sensitive), not among the folded words.
RAW = "\0"
Fields = frozenset[int]
Hit = tuple[str, int, int, int]  # (term label, field, first word, last word) within the field
Spans = list[tuple[int, int]]  # [first word position, last word position]
Clauses = list[frozenset[str]]  # AND of ORs of prefilter keys; [] means "no requirement"
# What a node needs to be true in the title or summary: one of these words among the article's
# words, or one of these strings inside its words joined by spaces (" launch" for launch*, a
# Hangul word); None when nothing is known (NOT, a regex, a `source:` filter).
Need = tuple[frozenset[str], tuple[str, ...]] | None


# ------------------------------------------------------------------------------ document


class Doc:
    """One article's words, shared by every watchlist evaluated on it.

    Word positions of field f start at f * STRIDE. Nothing is indexed up front: the fast path
    finds a term's positions by searching the words joined (`occurrences`), the reference path
    from a word index built on first use, and character offsets (for highlights and regex
    positions) are worked out only when hits are reported.
    """

    __slots__ = (
        "_ascii",
        "_both",
        "_bounds",
        "_folded",
        "_folded_text",
        "_hay",
        "_positions",
        "_present",
        "_sorted",
        "_split",
        "_tokens",
        "_vocab",
        "cache",
        "found",
        "lives",
        "searched",
        "texts",
        "truth",
    )

    def __init__(
        self,
        article: Article,
        fields: Sequence[list[str]] | None = None,
        folded: Sequence[str] | None = None,
        present: set[str] | None = None,
        hay: str | None = None,
        searched: tuple[frozenset[str], set[str]] | None = None,
    ) -> None:
        """`fields`, `folded`, `present` (words of title + summary) and `hay` (the same
        joined by spaces) spare recomputing what the prefilter already has; `searched` is
        the keys its automaton looked for in `hay` and those it found."""
        self.texts = (article.title, article.text, article.source_id, article.url)
        self.cache: dict[tuple[int, Fields], Spans] = {}
        self.truth: dict[tuple[int, Fields], bool] = {}  # `test` of shared nodes
        self.found: dict[tuple[int, Fields], tuple[Hit, ...] | None] = {}  # `collect`'s hits
        self.lives: dict[tuple[int, Fields], Sequence[Any]] = {}  # `Screen.live`, for collect
        self._folded: list[Folded | None] = [None, None, None, None]
        self._folded_text: list[str | None] = [None, None, None, None]
        self._bounds: list[list[tuple[int, int]] | None] = [None, None, None, None]
        self._tokens: list[list[str] | None] = [None, None, None, None]
        self._vocab: list[set[str] | None] = [None, None, None, None]
        self._positions: dict[tuple[str, int], list[int]] = {}
        self._sorted: dict[tuple[str, int], list[str]] = {}
        for field, tokens in enumerate(fields or ()):
            self._tokens[field] = tokens
        for field, text in enumerate(folded or ()):
            self._folded_text[field] = text  # mapped to offsets only if hits are reported
        self._present = present
        self._hay = hay
        self._split = -1
        self._ascii: bool | None = None
        self.searched = searched
        self._both: dict[str, list[int]] | None = None

    def tokens(self, field: int) -> list[str]:
        found = self._tokens[field]
        if found is None:
            found = self._tokens[field] = fold_words(self.texts[field])[: STRIDE - 1]
        return found

    def vocab(self, field: int) -> set[str]:
        """Distinct words of a field; title and summary share one set (a superset is enough)."""
        if field in (TITLE, SUMMARY):
            if self._present is None:
                self._present = set(self.tokens(TITLE)) | set(self.tokens(SUMMARY))
            return self._present
        found = self._vocab[field]
        if found is None:
            found = self._vocab[field] = set(self.tokens(field))
        return found

    def hay(self) -> str:
        """Title and summary words, each after a space (two between the fields), as the
        prefilter searches them: a prefix occurs as " word", a Hangul word anywhere."""
        if self._hay is None:
            self._hay = (
                " " + " ".join(self.tokens(TITLE)) + "  " + " ".join(self.tokens(SUMMARY)) + " "
            )
        return self._hay

    def occurrences(self, probe: str, inside: bool, fields: Fields) -> list[int]:
        """Positions of the words where `probe` occurs in `hay` (" word ", " prefix"; a Hangul
        word `inside` a word), in order: a search in C per occurrence, and the words before it
        counted as the spaces before it."""
        hay = self.hay()
        split = self._split  # the space before the summary's first word
        if split < 0:
            split = self._split = hay.find("  ", 1) + 1
        # One search over both fields: no probe spans the two spaces between them.
        end = len(hay) if SUMMARY in fields else split
        at = hay.find(probe, 0 if TITLE in fields else split, end)
        if at < 0:
            return []
        find, count = hay.find, hay.count
        out: list[int] = []
        # A probe starting with a space is at the space before its word; one inside a word
        # has that space before it too.
        index, last = (-inside, 0) if at < split else (STRIDE - inside, split)
        while at >= 0:
            if last < split <= at:  # on into the summary
                index, last = STRIDE - inside, split
            index += count(" ", last, at)
            last = at
            if not (inside and out and out[-1] == index):  # twice in one word
                out.append(index)
            at = find(probe, at + 1, end)
        return out

    def both(self) -> dict[str, list[int]]:
        """Every title and summary word's positions, in order, found in one pass (for the
        reference path, `positions`)."""
        found = self._both
        if found is None:
            found = {}
            for base, tokens in ((0, self.tokens(TITLE)), (STRIDE, self.tokens(SUMMARY))):
                for i, word in enumerate(tokens, base):
                    seen = found.get(word)
                    if seen is None:
                        found[word] = [i]
                    else:
                        seen.append(i)
            self._both = found
        return found

    def ascii(self) -> bool:
        if self._ascii is None:
            self._ascii = self.hay().isascii()
        return self._ascii

    def sorted_vocab(self, field: int) -> list[str]:
        """The distinct words in order, so a prefix finds its words by bisection."""
        key = ("\0sorted", field)
        found = self._sorted.get(key)
        if found is None:
            found = self._sorted[key] = sorted(self.vocab(field))
        return found

    def unspaced_vocab(self, field: int) -> list[str]:
        """The distinct words written in Hangul or CJK (searched for substrings)."""
        key = ("\0unspaced", field)
        found = self._sorted.get(key)
        if found is None:
            found = self._sorted[key] = [w for w in self.vocab(field) if _hangul(w)]
        return found

    def positions(self, word: str, field: int) -> list[int]:
        """Positions of an exact folded word in one field."""
        key = (word, field)
        found = self._positions.get(key)
        if found is None:
            found = self._positions[key] = []
            if word in self.vocab(field):
                tokens = self.tokens(field)
                base = field * STRIDE
                index = -1
                try:
                    while True:
                        index = tokens.index(word, index + 1)
                        found.append(base + index)
                except ValueError:
                    pass
        return found

    def _mapped(self, field: int) -> Folded:
        return fold_mapped(self.texts[field], self._folded_text[field])

    def word_spans(self, field: int, first: int) -> Iterator[tuple[int, int, int]]:
        """(word index, start, end) in the original text from word `first` on.

        The words before `first` are skipped in C (a bounded `str.split`, or islice over the
        regex for Hangul text), which keeps a snippet deep in a long article cheap.
        """
        folded = self._folded[field]
        if folded is None:
            folded = self._folded[field] = self._mapped(field)
        origin = folded.origin
        text = folded.text
        if text.isascii() or not UNSPACED_RE.search(text):
            # Folded text is words separated by spaces: word `first` starts where the rest of
            # a split with maxsplit=first begins.
            parts = text.split(None, first)
            if len(parts) <= first:
                return
            words: Iterator[re.Match[str]] = WORD_RE.finditer(text, len(text) - len(parts[first]))
        else:
            words = islice(WORD_RE.finditer(text), first, None)
        for index, m in enumerate(words, first):
            start, end = m.span()
            if origin is None:
                yield index, start, end
            else:
                yield index, origin[start], origin[end - 1] + 1

    def mapped(self, field: int) -> Folded:
        """The field folded, with its offsets into the original when the fold moved them."""
        folded = self._folded[field]
        if folded is None:
            folded = self._folded[field] = self._mapped(field)
        return folded

    def bounds(self, field: int) -> list[tuple[int, int]]:
        """[start, end) of every word of the field in the original text (for regexes, titles)."""
        found = self._bounds[field]
        if found is None:
            folded = self.mapped(field)
            origin = folded.origin
            spans = [m.span() for m in WORD_RE.finditer(folded.text)]
            if origin is not None:
                spans = [(origin[s], origin[e - 1] + 1) for s, e in spans]
            found = self._bounds[field] = spans
        return found


# ------------------------------------------------------------------------ compiled nodes


class CNode(Protocol):
    #: What must occur in the title or summary whenever the node is true there (`Need`).
    need: Need

    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        """The full evaluation: every matching term's hits (the reference path)."""
        ...

    def test(self, doc: Doc, fields: Fields) -> bool:
        """Whether the node matches, as cheaply as possible (the same answer as `evaluate`)."""
        ...

    def collect(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        """`evaluate`'s answer and hits, skipping children that cannot match."""
        ...

    def clauses(self) -> Clauses:
        """Literal requirements in AND-of-OR form: every match contains a key of each set."""
        ...


class Positional(CNode, Protocol):
    label: str

    def positions(self, doc: Doc, fields: Fields) -> Spans: ...

    def spans(self, doc: Doc, fields: Fields) -> Spans:
        """`positions`, skipping children that cannot match (the fast path)."""
        ...


def smallest_need(needs: Sequence[Need]) -> Need:
    """For a node true only when all of these are: the one with fewest keys will do."""
    known = [n for n in needs if n is not None]
    return min(known, key=lambda n: len(n[0]) + 2 * len(n[1])) if known else None


def union_need(needs: Sequence[Need]) -> Need:
    """For a node true when any of these is: every one must be known."""
    words: set[str] = set()
    probes: dict[str, None] = {}
    for need in needs:
        if need is None:
            return None
        words |= need[0]
        probes.update(dict.fromkeys(need[1]))
    return (frozenset(words), tuple(probes)) if needs else None


_CHOSEN_KEPT = 4096  # combinations a `Screen` remembers (then it starts again)


class Screen:
    """Which children of an OR (or members of an alias) can be true in an article: those whose
    `need` meets the article's words (one set intersection) or words joined (the prefix and
    Hangul keys the matcher's automaton pass found, else a substring search per key), in their
    order."""

    __slots__ = (
        "_by_probe",
        "_by_word",
        "_chosen",
        "_open",
        "_probes",
        "_probes_other",
        "_space",
        "_words",
        "children",
        "probes",
    )

    def __init__(self, children: Sequence[Any]) -> None:
        self.children = tuple(children)
        self._by_word: dict[str, list[int]] = {}
        probes: list[tuple[str, int]] = []
        self._open: list[int] = []  # children without a need: always tried
        for i, child in enumerate(self.children):
            need: Need = child.need
            if need is None:
                self._open.append(i)
                continue
            for word in need[0]:
                self._by_word.setdefault(word, []).append(i)
            probes.extend((probe, i) for probe in need[1])
        self._words = frozenset(self._by_word)
        self._chosen: dict[frozenset[str], Sequence[Any]] = {}  # `_live`'s, remembered
        # Non-ASCII probes (Hangul, CJK) can only occur in non-ASCII text.
        self._probes = tuple(p for p in probes if p[0].isascii())
        self._probes_other = tuple(p for p in probes if not p[0].isascii())
        self._by_probe: dict[str, list[int]] = {}
        for probe, i in probes:
            self._by_probe.setdefault(probe, []).append(i)
        self.probes = frozenset(self._by_probe)
        self._space: frozenset[str] | None = None  # last `Doc.searched` keys seen to cover them

    def live(self, doc: Doc, fields: Fields) -> Sequence[Any]:
        key = (id(self), fields)
        found = doc.lives.get(key)
        if found is None:
            found = doc.lives[key] = self._live(doc, fields)
        return found

    def _live(self, doc: Doc, fields: Fields) -> Sequence[Any]:
        if fields is not DEFAULT_FIELDS and not fields <= DEFAULT_FIELDS:
            return self.children  # `source:` and `url:` have their own words
        present = self._words.intersection(doc.vocab(TITLE))
        keys: frozenset[str] = frozenset()
        if self.probes:
            searched = doc.searched
            if searched is None or not (
                self._space is searched[0] or self._covered_by(searched[0])
            ):
                return self._searching(doc, present)
            keys = self.probes.intersection(searched[1])
        # The children depend only on which of the screen's words and probes occur (never the
        # same strings: a probe is a prefix after a space or Hangul, a word neither), and the
        # same few combinations recur from article to article.
        combination = present | keys if keys else present
        found = self._chosen.get(combination)
        if found is None:
            if len(self._chosen) >= _CHOSEN_KEPT:
                self._chosen.clear()
            found = self._chosen[combination] = self._choose(present, keys)
        return found

    def _choose(self, present: frozenset[str], keys: frozenset[str]) -> Sequence[Any]:
        chosen = set(self._open)
        by_word = self._by_word
        for word in present:
            chosen.update(by_word[word])
        by_probe = self._by_probe
        for key in keys:
            chosen.update(by_probe[key])
        children = self.children
        if len(chosen) == len(children):
            return children
        return tuple(children[i] for i in sorted(chosen))  # shared: kept as it is

    def _searching(self, doc: Doc, present: frozenset[str]) -> Sequence[Any]:
        """`_live` with a substring search per probe (a `Doc` the matcher did not make)."""
        chosen = set(self._open)
        for word in present:
            chosen.update(self._by_word[word])
        hay = doc.hay()
        chosen.update(i for probe, i in self._probes if probe in hay)
        if self._probes_other and not doc.ascii():
            chosen.update(i for probe, i in self._probes_other if probe in hay)
        children = self.children
        if len(chosen) == len(children):
            return children
        return [children[i] for i in sorted(chosen)]

    def _covered_by(self, space: frozenset[str]) -> bool:
        """Whether the automaton that searched for `space` also searched for these probes."""
        if self.probes <= space:
            self._space = space
            return True
        return False


def screen_probes(nodes: Sequence[Any]) -> set[str]:
    """Every `Screen` probe (prefix and Hangul keys) under these compiled nodes, for the
    matcher's automaton."""
    out: set[str] = set()
    seen: set[int] = set()
    todo = list(nodes)
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        screen = getattr(node, "_screen", None)
        if isinstance(screen, Screen):
            out |= screen.probes
        todo.extend(getattr(node, "children", ()))
        todo.extend(getattr(node, "members", ()))
        todo.extend(getattr(node, name, None) for name in ("child", "left", "right"))
    return out


_NONE: list[int] = []  # shared, never changed
MAX_SPANS_PER_FIELD = 8  # enough to score and highlight; later repeats only cost time


def _record(doc: Doc, label: str, spans: Spans, hits: list[Hit]) -> bool:
    """Add a leaf's spans to `hits` (at most MAX_SPANS_PER_FIELD per field); did it match?"""
    counts = [0, 0, 0, 0]
    for first, last in spans:
        field = first // STRIDE
        if counts[field] < MAX_SPANS_PER_FIELD:
            counts[field] += 1
            base = field * STRIDE
            hits.append((label, field, first - base, last - base))
    return bool(spans)


class CWords:
    """A word, phrase, prefix or proximity phrase: the one leaf that reads the article's words.

    `positions` (the reference) reads them from the word index, `spans` (the fast path) by
    searching the words joined, so the two are checked against each other."""

    def __init__(self, words: tuple[str, ...], prefix: bool, slop: int | None, label: str):
        self.words = words
        self.prefix = prefix
        self.slop = slop
        self.label = label
        self.scan = tuple(
            _hangul(w) or (prefix and i == len(words) - 1) for i, w in enumerate(words)
        )
        self.unspaced = tuple(_hangul(w) for w in words)
        fixed = [w for i, w in enumerate(words) if not self.scan[i]]  # exact words
        self.need: Need
        if fixed:
            self.need = (frozenset({max(fixed, key=len)}), ())
        elif any(self.unspaced):  # inside a word of its script
            self.need = (frozenset(), (max(self.keys(), key=len).strip(),))
        else:  # a lone prefix starts a word
            self.need = (frozenset(), (" " + words[-1],))
        # Decided without positions: a lone word by the word set; a phrase or prefix by a
        # search of the words joined by spaces (" north korea " occurs where the two words
        # follow each other in one field, " launch" where a word starts with "launch").
        self._quick = 0
        if slop is None and not any(self.unspaced):
            self._quick = 1 if len(words) == 1 and not prefix else 2
        self._probe = " " + " ".join(words) + ("" if prefix else " ")
        # Each word as searched in the joined words: " word ", " prefix", or a Hangul word
        # alone (found inside longer words of its script, hence `True`).
        self._probes = tuple(
            (w, True) if self.unspaced[i] else (f" {w}" if self.scan[i] else f" {w} ", False)
            for i, w in enumerate(words)
        )

    def _word_positions(self, doc: Doc, i: int, fields: Fields) -> list[int]:
        word = self.words[i]
        if fields == DEFAULT_FIELDS:
            return self._both_positions(doc, i)
        found: list[int] = []
        for field in sorted(fields):
            if not self.scan[i]:
                found.extend(doc.positions(word, field))
                continue
            if self.unspaced[i]:  # inside longer words of its script only
                for token in doc.unspaced_vocab(field):
                    if word in token:
                        found.extend(doc.positions(token, field))
                continue
            ordered = doc.sorted_vocab(field)  # a prefix: the words from bisect on
            at = bisect_left(ordered, word)
            while at < len(ordered) and ordered[at].startswith(word):
                found.extend(doc.positions(ordered[at], field))
                at += 1
        if len(fields) > 1 or self.scan[i]:
            found.sort()
        return found

    def _both_positions(self, doc: Doc, i: int) -> list[int]:
        """`_word_positions` over title and summary, from the article's one-pass index (the
        list returned may be the index's own: callers do not change it)."""
        word = self.words[i]
        both = doc.both()
        if not self.scan[i]:
            return both.get(word, _NONE)
        if self.unspaced[i]:
            tokens = [token for token in doc.unspaced_vocab(TITLE) if word in token]
        else:
            ordered = doc.sorted_vocab(TITLE)
            at = bisect_left(ordered, word)
            end = at
            while end < len(ordered) and ordered[end].startswith(word):
                end += 1
            tokens = ordered[at:end]
        if not tokens:
            return _NONE
        if len(tokens) == 1:
            return both.get(tokens[0], _NONE)
        return sorted(p for token in tokens for p in both.get(token, _NONE))

    def positions(self, doc: Doc, fields: Fields) -> Spans:
        key = (id(self), fields)
        cached = doc.cache.get(key)
        if cached is not None:
            return cached
        spans = self._positions(doc, fields)
        doc.cache[key] = spans
        return spans

    def spans(self, doc: Doc, fields: Fields) -> Spans:
        """`positions` from searches of the words joined (`Doc.occurrences`), without
        indexing the article's words: most articles ask for a few terms only."""
        key = (id(self), fields)
        cached = doc.cache.get(key)
        if cached is not None:
            return cached
        if not fields <= DEFAULT_FIELDS:  # `source:` and `url:` have their own words
            spans = self._positions(doc, fields)
        elif self._quick:  # the joined words occur where the phrase (or prefix) does
            n = len(self.words) - 1
            spans = [(p, p + n) for p in doc.occurrences(self._probe, False, fields)]
        else:
            spans = self._joined(doc, fields)
        doc.cache[key] = spans
        return spans

    def _joined(self, doc: Doc, fields: Fields) -> Spans:
        """`_positions` with each word's positions from `Doc.occurrences`."""
        probes = self._probes
        return self._phrase(lambda i: doc.occurrences(*probes[i], fields=fields))

    def _positions(self, doc: Doc, fields: Fields) -> Spans:
        return self._phrase(lambda i: self._word_positions(doc, i, fields))

    def _phrase(self, word_at: Callable[[int], list[int]]) -> Spans:
        """The spans where the words follow each other (or come within the slop), from
        `word_at(i)`, the positions of word `i`; the others are not looked up when the first
        is absent."""
        first = word_at(0)
        n = len(self.words)
        if not first or n == 1:
            return [(p, p) for p in first]
        rest = [set(word_at(i)) for i in range(1, n)]
        if not all(rest):
            return []
        if self.slop is None:
            return [(p, p + n - 1) for p in first if all(p + i in rest[i - 1] for i in range(1, n))]
        return _window([first, *(sorted(s) for s in rest)], n - 1 + self.slop)

    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        return _record(doc, self.label, self.positions(doc, fields), hits)

    def collect(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        return _record(doc, self.label, self.spans(doc, fields), hits)

    def test(self, doc: Doc, fields: Fields) -> bool:
        quick = self._quick
        if quick and fields == DEFAULT_FIELDS:
            if quick == 1:
                return self.words[0] in doc.vocab(TITLE)
            return self._probe in doc.hay()
        return bool(self.spans(doc, fields))

    def clauses(self) -> Clauses:
        return [frozenset(self.keys())]

    def keys(self) -> set[str]:
        hangul = [w for w in self.words if _hangul(w)]
        if hangul:
            return {max(hangul, key=len)}
        if self.slop is not None:
            fixed = [w for i, w in enumerate(self.words) if not self.scan[i]] or [self.words[-1]]
            word = max(fixed, key=len)
            return {f" {word} " if not (self.prefix and word == self.words[-1]) else f" {word}"}
        return {" " + " ".join(self.words) + ("" if self.prefix else " ")}


def _window(lists: list[list[int]], width: int) -> Spans:
    """Spans where one position of every list lies within `width` words, same field."""
    events = sorted((p, i) for i, ps in enumerate(lists) for p in ps)
    need = len(lists)
    counts = [0] * need
    covered = 0
    left = 0
    out: Spans = []
    for right, (pos, idx) in enumerate(events):
        if counts[idx] == 0:
            covered += 1
        counts[idx] += 1
        while covered == need:
            start = events[left][0]
            fits = pos - start <= width and start // STRIDE == pos // STRIDE
            if fits and (not out or out[-1][1] < start):
                out.append((start, pos))
            li = events[left][1]
            counts[li] -= 1
            if counts[li] == 0:
                covered -= 1
            left += 1
        del right
    return out


def _collect_any(node: Any, screen: Screen, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
    """The hits of every child that matches, in order, remembered for the next watchlist."""
    key = (id(node), fields)
    if key in doc.found:
        known = doc.found[key]
        if known is None:
            return False
        hits.extend(known)
        return True
    mark = len(hits)
    matched = False
    for child in screen.live(doc, fields):
        matched = child.collect(doc, fields, hits) or matched
    doc.found[key] = tuple(hits[mark:]) if matched else None
    return matched


class CAlias:
    """A named list of phrases (from aliases.yaml); each matched member is reported by name."""

    def __init__(self, name: str, members: Sequence[CWords]):
        self.label = "@" + name
        self.members = tuple(members)
        self.need = union_need([m.need for m in self.members])
        self._screen = Screen(self.members)

    def positions(self, doc: Doc, fields: Fields) -> Spans:
        out: Spans = []
        for member in self.members:
            out.extend(member.positions(doc, fields))
        return sorted(out)

    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        matched = False
        for member in self.members:
            matched = member.evaluate(doc, fields, hits) or matched
        return matched

    def spans(self, doc: Doc, fields: Fields) -> Spans:
        key = (id(self), fields)
        cached = doc.cache.get(key)
        if cached is None:
            out: Spans = []
            for member in self._screen.live(doc, fields):
                out.extend(member.spans(doc, fields))
            cached = doc.cache[key] = sorted(out)
        return cached

    def test(self, doc: Doc, fields: Fields) -> bool:
        key = (id(self), fields)
        known = doc.truth.get(key)
        if known is None:
            live = self._screen.live(doc, fields)
            known = False
            for member in live:  # a loop, not any(): no generator per article
                if member.test(doc, fields):
                    known = True
                    break
            doc.truth[key] = known
        return known

    def collect(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        return _collect_any(self, self._screen, doc, fields, hits)

    def clauses(self) -> Clauses:
        out: set[str] = set()
        for member in self.members:
            out |= member.keys()
        return [frozenset(out)]


class CRegex:
    """An RE2 pattern over the text as published, case-insensitive unless it says `(?-i)`.

    RE2 runs in linear time, so no admin pattern can hang the matcher on hostile article text.
    """

    def __init__(self, pattern: str):
        options = re2.Options()
        options.log_errors = False
        options.case_sensitive = False
        try:
            self.regex: Any = re2.compile(pattern, options)
        except re2.error as exc:
            detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            raise q.QueryError(
                f"invalid regular expression /{pattern}/: {detail} (RE2 has no backreferences "
                "or lookaround; rewrite with plain words or alternation)"
            ) from exc
        self.label = "/" + pattern + "/"
        self.need: Need = None
        # Strings one of which every match contains as written: most articles have none, and
        # then RE2 is not run at all (a substring search each is cheaper).
        self.literals = tuple(sorted(required_literals(pattern)))

    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        """A match counts when it overlaps a word (so it can be scored and highlighted)."""
        return _record(doc, self.label, self.positions(doc, fields), hits)

    def spans(self, doc: Doc, fields: Fields) -> Spans:
        key = (id(self), fields)
        cached = doc.cache.get(key)
        if cached is None:
            # Most articles have no match at all: then their word bounds are never needed.
            texts = doc.texts
            search, may = self.regex.search, self._may
            if any(texts[f] and may(texts[f]) and search(texts[f]) for f in fields):
                cached = self._overlapped(doc, fields)
            else:
                cached = []
            doc.cache[key] = cached
        return cached

    def _may(self, text: str) -> bool:
        literals = self.literals
        return not literals or any(literal in text for literal in literals)

    def test(self, doc: Doc, fields: Fields) -> bool:
        return bool(self.spans(doc, fields))

    def collect(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        return _record(doc, self.label, self.spans(doc, fields), hits)

    def _overlapped(self, doc: Doc, fields: Fields) -> Spans:
        """`positions` with the words before a match counted by splitting the folded text
        before it (in C), where the fold kept every offset and words are the runs between
        spaces (no Hangul or CJK); elsewhere from the field's word bounds."""
        out: Spans = []
        for field in sorted(fields):
            text = doc.texts[field]
            if not text:
                continue
            folded = doc.mapped(field)
            plain = folded.text
            if folded.origin is not None or (not plain.isascii() and UNSPACED_RE.search(plain)):
                out.extend(self.positions(doc, frozenset({field})))
                continue
            base = field * STRIDE
            for found in self.regex.finditer(text):
                start, end = found.span()
                first = len(plain[:start].split())
                if 0 < start < len(plain) and plain[start - 1] != " " != plain[start]:
                    first -= 1  # the match starts inside a word: it overlaps that one
                last = len(plain[:end].split()) - 1
                if first <= last:
                    out.append((base + first, base + last))
        return out

    def positions(self, doc: Doc, fields: Fields) -> Spans:
        """Word positions the pattern's matches overlap, so a regex can take part in NEAR."""
        out: Spans = []
        for field in sorted(fields):
            text = doc.texts[field]
            if not text:
                continue
            bounds = doc.bounds(field)
            starts = [b[0] for b in bounds]
            base = field * STRIDE
            for found in self.regex.finditer(text):
                start, end = found.span()
                first = max(bisect_right(starts, start) - 1, 0)
                if first < len(bounds) and bounds[first][1] <= start:
                    first += 1
                last = bisect_left(starts, end) - 1
                if first <= last:
                    out.append((base + first, base + last))
        return out

    def clauses(self) -> Clauses:
        if not self.literals:
            return []
        return [frozenset(RAW + literal for literal in self.literals)]


class CAnd:
    def __init__(self, children: Sequence[CNode]):
        self.children = tuple(children)
        self.need = smallest_need([c.need for c in self.children])

    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        mark = len(hits)
        for child in self.children:
            if not child.evaluate(doc, fields, hits):
                del hits[mark:]
                return False
        return True

    def test(self, doc: Doc, fields: Fields) -> bool:
        for child in self.children:  # noqa: SIM110 (a loop, not all(): no generator per call)
            if not child.test(doc, fields):
                return False
        return True

    def collect(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        mark = len(hits)
        for child in self.children:
            if not child.collect(doc, fields, hits):
                del hits[mark:]
                return False
        return True

    def clauses(self) -> Clauses:
        out: Clauses = []
        for child in self.children:
            out.extend(child.clauses())
        return out


def key_rarity(key: str) -> int:
    """A corpus-free guess at how rare a prefilter key is: long, uncommon words score high.

    A literal of a regex (`RAW`) ranks lowest: it is checked, never indexed."""
    if key.startswith(RAW):
        return 0
    stripped = key.strip()
    if _hangul(stripped):
        return min(3 * len(stripped), 12)
    return min(sum(1 if w in _COMMON else min(len(w), 10) for w in stripped.split()), 20)


def rarity(keys: frozenset[str]) -> tuple[int, int]:
    """Rank a required key set: its commonest key decides; fewer alternatives is better."""
    return (min(key_rarity(k) for k in keys), -len(keys))


class COr:
    def __init__(self, children: Sequence[CNode], label: str):
        self.children = tuple(children)
        self.label = label
        self.need = union_need([c.need for c in self.children])
        self._screen = Screen(self.children)

    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        matched = False
        for child in self.children:  # no short-circuit: every matching term is evidence
            matched = child.evaluate(doc, fields, hits) or matched
        return matched

    def positions(self, doc: Doc, fields: Fields) -> Spans:
        out: Spans = []
        for child in self.children:
            positional: Positional = child  # type: ignore[assignment]
            out.extend(positional.positions(doc, fields))
        return sorted(out)

    def spans(self, doc: Doc, fields: Fields) -> Spans:
        key = (id(self), fields)
        cached = doc.cache.get(key)
        if cached is None:
            out: Spans = []
            for child in self._screen.live(doc, fields):
                out.extend(child.spans(doc, fields))
            cached = doc.cache[key] = sorted(out)
        return cached

    def test(self, doc: Doc, fields: Fields) -> bool:
        key = (id(self), fields)
        known = doc.truth.get(key)
        if known is None:
            known = False
            for child in self._screen.live(doc, fields):
                if child.test(doc, fields):
                    known = True
                    break
            doc.truth[key] = known
        return known

    def collect(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        return _collect_any(self, self._screen, doc, fields, hits)

    def clauses(self) -> Clauses:
        out: set[str] = set()
        for child in self.children:
            found = child.clauses()
            if not found:
                return []
            best: frozenset[str] = max(found, key=rarity)  # the child's most selective one
            out |= best
        return [frozenset(out)]


class CNot:
    def __init__(self, child: CNode):
        self.child = child
        self.need: Need = None

    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        return not self.child.evaluate(doc, fields, [])

    def test(self, doc: Doc, fields: Fields) -> bool:
        return not self.child.test(doc, fields)

    def collect(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        return not self.child.test(doc, fields)

    def clauses(self) -> Clauses:
        return []


class CField:
    def __init__(self, field: str, child: CNode, label: str):
        self.fields: Fields = frozenset({FIELD_IDS[field]})
        self.child = child
        self.label = label
        self.filter_only = field in ("source", "url")
        self.need = None if self.filter_only else child.need

    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        return self.child.evaluate(doc, self.fields, hits)

    def test(self, doc: Doc, fields: Fields) -> bool:
        return self.child.test(doc, self.fields)

    def collect(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        return self.child.collect(doc, self.fields, hits)

    def positions(self, doc: Doc, fields: Fields) -> Spans:
        child: Positional = self.child  # type: ignore[assignment]
        return child.positions(doc, self.fields)

    def spans(self, doc: Doc, fields: Fields) -> Spans:
        child: Positional = self.child  # type: ignore[assignment]
        return child.spans(doc, self.fields)

    def clauses(self) -> Clauses:
        return [] if self.filter_only else self.child.clauses()


class CNear:
    def __init__(self, left: Positional, right: Positional, distance: int, label: str):
        self.left = left
        self.right = right
        self.distance = distance
        self.label = label
        self.need = smallest_need([left.need, right.need])

    def _pairs(
        self, doc: Doc, fields: Fields, fast: bool = False
    ) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        lefts = self.left.spans(doc, fields) if fast else self.left.positions(doc, fields)
        if not lefts:
            return []
        rights = self.right.spans(doc, fields) if fast else self.right.positions(doc, fields)
        out = []
        for a in lefts:
            for b in rights:
                if a[0] // STRIDE != b[0] // STRIDE:
                    continue
                gap = b[0] - a[1] - 1 if b[0] > a[1] else a[0] - b[1] - 1
                if gap <= self.distance:
                    out.append((a, b))
        return out

    def spans(self, doc: Doc, fields: Fields) -> Spans:
        key = (id(self), fields)
        cached = doc.cache.get(key)
        if cached is None:
            pairs = self._pairs(doc, fields, fast=True)
            cached = doc.cache[key] = sorted({(min(a[0], b[0]), max(a[1], b[1])) for a, b in pairs})
        return cached

    def test(self, doc: Doc, fields: Fields) -> bool:
        return bool(self.spans(doc, fields))

    def collect(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        pairs = self._pairs(doc, fields, fast=True)
        if not pairs:
            return False
        ranges = [
            (a[0] // STRIDE, min(a[0], b[0]) % STRIDE, max(a[1], b[1]) % STRIDE) for a, b in pairs
        ]
        leaves: list[Hit] = []
        self.left.collect(doc, fields, leaves)
        self.right.collect(doc, fields, leaves)
        for hit in leaves:
            if any(f == hit[1] and s <= hit[2] and hit[3] <= e for f, s, e in ranges):
                hits.append(hit)
        return True

    def positions(self, doc: Doc, fields: Fields) -> Spans:
        return sorted({(min(a[0], b[0]), max(a[1], b[1])) for a, b in self._pairs(doc, fields)})

    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        pairs = self._pairs(doc, fields)
        if not pairs:
            return False
        # Report the leaf terms (not the whole sub-query) that lie inside a matching pair.
        ranges = [
            (a[0] // STRIDE, min(a[0], b[0]) % STRIDE, max(a[1], b[1]) % STRIDE) for a, b in pairs
        ]
        leaves: list[Hit] = []
        self.left.evaluate(doc, fields, leaves)
        self.right.evaluate(doc, fields, leaves)
        for hit in leaves:
            if any(f == hit[1] and s <= hit[2] and hit[3] <= e for f, s, e in ranges):
                hits.append(hit)
        return True

    def clauses(self) -> Clauses:
        return self.left.clauses() + self.right.clauses()


class Compiler:
    """Turns ASTs into evaluators, sharing one compiled alias per name across watchlists."""

    def __init__(self, aliases: Mapping[str, Sequence[str]]):
        self.aliases = aliases
        self._alias_cache: dict[str, CAlias] = {}

    def alias(self, name: str) -> CAlias:
        found = self._alias_cache.get(name)
        if found is None:
            if name not in self.aliases:
                known = ", ".join("@" + n for n in sorted(self.aliases)) or "none defined"
                raise q.QueryError(
                    f"unknown alias @{name}: define it in aliases.yaml (known: {known})"
                )
            members: list[CWords] = []
            seen: set[tuple[tuple[str, ...], bool]] = set()
            for text in self.aliases[name]:
                leaf = words_leaf(text, None)
                if (leaf.words, leaf.prefix) not in seen:  # "Kim Jong Un" = "Kim Jong-un"
                    seen.add((leaf.words, leaf.prefix))
                    members.append(leaf)
            found = self._alias_cache[name] = CAlias(name, members)
        return found

    def compile(self, node: q.Node) -> CNode:
        if isinstance(node, q.Term):
            return words_leaf(node.text + ("*" if node.prefix else ""), None)
        if isinstance(node, q.Phrase):
            return words_leaf(node.text, node.slop)
        if isinstance(node, q.Alias):
            return self.alias(node.name)
        if isinstance(node, q.Regex):
            return CRegex(node.pattern)
        if isinstance(node, q.Field):
            return CField(node.field, self.compile(node.child), q.to_string(node))
        if isinstance(node, q.Not):
            return CNot(self.compile(node.child))
        if isinstance(node, q.And):
            return CAnd([self.compile(c) for c in node.children])
        if isinstance(node, q.Or):
            return COr([self.compile(c) for c in node.children], q.to_string(node))
        left, right = self.compile(node.left), self.compile(node.right)
        return CNear(left, right, node.distance, q.to_string(node))  # type: ignore[arg-type]


def words_leaf(text: str, slop: int | None) -> CWords:
    """A leaf for words as written: `Kim Jong-un`, `launch*`, or a phrase with a slop."""
    stripped = text.strip()
    prefix = stripped.endswith("*")
    words = fold_term(stripped.rstrip("*"))
    if not words:
        raise q.QueryError(f"'{text}' has no letters or digits to match")
    label = stripped if slop is None else f'"{stripped}"~{slop}'
    return CWords(words, prefix, slop, label)
