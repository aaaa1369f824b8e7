"""normalize_entry keeps terminal control sequences out of stored text, and does not believe
dates far in the future."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor import normalize
from monitor.model import ParsedEntry

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def entry(title: str = "t", summary: str = "s", published: datetime | None = None) -> ParsedEntry:
    return ParsedEntry("g", "https://x.example/1", title, summary, published)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Kim\x1b]0;owned\x07 letter", "Kim]0;owned letter"),  # OSC: retitles the terminal
        ("Kim&#27;[2J&#7; letter", "Kim[2J letter"),  # the same as character references
        ("a\x9b31mb\x85c\x7f", "a31mb c"),  # C1 CSI, NEL (white space) and DEL
        ("nul\x00 byte", "nul byte"),
        ("plain title", "plain title"),
        ("Korean 김정은 ‹quoted›", "Korean 김정은 ‹quoted›"),
    ],
)
def test_titles_never_hold_control_characters(raw: str, clean: str) -> None:
    assert normalize.normalize_entry(entry(title=raw), "s").title == clean


def test_text_keeps_newlines_and_tabs_and_drops_other_controls() -> None:
    article = normalize.normalize_entry(
        entry(summary="<p>line\x1b[31m one</p><p>two\r\x08</p><pre>a\tb</pre>"), "s"
    )
    assert article.text == "line[31m one\ntwo\na b"
    assert normalize.strip_controls("x\r\ny\rz\t\x1b") == "x\ny\nz\t"


def test_a_date_far_in_the_future_becomes_the_time_first_seen() -> None:
    future = datetime(2099, 1, 1, tzinfo=UTC)
    article = normalize.normalize_entry(entry(published=future), "s", now=NOW)
    assert article.published == NOW
    within = NOW + normalize.FUTURE_TOLERANCE  # clock skew is believed
    assert normalize.normalize_entry(entry(published=within), "s", now=NOW).published == within
    past = NOW - timedelta(days=3)
    assert normalize.normalize_entry(entry(published=past), "s", now=NOW).published == past
    assert normalize.normalize_entry(entry(published=None), "s", now=NOW).published is None
    # without `now` (tools reading files) the date is kept as published
    assert normalize.normalize_entry(entry(published=future), "s").published == future
    assert normalize.published_as_of(future, NOW) == NOW
