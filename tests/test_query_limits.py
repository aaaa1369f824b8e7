"""Admin input that nests without end: refused by the parser with a `file:line` error, and
everything the parser accepts compiles, prints, matches and explains without deep recursion."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.model import AlertSpec, Article, Watchlist
from monitor.query import syntax as q
from monitor.query.matcher import compile_matcher
from monitor.watchlists import WatchlistRegistry, load_watchlists

HOSTILE = {
    "parentheses": "(" * 3000 + "missile" + ")" * 3000,
    "not": "NOT " * 5000 + "missile",
    "minus": "-" * 5000 + "missile",
    "near chain": "missile " + "NEAR/3 launch " * 3000,
    "mixed": "(NOT " * 2000 + "missile" + ")" * 2000,
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_too_deep_queries_are_a_query_error_not_a_recursion_error(text: str) -> None:
    with pytest.raises(q.QueryError, match=f"deeper than {q.MAX_DEPTH} levels"):
        q.parse(text)


def test_the_limit_is_exact() -> None:
    deepest = "(" * q.MAX_DEPTH + "missile" + ")" * q.MAX_DEPTH
    assert q.parse(deepest) == q.Term("missile")
    with pytest.raises(q.QueryError) as caught:
        q.parse("(" + deepest + ")")
    assert caught.value.position == q.MAX_DEPTH  # the opening that went one level too deep
    assert q.parse("NOT " * q.MAX_DEPTH + "x")
    assert q.parse("a" + " NEAR/2 b" * q.MAX_DEPTH)


def _deepest_accepted() -> str:
    """Alternating OR/AND/NOT/NEAR groups, as deep as the parser allows."""

    def nest(levels: int) -> str:
        if levels <= 1:
            return "x"
        return f'(a{levels} OR (b{levels} -c "d e" NEAR/2 f {nest(levels - 2)}))'

    text = nest(q.MAX_DEPTH - 1)  # two levels per group, one more for the -c inside
    q.parse(text)
    return text


SMALL_STACK = 400  # Python frames; the default limit is 1,000


def _in_small_stack(fn: Callable[[], object]) -> object:
    """Run `fn` in a fresh thread under a recursion limit well below the default, so the test
    proves that no step recurses anywhere near Python's limit on accepted input."""
    result: list[object] = []
    failure: list[BaseException] = []

    def run() -> None:
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(SMALL_STACK)
        try:
            result.append(fn())
        except BaseException as exc:  # re-raised in the test thread
            failure.append(exc)
        finally:
            sys.setrecursionlimit(old)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def test_the_deepest_accepted_query_compiles_prints_matches_and_explains() -> None:
    text = _deepest_accepted()
    exclude = "z NOT (" * 20 + "y" + ")" * 20
    watchlist = Watchlist(
        "deep", "deep", "", text, exclude, 0.0, (), AlertSpec(), Path("deep.yaml")
    )
    article = Article("s", "k", "", "a49 launch", "", None, "h")

    def everything() -> tuple[object, ...]:
        ast = q.parse(text)
        assert q.parse(q.to_string(ast)) == ast
        matcher = compile_matcher([watchlist])
        return (
            [m.watchlist_id for m in matcher.match(article)],
            matcher.explain(article, "deep"),
        )

    matched, explanation = _in_small_stack(everything)  # type: ignore[misc]
    assert matched == ["deep"] and explanation is not None


def test_a_3000_parenthesis_watchlist_is_a_file_line_error_on_reload(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("query: missile\n", encoding="utf-8")
    registry = WatchlistRegistry(tmp_path)
    assert registry.reload() == []
    (tmp_path / "deep.yaml").write_text(
        "name: deep\nquery: " + "(" * 3000 + "x" + ")" * 3000 + "\n", encoding="utf-8"
    )
    (tmp_path / "nots.yaml").write_text("query: " + "NOT " * 5000 + "x\n", encoding="utf-8")
    errors = registry.reload()  # raised RecursionError before the limit
    messages = sorted(str(e) for e in errors)
    assert messages == [
        f"{tmp_path / 'deep.yaml'}:2: query: column 51: the query nests deeper than "
        f"{q.MAX_DEPTH} levels (parentheses, NOT, fields and NEAR chains); write it flatter, "
        "e.g. as an OR list or an alias",
        f"{tmp_path / 'nots.yaml'}:1: query: column 201: the query nests deeper than "
        f"{q.MAX_DEPTH} levels (parentheses, NOT, fields and NEAR chains); write it flatter, "
        "e.g. as an OR list or an alias",
    ]
    assert sorted(registry.watchlists) == ["good"]
    found, problems = load_watchlists(tmp_path)
    assert sorted(found) == ["good"] and len(problems) == 2
