"""Run a test module's `parse_feed` calls on both parse paths (MONITOR_PARSER auto and feedparser).

A module opts in with `from tests.support.parsers import each_parser  # noqa: F401`: the autouse
fixture runs each of its tests twice, with the module's own `parse_feed` name bound to the real
`monitor.parse.parse_feed` and `parser=` set. Only the parse-level modules do this, so the suite
does not double; the end-to-end tests choose the path through `MONITOR_PARSER` instead.
"""

from __future__ import annotations

import functools

import pytest

from monitor.parse import feeds

PARSERS = ("auto", "feedparser")


@pytest.fixture(autouse=True, params=PARSERS)
def each_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    parser: str = request.param
    if hasattr(request.module, "parse_feed"):
        bound = functools.partial(feeds.parse_feed, parser=parser)
        monkeypatch.setattr(request.module, "parse_feed", bound)
    return parser


def no_parser_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal must come before either parser: both fail the test if they are reached."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a parser was reached")

    monkeypatch.setattr("feedparser.parse", refuse)
    monkeypatch.setattr(feeds, "read_fast", refuse)
