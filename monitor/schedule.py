"""When to poll a source next: pure maths over the interval, failures and the server's hints.

The database stores the result (`next_poll_at`), so every replica agrees on what is due.
Servers get to slow us down (Cache-Control max-age, RSS ttl, Retry-After), never to speed us up.
"""

from __future__ import annotations

import math
import random
import re
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from monitor.clock import as_utc

# Backoff doubling stops mattering long before this; it keeps 2**n finite.
_MAX_EXPONENT = 32
# A Retry-After further out than this is nonsense; the scheduler clamps to its own cap anyway.
_MAX_RETRY_AFTER = 365 * 86400.0

_MAX_AGE = re.compile(r'^\s*max-age\s*=\s*"?(\d+)"?\s*$', re.IGNORECASE)


def next_poll_at(
    now: datetime,
    every_seconds: int,
    *,
    failures: int = 0,
    retry_after_seconds: float | None = None,
    max_age_seconds: float | None = None,
    ttl_seconds: int | None = None,
    min_seconds: int = 10,
    max_seconds: int = 86400,
    rng: random.Random | None = None,
) -> datetime:
    """The next poll time after a poll that ended at `now`.

    Success (`failures == 0`): the source's interval, stretched by max-age and ttl (lower
    bounds), clamped to [min_seconds, max_seconds]. Failure: `every * 2**failures`, capped at
    `max_seconds`, times a jitter in [0.5, 1.0] so failing sources spread out, and never before
    Retry-After (itself capped at `max_seconds`, so a hostile header cannot park a source
    for ever).
    """
    if min_seconds <= 0 or max_seconds < min_seconds:
        raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds}, {max_seconds}")
    if failures < 0:
        raise ValueError(f"failures must be >= 0, got {failures}")
    base = _clamp(float(every_seconds), min_seconds, max_seconds)
    if failures == 0:
        delay = max(base, _nonneg(max_age_seconds), _nonneg(ttl_seconds))
    else:
        rand = rng if rng is not None else random.Random()
        backoff = min(base * 2.0 ** min(failures, _MAX_EXPONENT), float(max_seconds))
        delay = backoff * rand.uniform(0.5, 1.0)
    delay = max(delay, _nonneg(retry_after_seconds))
    # Whole microseconds, rounded up: timedelta(seconds=…) rounds half to even, which put a
    # poll 0.5 µs before a Retry-After of 10.9453125 s (found by the property test).
    micros = math.ceil(_clamp(delay, min_seconds, max_seconds) * 1_000_000)
    return now + timedelta(microseconds=min(micros, max_seconds * 1_000_000))


def parse_retry_after(value: str, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110 10.2.3).

    None when the value is neither; a date in the past means 0.
    """
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return min(float(int(text[:12])), _MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # older Pythons returned None instead of raising
        return None
    return min(max((as_utc(when) - as_utc(now)).total_seconds(), 0.0), _MAX_RETRY_AFTER)


def parse_max_age(cache_control: str) -> float | None:
    """The max-age of a Cache-Control header in seconds, or None when absent or invalid.

    no-store and no-cache give None: they say nothing about how often the feed changes.
    """
    max_age: float | None = None
    for directive in cache_control.split(","):
        name = directive.split("=", 1)[0].strip().lower()
        if name in ("no-store", "no-cache"):
            return None
        match = _MAX_AGE.match(directive)
        if match is not None and max_age is None:
            max_age = min(float(int(match.group(1)[:12])), _MAX_RETRY_AFTER)
    return max_age


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _nonneg(value: float | None) -> float:
    return max(float(value), 0.0) if value is not None else 0.0
