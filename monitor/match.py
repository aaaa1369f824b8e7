"""All watchlists against one article: an Aho-Corasick prefilter, then exact evaluation.

Each watchlist query is compiled into a small tree of evaluators over a per-article word index.
For the prefilter, every watchlist is keyed under literals that any match must contain (for an
AND, the rarest-looking child; for an OR, all children), so an article only evaluates the
watchlists whose keys occur in its folded text. Watchlists with no such literal (a lone NOT, a
bare regex, `source:` filters) are always evaluated. Pure: plain values in, `Match` values out.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

import ahocorasick
import re2

from monitor import query as q
from monitor.model import Article, Match, Span
from monitor.textnorm import (
    WORD_RE,
    Folded,
    fold,
    fold_mapped,
    fold_term,
    fold_words,
    split_folded,
)
from monitor.textnorm import is_hangul_word as _hangul

if TYPE_CHECKING:
    from monitor.watchlists import Watchlist

TITLE, SUMMARY, SOURCE, URL = 0, 1, 2, 3
FIELD_IDS = {"title": TITLE, "summary": SUMMARY, "source": SOURCE, "url": URL}
FIELD_NAMES = ("title", "summary", "source", "url")
FIELD_WEIGHT = (2.0, 1.0, 0.0, 0.0)  # title evidence counts double; filters add nothing
DEFAULT_FIELDS = frozenset({TITLE, SUMMARY})
STRIDE = 1_000_000  # word positions of field f start at f * STRIDE, so phrases never cross fields
SNIPPET_CHARS = 240
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

Fields = frozenset[int]
Hit = tuple[str, int, int, int]  # (term label, field, first word, last word) within the field
Spans = list[tuple[int, int]]  # [first word position, last word position]
Clauses = list[frozenset[str]]  # AND of ORs of prefilter keys; [] means "no requirement"


# ------------------------------------------------------------------------------ document


class Doc:
    """One article's words, shared by every watchlist evaluated on it.

    Word positions of field f start at f * STRIDE. Nothing is indexed up front: a word's
    positions are found (by a C-speed list scan, after a set lookup) the first time a query asks,
    and character offsets (for highlights and regex positions) only when hits are reported.
    """

    __slots__ = (
        "_bounds",
        "_folded",
        "_iters",
        "_positions",
        "_present",
        "_tokens",
        "_vocab",
        "cache",
        "texts",
    )

    def __init__(
        self,
        article: Article,
        fields: Sequence[list[str]] | None = None,
        folded: Sequence[str] | None = None,
        present: set[str] | None = None,
    ) -> None:
        """`fields`, `folded` and `present` (words of title + summary) spare recomputing what
        the prefilter already has."""
        self.texts = (article.title, article.text, article.source_id, article.url)
        self.cache: dict[tuple[int, Fields], Spans] = {}
        self._folded: list[Folded | None] = [None, None, None, None]
        self._bounds: list[list[tuple[int, int]] | None] = [None, None, None, None]
        self._iters: list[Iterator[re.Match[str]] | None] = [None, None, None, None]
        self._tokens: list[list[str] | None] = [None, None, None, None]
        self._vocab: list[set[str] | None] = [None, None, None, None]
        self._positions: dict[tuple[str, int], list[int]] = {}
        for field, tokens in enumerate(fields or ()):
            self._tokens[field] = tokens
        for field, text in enumerate(folded or ()):
            self._folded[field] = fold_mapped(self.texts[field], text)
        self._present = present

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

    def word_spans(self, field: int, first: int) -> Iterator[tuple[int, int, int]]:
        """(word index, start, end) in the original text from word `first` on.

        The words before `first` are skipped inside the regex engine (islice), which is what
        keeps a snippet deep in a long article cheap.
        """
        folded = self._folded[field]
        if folded is None:
            folded = self._folded[field] = fold_mapped(self.texts[field])
        origin = folded.origin
        for index, m in enumerate(islice(WORD_RE.finditer(folded.text), first, None), first):
            start, end = m.span()
            if origin is None:
                yield index, start, end
            else:
                yield index, origin[start], origin[end - 1] + 1

    def bounds(
        self, field: int, upto: int | None = None, until: int | None = None
    ) -> list[tuple[int, int]]:
        """[start, end) of the field's words in the original text, at least up to word `upto`.

        Computed on demand and only as far as needed: long articles usually match early.
        """
        found = self._bounds[field]
        if found is None:
            found = self._bounds[field] = []
            folded = self._folded[field]
            if folded is None:
                folded = self._folded[field] = fold_mapped(self.texts[field])
            self._iters[field] = WORD_RE.finditer(folded.text)
        words = self._iters[field]
        if until is not None and found and found[-1][0] >= until:
            return found
        if words is not None and (upto is None or upto >= len(found)):
            origin = self._folded[field].origin  # type: ignore[union-attr]
            for m in words:
                start, end = m.span()
                found.append(
                    (start, end) if origin is None else (origin[start], origin[end - 1] + 1)
                )
                if upto is not None and len(found) > upto:
                    break
                if until is not None and found[-1][0] >= until:
                    break
            else:
                self._iters[field] = None
        return found


# ------------------------------------------------------------------------ compiled nodes


class CNode(Protocol):
    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool: ...

    def clauses(self) -> Clauses:
        """Literal requirements in AND-of-OR form: every match contains a key of each set."""
        ...


class Positional(CNode, Protocol):
    label: str

    def positions(self, doc: Doc, fields: Fields) -> Spans: ...


MAX_SPANS_PER_FIELD = 8  # enough to score and highlight; later repeats only cost time


def _record(doc: Doc, label: str, spans: Spans, hits: list[Hit]) -> None:
    counts = [0, 0, 0, 0]
    for first, last in spans:
        field = first // STRIDE
        if counts[field] < MAX_SPANS_PER_FIELD:
            counts[field] += 1
            base = field * STRIDE
            hits.append((label, field, first - base, last - base))


class CWords:
    """A word, phrase, prefix or proximity phrase: the one leaf that reads the word index."""

    def __init__(self, words: tuple[str, ...], prefix: bool, slop: int | None, label: str):
        self.words = words
        self.prefix = prefix
        self.slop = slop
        self.label = label
        self.scan = tuple(
            _hangul(w) or (prefix and i == len(words) - 1) for i, w in enumerate(words)
        )

    def _word_positions(self, doc: Doc, i: int, fields: Fields) -> list[int]:
        word = self.words[i]
        found: list[int] = []
        for field in sorted(fields):
            if not self.scan[i]:
                found.extend(doc.positions(word, field))
                continue
            hangul = _hangul(word)
            for token in doc.vocab(field):
                if (word in token) if hangul else token.startswith(word):
                    found.extend(doc.positions(token, field))
        if len(fields) > 1 or self.scan[i]:
            found.sort()
        return found

    def positions(self, doc: Doc, fields: Fields) -> Spans:
        key = (id(self), fields)
        cached = doc.cache.get(key)
        if cached is not None:
            return cached
        spans = self._positions(doc, fields)
        doc.cache[key] = spans
        return spans

    def _positions(self, doc: Doc, fields: Fields) -> Spans:
        first = self._word_positions(doc, 0, fields)
        n = len(self.words)
        if not first or n == 1:
            return [(p, p) for p in first]
        rest = [set(self._word_positions(doc, i, fields)) for i in range(1, n)]
        if not all(rest):
            return []
        if self.slop is None:
            return [(p, p + n - 1) for p in first if all(p + i in rest[i - 1] for i in range(1, n))]
        return _window([first, *(sorted(s) for s in rest)], n - 1 + self.slop)

    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        spans = self.positions(doc, fields)
        if spans:
            _record(doc, self.label, spans, hits)
            return True
        return False

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


class CAlias:
    """A named list of phrases (from aliases.yaml); each matched member is reported by name."""

    def __init__(self, name: str, members: Sequence[CWords]):
        self.label = "@" + name
        self.members = tuple(members)

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

    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        """A match counts when it overlaps a word (so it can be scored and highlighted)."""
        spans = self.positions(doc, fields)
        _record(doc, self.label, spans, hits)
        return bool(spans)

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
        return []


class CAnd:
    def __init__(self, children: Sequence[CNode]):
        self.children = tuple(children)

    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        mark = len(hits)
        for child in self.children:
            if not child.evaluate(doc, fields, hits):
                del hits[mark:]
                return False
        return True

    def clauses(self) -> Clauses:
        out: Clauses = []
        for child in self.children:
            out.extend(child.clauses())
        return out


def _key_rarity(key: str) -> int:
    """A corpus-free guess at how rare a prefilter key is: long, uncommon words score high."""
    stripped = key.strip()
    if _hangul(stripped):
        return min(3 * len(stripped), 12)
    return min(sum(1 if w in _COMMON else min(len(w), 10) for w in stripped.split()), 20)


def _rarity(keys: frozenset[str]) -> tuple[int, int]:
    """Rank a required key set: its commonest key decides; fewer alternatives is better."""
    return (min(_key_rarity(k) for k in keys), -len(keys))


class COr:
    def __init__(self, children: Sequence[CNode], label: str):
        self.children = tuple(children)
        self.label = label

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

    def clauses(self) -> Clauses:
        out: set[str] = set()
        for child in self.children:
            found = child.clauses()
            if not found:
                return []
            best: frozenset[str] = max(found, key=_rarity)  # the child's most selective one
            out |= best
        return [frozenset(out)]


class CNot:
    def __init__(self, child: CNode):
        self.child = child

    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        return not self.child.evaluate(doc, fields, [])

    def clauses(self) -> Clauses:
        return []


class CField:
    def __init__(self, field: str, child: CNode, label: str):
        self.fields: Fields = frozenset({FIELD_IDS[field]})
        self.child = child
        self.label = label
        self.filter_only = field in ("source", "url")

    def evaluate(self, doc: Doc, fields: Fields, hits: list[Hit]) -> bool:
        return self.child.evaluate(doc, self.fields, hits)

    def positions(self, doc: Doc, fields: Fields) -> Spans:
        child: Positional = self.child  # type: ignore[assignment]
        return child.positions(doc, self.fields)

    def clauses(self) -> Clauses:
        return [] if self.filter_only else self.child.clauses()


class CNear:
    def __init__(self, left: Positional, right: Positional, distance: int, label: str):
        self.left = left
        self.right = right
        self.distance = distance
        self.label = label

    def _pairs(self, doc: Doc, fields: Fields) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        lefts = self.left.positions(doc, fields)
        if not lefts:
            return []
        rights = self.right.positions(doc, fields)
        out = []
        for a in lefts:
            for b in rights:
                if a[0] // STRIDE != b[0] // STRIDE:
                    continue
                gap = b[0] - a[1] - 1 if b[0] > a[1] else a[0] - b[1] - 1
                if gap <= self.distance:
                    out.append((a, b))
        return out

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
            best = max(item.requires, key=_rarity)
            self._rest.append(tuple(_split_clause(c) for c in item.requires if c is not best))
            for key in best:
                if len(key) > 2 and key[0] == " " and key[-1] == " ":
                    word = max(key.split(), key=_key_rarity)
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
