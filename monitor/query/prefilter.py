"""The literal prefilter: which watchlists can possibly match an article.

Every compiled query states the literals any match must contain, as an AND of OR-sets
(`CNode.clauses()`). The most selective set of each watchlist is indexed: whole words by a set
intersection with the article's words, prefixes and Hangul by an Aho-Corasick automaton; the
other sets are checked by substring search. Watchlists with no such literal (a lone NOT, a bare
regex, `source:` filters) always pass. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ahocorasick

from monitor.query.evaluate import key_rarity, rarity


class Prefilter:
    """Indexes each watchlist's required literals; `candidates` finds those present."""

    def __init__(self, requires: Sequence[tuple[frozenset[str], ...]]) -> None:
        self._always: list[int] = []
        # Whole-word keys are found by a set intersection on their rarest word, then confirmed
        # by substring search; prefix and Hangul keys go through the Aho-Corasick automaton.
        self._by_word: dict[str, list[tuple[str | None, int]]] = {}  # key None: the word itself
        self._by_ac: dict[str, list[int]] = {}
        self._rest: list[tuple[tuple[frozenset[str], tuple[str, ...]], ...]] = []
        for index, item_requires in enumerate(requires):
            if not item_requires:
                self._always.append(index)
                self._rest.append(())
                continue
            best = max(item_requires, key=rarity)
            self._rest.append(tuple(_split_clause(c) for c in item_requires if c is not best))
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

    def candidates(
        self, title: list[str], text: list[str]
    ) -> tuple[list[int], set[str] | None, str]:
        """Indices whose every required literal occurs, the article's word set if it was
        built on the way and the words joined as searched (the evaluator reuses both)."""
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
        return sorted(found), present, hay


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
