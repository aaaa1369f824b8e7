"""A regex's required literals (`monitor.query.literals`): every RE2 match contains one of them,
so the prefilter and the regex leaf may skip articles without any; and the prefilter, given
them, still finds every watchlist the full evaluation matches."""

from __future__ import annotations

from pathlib import Path

import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.model import Article, Watchlist
from monitor.query.literals import required_literals
from monitor.query.matcher import compile_matcher
from monitor.watchlists import AlertSpec


def _re2(pattern: str) -> object:
    options = re2.Options()
    options.case_sensitive = False  # as CRegex compiles every pattern
    return re2.compile(pattern, options)


def test_the_un_regex_needs_un_as_written() -> None:
    assert required_literals(r"(?-i)\bU\.?N\.?\b") == {"UN", "U.N"}
    assert required_literals(r"(^|[^가-힣])북([^가-힣]|$)") == {"북"}
    assert required_literals("安保理") == {"安保理"}
    assert required_literals("(?-i)(IAEA|UNSC) report") == {"IAEA report", "UNSC report"}


def test_patterns_it_cannot_read_safely_give_nothing() -> None:
    for pattern in (
        "launch(ed)?",  # case-insensitive letters: other cases match too
        r"hwasong-?\d+",
        "(?-i)[[:alpha:]]x",  # RE2's class, another thing to Python
        "(?-i)ab{,2}c",  # RE2 reads {,2} as text
        r"(?-i)\pLx",
        "(?-i)(?i:un)",
        "(?-i).*",
        "(?-i)a?",
    ):
        assert required_literals(pattern) == frozenset(), pattern


_PIECES = ["U", "N", "u", "n", "a", "b", "북", " ", r"\.", "."]


@st.composite
def _patterns(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 2 or draw(st.booleans()):
        return draw(st.sampled_from(_PIECES))
    kind = draw(st.sampled_from(["seq", "seq", "alt", "opt", "plus", "star", "class", "rep", "b"]))
    if kind == "seq":
        return "".join(draw(st.lists(_patterns(depth + 1), min_size=1, max_size=4)))
    if kind == "alt":
        parts = draw(st.lists(_patterns(depth + 1), min_size=2, max_size=3))
        return "(" + "|".join(parts) + ")"
    if kind == "class":
        return "[" + "".join(draw(st.lists(st.sampled_from("UNab"), min_size=1, max_size=5))) + "]"
    if kind == "b":
        return r"\b" + draw(_patterns(depth + 1)) + r"\b"
    suffix = {"opt": "?", "plus": "+", "star": "*", "rep": "{2}"}[kind]
    return "(" + draw(_patterns(depth + 1)) + ")" + suffix


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["", "(?-i)"]),
    _patterns(),
    st.lists(st.lists(st.sampled_from(["U", "N", "u", "n", "a", "b", "북", " ", ".", "x"]))),
)
def test_every_match_contains_a_literal(flag: str, body: str, texts: list[list[str]]) -> None:
    pattern = flag + body
    literals = required_literals(pattern)
    regex = _re2(pattern)
    for text in ["".join(t) for t in texts] + ["U.N.", "UN", "xUNx", "un", "북한"]:
        if literals and regex.search(text):
            assert any(literal in text for literal in literals), (pattern, text, literals)


def _article(title: str, text: str) -> Article:
    return Article("wire", "k", "", title, text, None, "h")


def test_the_prefilter_keeps_every_article_the_regex_matches() -> None:
    """Through the matcher: an article is left out only when no literal occurs, and the fast
    path (prefilter, literal pre-test) agrees with the full evaluation either way."""
    wl = Watchlist(
        id="un",
        name="UN",
        description="",
        query=r"(korea OR pyongyang) AND (/(?-i)\bU\.?N\.?\b/ OR sanction*)",
        exclude=None,
        min_score=0.0,
        sources=(),
        alert=AlertSpec(),
        path=Path("un.yaml"),
    )
    matcher = compile_matcher([wl])
    cases = {
        ("Korea at the U.N.", ""): True,
        ("", "North Korea told the UN on Monday"): True,
        ("Korea", "UN"): True,  # the literal in the summary, the word in the title
        ("Korea sanctioned", ""): True,
        ("Korea and the un", ""): False,  # case-sensitive
        ("Korea", "Kim Jong Un spoke"): False,
        ("Pyongyang", "UNESCO"): False,  # the literal occurs, the regex does not match
    }
    for (title, text), expected in cases.items():
        article = _article(title, text)
        assert bool(matcher.match(article)) is expected, (title, text)
        assert matcher.match(article) == matcher.match_exhaustive(article)
    assert matcher.candidates(_article("Korea", "the un and u.n")) == []
    assert matcher.candidates(_article("Korea", "the U.N")) == [0]
