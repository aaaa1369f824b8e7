"""Poll scheduling maths: intervals, server hints as lower bounds, backoff with jitter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.schedule import next_poll_at, parse_max_age, parse_retry_after

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def _delay(**kwargs: object) -> float:
    return (next_poll_at(NOW, **kwargs) - NOW).total_seconds()  # type: ignore[arg-type]


def test_success_uses_the_interval() -> None:
    assert _delay(every_seconds=900) == 900


@pytest.mark.parametrize(
    ("max_age", "ttl", "expected"),
    [
        (None, None, 600),
        (1800, None, 1800),  # max-age longer than the interval stretches it
        (60, None, 600),  # shorter max-age never speeds us up
        (None, 3600, 3600),  # RSS ttl likewise
        (1200, 3000, 3000),  # the largest lower bound wins
        (0, 0, 600),
        (10**9, None, 86400),  # clamped to the maximum
    ],
)
def test_server_hints_are_lower_bounds(
    max_age: float | None, ttl: int | None, expected: int
) -> None:
    assert _delay(every_seconds=600, max_age_seconds=max_age, ttl_seconds=ttl) == expected


def test_interval_is_clamped() -> None:
    assert _delay(every_seconds=1, min_seconds=10) == 10
    assert _delay(every_seconds=10**7, max_seconds=3600) == 3600


@pytest.mark.parametrize("failures", [1, 2, 3, 5, 8])
def test_backoff_doubles_with_jitter_between_half_and_full(failures: int) -> None:
    full = min(600 * 2**failures, 86400)
    delays = [
        _delay(every_seconds=600, failures=failures, rng=random.Random(seed)) for seed in range(200)
    ]
    assert all(full * 0.5 <= d <= full for d in delays)
    # jitter really spreads failing sources out
    assert max(delays) - min(delays) > full * 0.3


def test_backoff_is_capped_and_huge_failure_counts_do_not_overflow() -> None:
    for failures in (20, 1000, 10**6):
        d = _delay(every_seconds=600, failures=failures, max_seconds=7200, rng=random.Random(1))
        assert 3600 <= d <= 7200


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    a = next_poll_at(NOW, 300, failures=3, rng=random.Random(42))
    b = next_poll_at(NOW, 300, failures=3, rng=random.Random(42))
    assert a == b


def test_never_earlier_than_retry_after() -> None:
    d = _delay(every_seconds=60, failures=1, retry_after_seconds=5000, rng=random.Random(0))
    assert d == 5000
    # on success too (a 200 can carry Retry-After for the next poll)
    assert _delay(every_seconds=60, retry_after_seconds=120) == 120


def test_retry_after_is_capped_at_the_maximum() -> None:
    assert _delay(every_seconds=60, failures=1, retry_after_seconds=10**8) == 86400


def test_naive_now_stays_naive() -> None:
    naive = datetime(2026, 1, 1, 12, 0)
    assert next_poll_at(naive, 60) == datetime(2026, 1, 1, 12, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_seconds": 0},
        {"min_seconds": 100, "max_seconds": 50},
        {"failures": -1},
    ],
)
def test_nonsense_arguments_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        next_poll_at(NOW, 60, **kwargs)  # type: ignore[arg-type]


@given(
    every=st.integers(-10, 10**7),
    failures=st.integers(0, 500),
    retry_after=st.none() | st.floats(0, 10**9),
    max_age=st.none() | st.floats(0, 10**9),
    ttl=st.none() | st.integers(0, 10**9),
    seed=st.integers(0, 2**32),
)
def test_result_always_within_bounds(
    every: int,
    failures: int,
    retry_after: float | None,
    max_age: float | None,
    ttl: int | None,
    seed: int,
) -> None:
    d = _delay(
        every_seconds=every,
        failures=failures,
        retry_after_seconds=retry_after,
        max_age_seconds=max_age,
        ttl_seconds=ttl,
        min_seconds=10,
        max_seconds=86400,
        rng=random.Random(seed),
    )
    assert 10 <= d <= 86400
    if retry_after is not None:
        assert d >= min(retry_after, 86400)


# --- Retry-After ----------------------------------------------------------------------------


def test_retry_after_seconds() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(" 0 ", NOW) == 0.0


def test_retry_after_http_date() -> None:
    when = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(when, NOW) == pytest.approx(90.0)


def test_retry_after_obsolete_date_forms() -> None:
    # RFC 850 and asctime forms are still valid HTTP-dates
    assert parse_retry_after("Sunday, 22-Nov-26 08:05:00 GMT", NOW) == pytest.approx(300.0)
    assert parse_retry_after("Sun Nov 22 08:10:00 2026", NOW) == pytest.approx(600.0)


def test_retry_after_in_the_past_is_zero() -> None:
    assert parse_retry_after(format_datetime(NOW - timedelta(hours=1), usegmt=True), NOW) == 0.0


def test_retry_after_with_naive_now() -> None:
    when = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(when, NOW.replace(tzinfo=None)) == pytest.approx(30.0)


@pytest.mark.parametrize("value", ["", "soon", "-5", "1.5", "tomorrow at noon", "Mon, 99 Foo"])
def test_retry_after_garbage_is_none(value: str) -> None:
    assert parse_retry_after(value, NOW) is None


def test_retry_after_absurdly_large_is_capped() -> None:
    value = parse_retry_after("9" * 400, NOW)
    assert value is not None and value <= 365 * 86400


# --- Cache-Control --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("max-age=600", 600.0),
        ("public, max-age=300, must-revalidate", 300.0),
        ("MAX-AGE = 60", 60.0),
        ('max-age="120"', 120.0),
        ("max-age=0", 0.0),
        ("s-maxage=100", None),
        ("no-cache, max-age=600", None),
        ("max-age=600, no-store", None),
        ("max-age=abc", None),
        ("max-age=-1", None),
        ("", None),
        ("private", None),
    ],
)
def test_parse_max_age(header: str, expected: float | None) -> None:
    assert parse_max_age(header) == expected

