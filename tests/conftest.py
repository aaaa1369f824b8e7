"""Shared fixtures: real SQLite and real PostgreSQL databases, migrated with Alembic.

PostgreSQL tests log in as the `monitor_test` role that `scripts/pg-test-setup` creates (the test
command runs it). Each test gets a fresh database. An unreachable server is an error, never a
skip, wherever the tests run.

Every test that reaches PostgreSQL (through `pg_url`/`pg_available`, or a `"postgresql"`
parameter such as `db_url`'s) is marked `pg` here at collection, so `scripts/test --fast`
(`-m "not slow and not pg"`) deselects it instead of failing without a server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from monitor.store import db

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get(
    "MONITOR_TEST_PG_URL",
    "postgresql+psycopg://monitor_test:monitor_test@127.0.0.1:5432/monitor_test",
)


@pytest.fixture(autouse=True, scope="session")
def _no_cached_loggers() -> Iterator[None]:
    """In tests no structlog logger may cache the configuration it first met: a module-level
    logger cached under one test's `logs.configure` (a CLI run, a JSON-log fixture) ignores a
    later test's `structlog.testing.capture_logs`, which then sees nothing. The service caches
    (speed); the tests configure exactly the same way, minus the cache."""
    import structlog

    from monitor import logs

    real = logs.configure

    def configure(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        structlog.configure(cache_logger_on_first_use=False)

    logs.configure = configure  # type: ignore[assignment]
    try:
        yield
    finally:
        logs.configure = real  # type: ignore[assignment]


PG_FIXTURES = {"pg_url", "pg_available"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if PG_FIXTURES & set(getattr(item, "fixturenames", ())) or "postgresql" in params.values():
            item.add_marker(pytest.mark.pg)


def _pg_admin() -> Engine:
    return create_engine(
        PG_ADMIN_URL,
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=True,  # tests may restart the server (tests/test_replicas.py)
        connect_args={"connect_timeout": 5},
    )


@pytest.fixture(scope="session")
def pg_available() -> bool:
    try:
        engine = _pg_admin()
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception as exc:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); run scripts/pg-test-setup "
            "(the test command does) or set MONITOR_TEST_PG_URL"
        ) from exc


@pytest.fixture
def pg_url(pg_available: bool) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    name = f"mt_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'monitor.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'monitor.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database (Alembic, the real path) on both engines."""
    db.upgrade(db_url)
    eng = db.make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sq_engine(sqlite_url: str) -> Iterator[Engine]:
    """A migrated SQLite database only, for rules that do not depend on the dialect."""
    db.upgrade(sqlite_url)
    eng = db.make_engine(sqlite_url)
    yield eng
    eng.dispose()
