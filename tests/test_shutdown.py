"""SIGTERM: stop claiming, finish or release in-flight work, exit 0 within 10 s, lose nothing.

A real `monitor run` polls slow local feeds (each answer takes 2 s), gets SIGTERM while fetches
are in flight, and must store every answer it received, release every lease it still held, and
leave its alerts to the next start, which delivers each exactly once. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from monitor.store import db
from monitor.store.tables import ReplicaRow, SourceRow
from tests.support.cluster import SLACK_TOKEN, replica_env, start_replica
from tests.support.publisher import WATCHLIST_YAML, Publisher
from tests.support.slackfake import SlackFake
from tests.test_replicas import assert_each_alerted_once, wait_for

pytestmark = pytest.mark.slow  # SIGTERM under load, tens of seconds per database

SOURCES = 40


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    db.upgrade(db_url)
    eng = db.make_engine(db_url)
    yield eng
    eng.dispose()


def count(engine: Engine, *where: object) -> int:
    with Session(engine) as session:
        return int(
            session.scalar(select(func.count()).select_from(SourceRow).where(*where))  # type: ignore[arg-type]
            or 0
        )


def test_sigterm_mid_poll_exits_in_time_and_loses_nothing(
    tmp_path: Path, db_url: str, engine: Engine
) -> None:
    with Publisher(SOURCES, baseline=2) as publisher, SlackFake(SLACK_TOKEN) as slack:
        folder = tmp_path / "watchlists"
        folder.mkdir()
        (folder / "replica-test.yaml").write_text(WATCHLIST_YAML)
        (folder / "sources.yaml").write_text(publisher.sources_yaml(every="10s"))
        env = replica_env(
            database_url=db_url,
            watchlists_dir=folder,
            slack_api_url=slack.url,
            extra={"MONITOR_SHUTDOWN_GRACE_SECONDS": "8"},
        )
        # First run: catch-up poll, then new items, then SIGTERM while slow fetches are in flight.
        first = start_replica("first", env, tmp_path / "logs")
        try:
            first.wait_listening()
            wait_for(
                lambda: count(engine, col(SourceRow.first_poll_done).is_(True)) == SOURCES,
                40,
                "the catch-up poll",
            )
            publisher.delay = 2.0
            items = publisher.publish_many(list(range(0, SOURCES, 4)), matching=True)
            wait_for(
                lambda: count(engine, col(SourceRow.lease_owner) == "first") > 0,
                20,
                "a poll in flight",
                step=0.05,
            )
            answered_before = sum(publisher.fetches.values())
            code, seconds = first.terminate()
            assert code == 0, first.tail()
            assert seconds < 10, seconds
        finally:
            first.close()
        events = [r.get("event") for r in first.records()]
        assert "shutting down: draining in-flight work" in events and "monitor stopped" in events
        assert sum(publisher.fetches.values()) > answered_before  # in-flight fetches finished
        # Nothing held, nothing half-written: no lease left, the replica row is gone.
        assert count(engine, col(SourceRow.lease_owner).isnot(None)) == 0
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(ReplicaRow)) == 0

        # Second run delivers what the first stored or left; every alert exactly once.
        publisher.delay = 0.0
        second = start_replica("second", env, tmp_path / "logs")
        try:
            second.wait_listening()
            assert_each_alerted_once(slack, publisher, items)
            code, seconds = second.terminate()
            assert code == 0 and seconds < 10
        finally:
            second.close()
