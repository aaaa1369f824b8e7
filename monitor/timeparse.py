"""The one duration grammar of every file and flag: `every: 10m` in sources.yaml, `--since 30d`,
`--lookback 1h`. Pure."""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta

_PART = r"(?:(\d+(?:\.\d+)?)\s*{unit})?\s*"
_DURATION = re.compile(r"^\s*" + "".join(_PART.format(unit=u) for u in "wdhms") + "$")
_SECONDS = (604800, 86400, 3600, 60, 1)
HINT = "write e.g. 90s, 10m, 1h30m, 2d or 1w"


def parse_duration(text: str) -> timedelta:
    """'10m', '1h30m', '45s', '2d', '1w', '1.5h' → a timedelta; a bare number means seconds."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return timedelta(seconds=float(value))
    found = _DURATION.match(value)
    if not value or not found or not any(found.groups()):
        raise ValueError(f"{text!r} is not a duration: {HINT}")
    return timedelta(
        seconds=sum(float(g) * s for g, s in zip(found.groups(), _SECONDS, strict=True) if g)
    )


def duration_seconds(text: str) -> int:
    """A duration in whole seconds (polling intervals)."""
    return int(parse_duration(text).total_seconds())


def duration_arg(text: str) -> timedelta:
    """argparse `type=` for duration flags: a clear usage error instead of a traceback."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ago(text: str | None, now: datetime) -> datetime | None:
    """`--since 2d` → the time that long before `now` (None when the flag was not given)."""
    return None if not text else now - parse_duration(text)
