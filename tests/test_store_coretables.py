"""`store/coretables.py` repeats three tables of `tables.py` in SQLAlchemy Core (so a poll runs
without SQLModel's table classes): both must describe the same columns, or a poll would write
what the schema does not have."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from monitor.store import coretables, db, tables


def described(table: Table) -> list[tuple[Any, ...]]:
    """Per column: name, SQL type on both dialects, nullability, key, index and default."""
    out = []
    for column in table.columns:
        default = column.default
        if default is None:
            shown = None
        elif default.is_callable:
            shown = getattr(default.arg, "__wrapped__", default.arg)  # type: ignore[attr-defined]
            shown = getattr(shown, "__name__", shown)
        else:
            shown = default.arg  # type: ignore[attr-defined]
        out.append(
            (
                column.name,
                column.type.compile(sqlite.dialect()),
                column.type.compile(postgresql.dialect()),
                column.nullable,
                column.primary_key,
                bool(column.index),
                shown,
            )
        )
    return out


@pytest.mark.parametrize(
    ("core", "model"),
    [
        (coretables.source, tables.SourceRow.__table__),  # type: ignore[attr-defined]
        (coretables.poll_event, tables.PollEventRow.__table__),  # type: ignore[attr-defined]
        (coretables.synced_file, tables.SyncedFileRow.__table__),  # type: ignore[attr-defined]
    ],
)
def test_core_table_is_the_model_table(core: Table, model: Table) -> None:
    assert core.name == model.name
    assert described(core) == described(model)
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        assert str(CreateTable(core).compile(dialect=dialect)) == str(
            CreateTable(model).compile(dialect=dialect)
        )
        assert sorted(str(CreateIndex(i).compile(dialect=dialect)) for i in core.indexes) == (
            sorted(str(CreateIndex(i).compile(dialect=dialect)) for i in model.indexes)
        )


def test_times_go_in_aware_and_come_back_in_utc(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    seoul = datetime(2026, 12, 2, 18, 0, tzinfo=timezone(timedelta(hours=9)))
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(coretables.source),
                {"id": "s", "url": "https://x.example/f", "next_poll_at": seoul},
            )
            with pytest.raises(Exception, match="naive"):
                conn.execute(
                    insert(coretables.source),
                    {"id": "n", "url": "https://x.example/n", "next_poll_at": datetime(2026, 1, 1)},
                )
        with engine.connect() as conn:
            row = conn.execute(select(coretables.source)).one()
        assert row.next_poll_at == seoul and row.next_poll_at.tzinfo == UTC
        assert row.created_at.tzinfo == UTC  # the column default: now, aware
        assert (row.name, row.kind, row.every_seconds, row.last_status) == ("", "feed", 900, "new")
    finally:
        engine.dispose()
