"""Engines for SQLite (embedded, single replica) and PostgreSQL (several replicas), and Alembic.

SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE` for every transaction, because a
deferred transaction that reads first and writes later can fail with SQLITE_BUSY in WAL mode
whatever the timeout (SQLite documents this for WAL mode).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from monitor.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["Engine", "Session"]  # the types, for modules outside store/ that pass them on

REPO_ROOT = Path(__file__).resolve().parents[2]
ADVISORY_LOCK_ID = 0x6D6F6E69  # "moni": migrations under pg_advisory_lock


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for in-memory databases)."""
    parsed = make_url(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        return None
    return Path(parsed.database)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Build an engine with the per-dialect settings the service relies on."""
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        echo=echo,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={
            "connect_timeout": 5,
            "options": "-c statement_timeout=30000 -c lock_timeout=10000 "
            "-c idle_in_transaction_session_timeout=60000",
        },
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, control transactions so BEGIN IMMEDIATE is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # 32 MiB page cache (default 2 MiB): the story band index stays hot at 100k articles.
        cursor.execute("PRAGMA cache_size=-32768")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_engine(settings: Settings) -> Engine:
    return make_engine(settings.db_url)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One transaction, committed when the block ends (rolled back when it raises).

    For work that spans several store modules and must be atomic, such as one poll's write
    (articles, stories, outbox rows and the source's fenced completion): outside `store/` the
    session is only handed to store functions.
    """
    with Session(engine) as session, session.begin():
        yield session


# --- migrations -------------------------------------------------------------------------------


def migrations_dir() -> Path:
    """Where the Alembic scripts are: beside the package in a checkout, or in the working dir."""
    for candidate in (REPO_ROOT / "migrations", Path.cwd() / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("cannot find the migrations/ folder (run from the project directory)")


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["monitor_url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations; on PostgreSQL under an advisory lock so replicas never race."""
    from alembic import command

    engine = make_engine(url)
    try:
        if is_sqlite(engine):
            command.upgrade(alembic_config(url), revision)
            return
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": ADVISORY_LOCK_ID})
            try:
                cfg = alembic_config(url)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": ADVISORY_LOCK_ID})
                conn.commit()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    """The newest migration, read from the scripts' `revision`/`down_revision` assignments.

    Every start checks the schema, and Alembic's own script loader costs more than the rest of
    `monitor poll --once`'s start-up (it imports Mako and runs every migration module); the
    migrations are one linear chain, so the head is the revision no other one points to.
    `tests/test_startup.py` checks this against Alembic's `ScriptDirectory`."""
    revisions: set[str] = set()
    pointed_to: set[str] = set()
    for path in (migrations_dir() / "versions").glob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.AnnAssign | ast.Assign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {t.id for t in targets if isinstance(t, ast.Name)}
                if not names & {"revision", "down_revision"}:
                    continue
                value = ast.literal_eval(node.value)
                if "revision" in names:
                    revisions.add(str(value))
                elif "down_revision" in names and value is not None:
                    pointed_to.update([value] if isinstance(value, str) else value)
    heads = sorted(revisions - pointed_to)
    if len(heads) > 1:
        raise RuntimeError(f"the migrations have several heads: {heads}")
    return heads[0] if heads else None


def ping(engine: Engine) -> None:
    """Raise unless the database answers a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def current_revision(engine: Engine) -> str | None:
    """The schema's revision from Alembic's version table (None before the first upgrade)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(rows) > 1:
        raise RuntimeError(f"the database has several schema heads: {sorted(rows)}")
    return rows[0] if rows else None


def schema_is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
