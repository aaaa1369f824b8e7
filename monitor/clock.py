"""The one clock of the service: aware UTC everywhere.

SQLite hands datetimes back naive (it stores no zone) and PostgreSQL hands them back aware, so
every value read from a database or a file goes through `as_utc` before it is compared.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Aware UTC now."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """`value` as aware UTC; a naive value is taken to be UTC already (that is how we store it)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)
