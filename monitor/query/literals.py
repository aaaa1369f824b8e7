"""Required literals of a regular expression: strings one of which every match contains.

`/(?-i)\\bU\\.?N\\.?\\b/` has no word the prefilter could index, yet each of its matches
contains "UN" or "U.N" as written; checking those (case-sensitive, C-speed substring search)
before RE2 runs spares the search, and the prefilter uses them to drop articles that cannot
match. The pattern is read with Python's regex parser, which reads RE2's common syntax the same
way; anything it reads differently or that this does not model (flags other than a leading
`(?i)` / `(?-i)`, back-references, Unicode classes, …) gives no literals, which is always safe.
Case-insensitive patterns keep only literals without cased letters (Hangul, digits). Pure.
"""

from __future__ import annotations

import re
from typing import Any

try:  # Python 3.11+: the parser behind `re`, private but stable in shape
    from re import _constants as _c  # type: ignore[attr-defined]
    from re import _parser as _p  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - an interpreter without it: no literals
    _c = _p = None

MAX_SET = 16  # strings a set may hold before it is given up (an exact set) or narrowed
MAX_CLASS = 4  # characters of a [class] expanded into alternatives
_FLAGS_RE = re.compile(r"\(\?[a-zA-Z-]*[):]")


#: RE2 syntax that Python's parser reads as something else ([[:alpha:]], a{,3}) or not at all.
_UNSAFE = ("[:", "{,", "\\p", "\\P", "\\Q", "\\C", "\\x{")


def required_literals(pattern: str, case_sensitive: bool = False) -> frozenset[str]:
    """Strings one of which occurs in the text wherever `pattern` (RE2, case-insensitive
    unless it starts with `(?-i)`) matches; empty when nothing safe is known."""
    if _p is None or any(u in pattern for u in _UNSAFE):
        return frozenset()
    body = pattern
    while True:
        if body.startswith("(?-i)"):
            case_sensitive, body = True, body[5:]
        elif body.startswith("(?i)"):
            case_sensitive, body = False, body[4:]
        else:
            break
    if any(m.group() != "(?:" for m in _FLAGS_RE.finditer(body)):
        return frozenset()  # other flags, scoped flags: not modelled
    try:
        _exact, required = _Reader(case_sensitive).seq(list(_p.parse(body)))
    except (re.error, _Unknown, RecursionError, OverflowError, ValueError):
        return frozenset()
    if required is None or "" in required:
        return frozenset()
    return frozenset(_minimal(required))


class _Unknown(Exception):
    """A construct not modelled: the pattern gets no literals."""


Strings = frozenset[str] | None  # None: not known (any string)
_EMPTY = frozenset({""})


def _minimal(strings: frozenset[str]) -> set[str]:
    """Drop strings that contain another of the set (the shorter one is found wherever the
    longer one is)."""
    return {s for s in strings if not any(t != s and t in s for t in strings)}


def _best(a: Strings, b: Strings) -> Strings:
    """The more useful of two requirements that both hold: the one whose shortest string is
    longer; an unknown one, or one holding "", requires nothing."""
    if a is None or "" in a:
        return b
    if b is None or "" in b:
        return a
    return a if min(map(len, a)) >= min(map(len, b)) else b


class _Reader:
    """(exact, required) of each parsed node: `exact` every string the node can match (when
    there are few), `required` strings one of which each of its matches contains."""

    def __init__(self, case_sensitive: bool) -> None:
        self.case_sensitive = case_sensitive

    def seq(self, items: list[tuple[Any, Any]]) -> tuple[Strings, Strings]:
        """A concatenation: each run of items with exact sets gives the strings of the run
        (their products); a match contains one of every run's strings."""
        run: frozenset[str] = _EMPTY
        required: Strings = None
        whole = True
        for op, av in items:
            exact, req = self.node(op, av)
            if exact is not None and len(run) * len(exact) <= MAX_SET:
                run = frozenset(x + y for x in run for y in exact)
                continue
            whole = False
            required = _best(required, run)
            if exact is not None:
                run = exact
            else:
                required = _best(required, req)
                run = _EMPTY
        required = _best(required, run)
        return (run if whole else None), required

    def node(self, op: Any, av: Any) -> tuple[Strings, Strings]:
        c = _c
        if op is c.LITERAL:
            ch = chr(av)
            if not self.case_sensitive and ch.lower() != ch.upper():
                return None, None  # matches other cases too
            return frozenset({ch}), frozenset({ch})
        if op is c.AT:  # ^ $ \b \B \A \Z: no characters
            return _EMPTY, None
        if op is c.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if add_flags or del_flags:
                raise _Unknown
            return self.seq(list(sub))
        if op is c.BRANCH:
            return self.branch(av[1])
        if op is c.IN:
            return self.chars(av)
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", c.MAX_REPEAT)):
            return self.repeat(*av)
        if op in (c.ANY, c.CATEGORY, c.NOT_LITERAL):
            return None, None
        raise _Unknown  # back-references, lookaround, …: not RE2, or not modelled

    def branch(self, branches: list[Any]) -> tuple[Strings, Strings]:
        """An alternation: a match contains a string of one branch's set."""
        exacts: set[str] = set()
        reqs: set[str] = set()
        exact_ok = req_ok = True
        for branch in branches:
            exact, req = self.seq(list(branch))
            if exact is None:
                exact_ok = False
            else:
                exacts |= exact
            best = exact if exact is not None else req
            if best is None or "" in best:
                req_ok = False
            else:
                reqs |= best
        return (
            frozenset(exacts) if exact_ok and len(exacts) <= MAX_SET else None,
            frozenset(reqs) if req_ok and len(reqs) <= MAX_SET else None,
        )

    def chars(self, items: list[tuple[Any, Any]]) -> tuple[Strings, Strings]:
        """A [class] of a few single characters stands for them; any other class for none."""
        c = _c
        chars: set[str] = set()
        for kind, value in items:
            if kind is not c.LITERAL:
                return None, None  # a range, negation or category: no literal
            ch = chr(value)
            if not self.case_sensitive and ch.lower() != ch.upper():
                return None, None
            chars.add(ch)
        if 0 < len(chars) <= MAX_CLASS:
            return frozenset(chars), frozenset(chars)
        return None, None

    def repeat(self, low: int, high: int, sub: Any) -> tuple[Strings, Strings]:
        """Optional once: its strings or none; at least once: its requirement holds."""
        exact, req = self.seq(list(sub))
        if low == 0:
            if high == 1 and exact is not None:
                return exact | _EMPTY, None
            return None, None
        if low == high == 1:
            return exact, req
        return None, (exact if exact is not None else req)  # one copy at least
