"""The literal prefilter: which watchlists can possibly match an article.

Every compiled query states the literals any match must contain, as an AND of OR-sets
(`CNode.clauses()`). The most selective set of each watchlist is indexed: whole words by a set
intersection with the article's words, prefixes and Hangul by an Aho-Corasick automaton; the
other sets are checked against the article's words, a phrase by substring search, and their
prefixes and Hangul are found by the same automaton pass. A regex contributes the strings one
of which its every match contains as written (`monitor.query.literals`, marked `RAW`), looked
for in the raw title and summary. Watchlists with no such literal (a lone NOT, a regex without
literals, `source:` filters) always pass. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import ahocorasick

from monitor.query.evaluate import RAW, key_rarity, rarity


class Prefilter:
    """Indexes each watchlist's required literals; `candidates` finds those present."""

    def __init__(
        self, requires: Sequence[tuple[frozenset[str], ...]], also: Iterable[str] = ()
    ) -> None:
        """`also`: more substring keys for the automata to look for (the evaluator's prefix
        and Hangul probes), reported by `candidates` with the rest."""
        self._always: list[int] = []
        # Whole-word keys are found by a set intersection on their rarest word, then confirmed
        # by substring search; prefix and Hangul keys go through the Aho-Corasick automaton.
        by_word: dict[str, dict[str | None, list[int]]] = {}  # key None: the word itself
        self._by_ac: dict[str, list[int]] = {}
        self._rest: list[tuple[Clause | frozenset[str], ...]] = []
        self._checked: list[int] = []  # only regex literals required: every clause checked
        for index, item_requires in enumerate(requires):
            if not item_requires:
                self._always.append(index)
                self._rest.append(())
                continue
            best = max(item_requires, key=rarity)
            if any(key.startswith(RAW) for key in best):  # nothing to index
                self._checked.append(index)
                self._rest.append(_clauses(item_requires))
                continue
            self._rest.append(_clauses([c for c in item_requires if c is not best]))
            for key in best:
                if len(key) > 2 and key[0] == " " and key[-1] == " ":
                    word = max(key.split(), key=key_rarity)
                    single = key == f" {word} "
                    keys = by_word.setdefault(word, {})
                    keys.setdefault(None if single else key, []).append(index)
                else:
                    self._by_ac.setdefault(key, []).append(index)
        # Per word: the watchlists it alone indexes, and each longer key containing it with
        # the watchlists it indexes (one search per key, however many watchlists share it).
        self._by_word: dict[str, tuple[list[int], tuple[tuple[str, list[int]], ...]]] = {
            word: (keys.pop(None, []), tuple((k, v) for k, v in keys.items() if k is not None))
            for word, keys in by_word.items()
        }
        self._word_keys = frozenset(self._by_word)
        # The automata also find the other sets' substring keys (`Clause.loose`): one pass over
        # the text instead of a search per key. Keys with non-ASCII letters (Hangul) can only
        # occur in non-ASCII text: a second automaton spares the scan of every English article.
        searched = dict.fromkeys(self._by_ac)
        for clauses in self._rest:
            for clause in clauses:
                if isinstance(clause, Clause):
                    searched.update(dict.fromkeys(sorted(clause.loose)))
        searched.update(dict.fromkeys(sorted(also)))
        self.searched = frozenset(searched)
        self._ac_ascii = _automaton([k for k in searched if k.isascii()])
        self._ac_other = _automaton([k for k in searched if not k.isascii()])

    def candidates(
        self, title: list[str], text: list[str], raw: tuple[str, str] | None = None
    ) -> tuple[list[int], set[str], str, set[str]]:
        """Indices whose every required literal occurs, the article's word set, the words
        joined as searched and the automata's keys found in them (the evaluator reuses all
        three).

        `raw` is the title and summary as written, where regexes' literals are looked for;
        without it those count as present."""
        found: set[int] = set(self._always)
        # Two spaces between the fields: a phrase key never spans title and summary.
        hay = " " + " ".join(title) + "  " + " ".join(text) + " "
        present = set(title)  # the word set first: intersecting it beats scanning the words
        present.update(text)
        rest = self._rest
        hits: list[int] = list(self._checked)
        by_word = self._by_word
        for word in self._word_keys.intersection(present):
            alone, longer = by_word[word]
            hits.extend(alone)
            for key, indices in longer:
                if key in hay:
                    hits.extend(indices)
        searched = self._searched(hay)
        by_ac = self._by_ac
        for key in searched:
            indexed = by_ac.get(key)
            if indexed is not None:
                hits.extend(indexed)
        for index in set(hits):  # each once, whichever keys found it
            clauses = rest[index]
            if clauses:
                for clause in clauses:
                    if isinstance(clause, frozenset):  # single words only (`_clause`)
                        if clause.isdisjoint(present):
                            break
                    elif not clause.met(present, hay, searched, raw):
                        break
                else:
                    found.add(index)
                continue
            found.add(index)
        return sorted(found), present, hay, searched

    def _searched(self, hay: str) -> set[str]:
        """The automata's keys that occur in `hay` (the non-ASCII ones in non-ASCII text)."""
        out: set[str] = set()
        for automaton in (self._ac_ascii, self._ac_other if not hay.isascii() else None):
            if automaton is not None:
                out.update([key for _, key in automaton.iter(hay)])
        return out


def _clauses(sets: Sequence[frozenset[str]]) -> tuple[Clause | frozenset[str], ...]:
    """The sets to check, each `Clause` after its `gate` when it has one (a word set that must
    meet the article's words, checked first in C)."""
    out: list[Clause | frozenset[str]] = []
    for keys in sets:
        clause = _clause(keys)
        if isinstance(clause, Clause) and clause.gate is not None:
            out.append(clause.gate)
        out.append(clause)
    return tuple(out)


def _clause(keys: frozenset[str]) -> Clause | frozenset[str]:
    """A set of single whole words is checked as the words themselves (one C call, the
    commonest kind: "launch OR fired OR tests"); any other set by a `Clause`."""
    if all(len(k) > 2 and k[0] == " " == k[-1] and " " not in k[1:-1] for k in keys):
        return frozenset(k[1:-1] for k in keys)
    return Clause(keys)


class Clause:
    """One required key set beyond the indexed one, checked cheapest first: single whole words
    against the article's word set; a longer key only when a whole word it contains is among
    the article's words (then by substring search); keys without such a word (a lone prefix,
    Hangul) among those the prefilter's automata found in the article."""

    __slots__ = ("bare", "by_word", "gate", "loose", "raw", "words")

    def __init__(self, clause: frozenset[str]) -> None:
        bare: set[str] = set()
        by_word: dict[str, list[str]] = {}
        loose: list[str] = []
        self.raw = tuple(sorted(k[len(RAW) :] for k in clause if k.startswith(RAW)))
        for key in sorted(k for k in clause if not k.startswith(RAW)):
            inner = key.split()
            whole = inner[:-1] if not key.endswith(" ") else inner  # the last may be a prefix
            if len(inner) == 1 and key == f" {inner[0]} ":
                bare.add(inner[0])
            elif key.startswith(" ") and whole:
                by_word.setdefault(max(whole, key=key_rarity), []).append(key)
            else:
                loose.append(key)
        self.bare = frozenset(bare)
        self.by_word = {w: tuple(keys) for w, keys in by_word.items()}
        self.words = frozenset(self.by_word)
        self.loose = frozenset(loose)
        # Without loose or regex keys, none of these words present means the set is not met.
        self.gate = None if loose or self.raw else self.bare | self.words

    def met(
        self,
        present: set[str],
        hay: str,
        searched: set[str] | None = None,
        raw: tuple[str, str] | None = None,
    ) -> bool:
        """Whether a key occurs; `searched` holds the loose keys found in `hay` (all of them,
        or None to search for each)."""
        if not self.bare.isdisjoint(present):
            return True
        for word in self.words.intersection(present):
            for key in self.by_word[word]:
                if key in hay:
                    return True
        if self.loose:
            if searched is not None:
                if not self.loose.isdisjoint(searched):
                    return True
            elif any(key in hay for key in self.loose):
                return True
        if self.raw:  # a regex's literals, in one field as written (a match never spans two)
            if raw is None:
                return True
            title, text = raw
            return any(key in title or key in text for key in self.raw)
        return False


def _automaton(keys: list[str]) -> Any:
    if not keys:
        return None
    automaton = ahocorasick.Automaton()
    for key in keys:
        automaton.add_word(key, key)
    automaton.make_automaton()
    return automaton
