"""The `source`, `poll_event` and `synced_file` tables in SQLAlchemy Core, for `store/sources.py`.

Claiming sources, recording 304s and syncing the sources file are the statements of every
`monitor poll --once`; with these tables they run without SQLModel and the ORM table classes of
`tables.py` (importing those costs about as much as a poll of 500 unchanged feeds does
otherwise). `tables.py` stays the schema (Alembic, the ORM everywhere else);
`tests/test_store_coretables.py` checks that these tables are the same as its.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect

from monitor.clock import utcnow


class UtcTime(TypeDecorator[datetime]):
    """Aware datetimes in, UTC datetimes out; the same type SQLModel gives `tables.py`'s
    datetime fields (SQLite keeps UTC text without an offset, PostgreSQL a timestamptz)."""

    impl = DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"a naive datetime cannot be stored as UTC: {value!r}")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


metadata = MetaData(  # tables.py's naming convention: the same constraint and index names
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

source = Table(
    "source",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("name", String(300), nullable=False, default=""),
    Column("url", String(2048), nullable=False),
    Column("kind", String(10), nullable=False, default="feed"),
    Column("every_seconds", Integer, nullable=False, default=900),
    Column("selectors_json", Text, nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("disabled_reason", String(500), nullable=True),
    Column("moved_to", String(2048), nullable=True),
    Column("etag", String(1024), nullable=True),
    Column("last_modified", String(200), nullable=True),
    Column("body_hash", String(64), nullable=True),
    Column("last_status", String(40), nullable=False, default="new"),
    Column("last_http_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("error_transient", Boolean, nullable=True),
    Column("failures", Integer, nullable=False, default=0),
    Column("polls", Integer, nullable=False, default=0),
    Column("last_polled_at", UtcTime, nullable=True),
    Column("last_success_at", UtcTime, nullable=True),
    Column("last_new_entries", Integer, nullable=False, default=0),
    Column("next_poll_at", UtcTime, nullable=False, default=utcnow, index=True),
    Column("first_poll_done", Boolean, nullable=False, default=False),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_until", UtcTime, nullable=True),
    Column("lease_epoch", Integer, nullable=False, default=0),
    Column("created_at", UtcTime, nullable=False, default=utcnow),
    Column("updated_at", UtcTime, nullable=False, default=utcnow),
)

poll_event = Table(
    "poll_event",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source_id", String(100), nullable=False),
    Column("polled_at", UtcTime, nullable=False, default=utcnow),
    Column("status", String(40), nullable=False),
    Column("http_status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("new_entries", Integer, nullable=True),
    Column("failures", Integer, nullable=False, default=0),
    Index("ix_poll_event_source_recent", "source_id", "id"),
)

synced_file = Table(
    "synced_file",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("synced_at", UtcTime, nullable=False, default=utcnow),
)
