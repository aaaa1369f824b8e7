"""Digest schedules (`hourly`, `daily 08:00 Asia/Seoul`, `weekly monday 09:00 UTC`): parse and
find the next delivery time. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    every: Literal["hourly", "daily", "weekly"]
    at: dtime
    weekday: int | None
    tz: ZoneInfo


def parse_digest(spec: str) -> DigestSchedule:
    """'hourly', 'daily 08:00 Asia/Seoul', 'weekly monday 09:30 UTC' (zone defaults to UTC)."""
    hint = (
        "write 'hourly', 'daily 08:00 Asia/Seoul' or 'weekly monday 09:00 Europe/Warsaw' "
        "(24-hour time, an IANA time zone, UTC if left out)"
    )
    parts = spec.split()
    if not parts:
        raise ValueError(f"empty digest schedule: {hint}")
    kind = parts[0].lower()
    if kind == "hourly":
        if len(parts) != 1:
            raise ValueError(f"'hourly' takes nothing after it: {hint}")
        return DigestSchedule("hourly", dtime(0, 0), None, ZoneInfo("UTC"))
    if kind not in ("daily", "weekly"):
        raise ValueError(f"unknown digest schedule {spec!r}: {hint}")
    rest = parts[1:]
    weekday = None
    if kind == "weekly":
        if not rest or rest[0].lower()[:3] not in [d[:3] for d in _DAYS]:
            raise ValueError(f"'weekly' needs a day such as monday: {hint}")
        weekday = [d[:3] for d in _DAYS].index(rest[0].lower()[:3])
        rest = rest[1:]
    if not rest or len(rest) > 2 or not re.fullmatch(r"\d{1,2}:\d{2}", rest[0]):
        raise ValueError(f"bad digest schedule {spec!r}: {hint}")
    hour, minute = (int(x) for x in rest[0].split(":"))
    if hour > 23 or minute > 59:
        raise ValueError(f"{rest[0]} is not a time of day: {hint}")
    zone = rest[1] if len(rest) == 2 else "UTC"
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {zone!r}: {hint}") from exc
    return DigestSchedule(kind, dtime(hour, minute), weekday, tz)  # type: ignore[arg-type]


def next_digest_at(spec: str, after: datetime) -> datetime:
    """The first digest time strictly after `after` (naive means UTC), as an aware UTC datetime."""
    sched = parse_digest(spec)
    if after.tzinfo is None:
        after = after.replace(tzinfo=UTC)
    if sched.every == "hourly":
        base = after.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return base + timedelta(hours=1)
    local = after.astimezone(sched.tz)
    day = local.date()
    for _ in range(16):
        if sched.weekday is None or day.weekday() == sched.weekday:
            # Round-trip through UTC so a wall time skipped by DST lands just after the gap.
            wall = datetime.combine(day, sched.at, tzinfo=sched.tz)
            candidate = wall.astimezone(UTC)
            if candidate > after:
                return candidate
        day += timedelta(days=1)
    raise AssertionError("unreachable: a weekly schedule recurs within 8 days")
