"""Lenient date reading: the spellings of real listing pages and feeds, all to aware UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.parse.dates import parse_date, struct_to_datetime


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("July 27, 2021", utc(2021, 7, 27)),
        ("Chaewon Chung July 27, 2021", utc(2021, 7, 27)),  # a byline with the date
        ("Jeongmin Kim | Won-Gi Jung July 26, 2021", utc(2021, 7, 26)),
        ("Sept. 3, 2021", utc(2021, 9, 3)),
        ("Mar 09, 2025", utc(2025, 3, 9)),
        ("3rd September 2021", utc(2021, 9, 3)),
        ("27 July 2021 14:05", utc(2021, 7, 27, 14, 5)),
        ("July 27, 2021 at 9:05 pm KST", utc(2021, 7, 27, 12, 5)),
        ("July 27, 2021, 12:30 a.m.", utc(2021, 7, 27, 0, 30)),
        ("2021-07-27", utc(2021, 7, 27)),
        ("2021-07-27T10:15:00+09:00", utc(2021, 7, 27, 1, 15)),
        ("2021-07-27T10:15:00Z", utc(2021, 7, 27, 10, 15)),
        ("2021-07-27 10:15", utc(2021, 7, 27, 10, 15)),
        ("2021.07.27 10:15 KST", utc(2021, 7, 27, 1, 15)),
        ("입력 2021/07/25", utc(2021, 7, 25)),
        ("Tue, 27 Jul 2021 09:15:00 +0900", utc(2021, 7, 27, 0, 15)),
        ("Tue, 27 Jul 2021 09:15:00 GMT", utc(2021, 7, 27, 9, 15)),
        ("  July\n  27,\t2021 ", utc(2021, 7, 27)),
        ("", None),
        ("yesterday", None),
        ("07-26 17:02", None),  # no year: unknown rather than guessed
        ("February 30, 2021", None),
        ("2021-13-01", None),
        ("may 2021 be good", None),
    ],
)
def test_parse_date(text: str, expected: datetime | None) -> None:
    assert parse_date(text) == expected


def test_struct_to_datetime() -> None:
    assert struct_to_datetime(time.strptime("2021-07-27 10:15:00", "%Y-%m-%d %H:%M:%S")) == utc(
        2021, 7, 27, 10, 15
    )
    assert struct_to_datetime(None) is None
    assert struct_to_datetime((2021, 7, 27)) is None


@given(st.text(max_size=200))
def test_any_text_gives_none_or_an_aware_datetime(text: str) -> None:
    result = parse_date(text)
    assert result is None or result.utcoffset() is not None
