"""Lenient date reading for feeds and web pages, always to aware UTC datetimes.

Publishers write dates every way imaginable ("July 27, 2021", "2021.07.27 10:00",
"Tue, 27 Jul 2021 09:00:00 +0900", RFC 3339); a date we cannot read is `None`, never an
exception, because an undated article is still an article. Naive times are taken as UTC.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from monitor.clock import as_utc

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_TIME = (
    r"(?:\s*(?:,|at|-|\|)?\s*(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?"
    r"\s*(?P<ampm>[ap]\.?m\.?)?(?:\s*(?P<tz>utc|gmt|z|[+-]\d{2}:?\d{2}|kst|jst|est|edt))?)?"
)
_MDY = re.compile(
    r"\b" + _MONTH + r"\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<year>\d{4})" + _TIME, re.I
)
_DMY = re.compile(
    r"\b(?P<day>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r",?\s+(?P<year>\d{4})" + _TIME,
    re.I,
)
_YMD = re.compile(
    r"\b(?P<year>\d{4})[-./](?P<month>\d{1,2})[-./](?P<day>\d{1,2})\b"
    r"(?:[T\s]+(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.\d+)?)?"
    r"\s*(?P<tz>z|utc|gmt|[+-]\d{2}:?\d{2}|kst|jst)?)?",
    re.I,
)
_RFC822_START = re.compile(r"(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}[a-z]*\s+\d{2,4}\s")
_ZONES = {"utc": 0, "gmt": 0, "z": 0, "kst": 9 * 60, "jst": 9 * 60, "est": -5 * 60, "edt": -4 * 60}


def struct_to_datetime(value: object) -> datetime | None:
    """feedparser's `*_parsed` values are UTC struct_times (or None, or junk from odd feeds)."""
    if not isinstance(value, time.struct_time):
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def _zone_minutes(tz: str | None) -> int:
    if not tz:
        return 0
    tz = tz.lower()
    if tz in _ZONES:
        return _ZONES[tz]
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    return sign * (int(digits[:2]) * 60 + int(digits[2:4]))


def _build(m: re.Match[str], month: int) -> datetime | None:
    groups = m.groupdict()
    hour = int(groups.get("hour") or 0)
    ampm = (groups.get("ampm") or "").replace(".", "").lower()
    if ampm == "pm" and hour < 12:
        hour += 12
    elif ampm == "am" and hour == 12:
        hour = 0
    try:
        local = datetime(
            int(groups["year"]),
            month,
            int(groups["day"]),
            hour,
            int(groups.get("minute") or 0),
            int(groups.get("second") or 0),
            tzinfo=UTC,
        )
        return local - timedelta(minutes=_zone_minutes(groups.get("tz")))
    except (ValueError, OverflowError):
        return None


def _iso(value: str) -> datetime | None:
    try:
        return as_utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError):  # 9999-12-31T23:59:59-01:00 is past datetime.max in UTC
        return None


def _rfc822(value: str) -> datetime | None:
    if _RFC822_START.match(value) is None:
        return None
    try:
        return as_utc(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def parse_date(value: str) -> datetime | None:
    """The first date found in `value` (an attribute, a byline, a feed field), in UTC.

    Never raises: a date that cannot be read, or that lies outside what a datetime holds once
    moved to UTC (year 9999 west of Greenwich, year 1 east of it), is `None`.
    """
    try:
        return _parse_date(value)
    except (ValueError, OverflowError, IndexError, TypeError):
        return None


def _parse_date(value: str) -> datetime | None:
    text = " ".join(value.split())[:300]
    if not text:
        return None
    for reader in (_iso, _rfc822):
        found = reader(text)
        if found is not None:
            return found
    m = _YMD.search(text)
    if m is not None:
        return _build(m, int(m.group("month"))) if 1 <= int(m.group("month")) <= 12 else None
    for pattern in (_MDY, _DMY):
        m = pattern.search(text)
        if m is not None:
            return _build(m, _MONTHS[m.group("month").lower()])
    return None
