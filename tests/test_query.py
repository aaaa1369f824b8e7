"""The query parser: a table of accepted shapes, a table of errors, and round-trip properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.query.syntax import (
    Alias,
    And,
    Field,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    QueryError,
    Regex,
    Term,
    aliases_used,
    make_and,
    make_or,
    parse,
    to_string,
)

CASES: list[tuple[str, Node, str]] = [
    ("missile", Term("missile"), "missile"),
    ("launch*", Term("launch", prefix=True), "launch*"),
    ("Kim Jong-un", And((Term("Kim"), Term("Jong-un"))), "Kim AND Jong-un"),
    ('"Kim Jong Un"', Phrase("Kim Jong Un"), '"Kim Jong Un"'),
    ('"kim letter"~10', Phrase("kim letter", 10), '"kim letter"~10'),
    ("a OR b", Or((Term("a"), Term("b"))), "a OR b"),
    ("a b OR c", Or((And((Term("a"), Term("b"))), Term("c"))), "a AND b OR c"),
    ("a (b OR c)", And((Term("a"), Or((Term("b"), Term("c"))))), "a AND (b OR c)"),
    ("a AND (b AND c)", And((Term("a"), Term("b"), Term("c"))), "a AND b AND c"),
    ("NOT a", Not(Term("a")), "NOT a"),
    ("-a b", And((Not(Term("a")), Term("b"))), "NOT a AND b"),
    ("a -(b OR c)", And((Term("a"), Not(Or((Term("b"), Term("c")))))), "a AND NOT (b OR c)"),
    ("@kim", Alias("kim"), "@kim"),
    ("/hwasong-?\\d+/", Regex("hwasong-?\\d+"), "/hwasong-?\\d+/"),
    ("/a\\/b/", Regex("a/b"), "/a\\/b/"),
    ("title:missile", Field("title", Term("missile")), "title:missile"),
    (
        "summary:(a OR b)",
        Field("summary", Or((Term("a"), Term("b")))),
        "summary:(a OR b)",
    ),
    ("source:kcna", Field("source", Term("kcna")), "source:kcna"),
    ('url:"north-korea"', Field("url", Phrase("north-korea")), 'url:"north-korea"'),
    ("@kim NEAR/10 letter", Near(Alias("kim"), Term("letter"), 10), "@kim NEAR/10 letter"),
    (
        "a NEAR/3 b NEAR/2 c",
        Near(Near(Term("a"), Term("b"), 3), Term("c"), 2),
        "a NEAR/3 b NEAR/2 c",
    ),
    (
        "a NEAR/3 (b NEAR/2 c)",
        Near(Term("a"), Near(Term("b"), Term("c"), 2), 3),
        "a NEAR/3 (b NEAR/2 c)",
    ),
    (
        "(a OR b) NEAR/5 /x+/",
        Near(Or((Term("a"), Term("b"))), Regex("x+"), 5),
        "(a OR b) NEAR/5 /x+/",
    ),
    ("북한 미사일", And((Term("북한"), Term("미사일"))), "북한 AND 미사일"),
    ("10:30", Term("10:30"), "10:30"),
    ("and or", And((Term("and"), Term("or"))), "and AND or"),  # only upper case is an operator
]


@pytest.mark.parametrize(("text", "ast", "canonical"), CASES)
def test_parse_table(text: str, ast: Node, canonical: str) -> None:
    assert parse(text) == ast
    assert to_string(ast) == canonical
    assert parse(canonical) == ast


ERRORS = [
    ("", 1, "empty query"),
    ("   ", 1, "empty query"),
    ("a AND", 6, "after AND"),
    ("a OR OR b", 6, "after OR"),
    ("(a", 1, "missing ')'"),
    ("a)", 2, "unmatched ')'"),
    ("foo:bar", 1, "unknown field 'foo:'"),
    ("a*b", 1, "may only end a word"),
    ('"abc', 1, "unclosed quote"),
    ('"a b"~x', 6, "number after ~"),
    ("a~2", 1, "proximity applies to phrases"),
    ("NOT", 4, "after NOT"),
    ("a NEAR/5 NOT b", 3, "NEAR joins"),
    ("a NEAR b", 3, "NEAR/10"),
    ("a NEAR/5000 b", 3, "too large"),
    ("/abc", 1, "unclosed regular expression"),
    ("//", 1, "empty regular expression"),
    ("title:title:x", 7, "nested"),
    ("title:(summary:x)", 8, "nested"),
    ("&&", 1, "no letters or digits"),
    ("@", 1, "alias as @name"),
    ('"***"', 1, "no letters or digits"),
]


@pytest.mark.parametrize(("text", "column", "fragment"), ERRORS)
def test_errors_name_the_column_and_the_fix(text: str, column: int, fragment: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse(text)
    assert caught.value.position is not None
    assert caught.value.position + 1 == column
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"column {column}: ")


def test_aliases_used() -> None:
    assert aliases_used(parse("@kim NEAR/5 (letter OR @greeting) -@noise")) == {
        "kim",
        "greeting",
        "noise",
    }


# ------------------------------------------------------------------------ properties

_ALPHABET = [*'ab ()"*:-/@~\\', "AND ", "OR ", "NOT ", "NEAR/3 ", "title:", "북", "é"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_ALPHABET), max_size=25).map("".join))
def test_parser_never_crashes_and_round_trips(text: str) -> None:
    try:
        ast = parse(text)
    except QueryError as exc:
        assert exc.message
        return
    canonical = to_string(ast)
    assert parse(canonical) == ast
    assert to_string(parse(canonical)) == canonical


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parser_never_crashes_on_any_text(text: str) -> None:
    try:
        ast = parse(text)
    except QueryError:
        return
    assert parse(to_string(ast)) == ast


_WORDS = st.sampled_from(["missile", "kim", "Jong-un", "launch", "북한", "Północna", "icbm", "10"])
_LEAF = st.one_of(
    st.builds(Term, _WORDS, st.booleans()),
    st.builds(
        Phrase,
        st.lists(_WORDS, min_size=1, max_size=3).map(" ".join),
        st.one_of(st.none(), st.integers(0, 20)),
    ),
    st.builds(Alias, st.sampled_from(["kim", "dprk", "un_activity"])),
    st.builds(Regex, st.sampled_from(["hwasong-?\\d+", "a/b", "(?-i)\\bUN\\b"])),
)


def _positional(node: Node) -> bool:
    from monitor.query.syntax import is_positional

    return is_positional(node)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.lists(children, min_size=2, max_size=3).map(make_and),
        st.lists(children, min_size=2, max_size=3).map(make_or),
        children.map(Not),
        st.builds(
            Near,
            children.filter(_positional),
            children.filter(_positional),
            st.integers(0, 30),
        ),
    )


_AST = st.recursive(_LEAF, _extend, max_leaves=8)
_FIELDED = st.one_of(_AST, st.builds(Field, st.sampled_from(["title", "summary"]), _LEAF))


@settings(max_examples=300, deadline=None)
@given(_FIELDED)
def test_ast_round_trips_through_text(ast: Node) -> None:
    assert parse(to_string(ast)) == ast
