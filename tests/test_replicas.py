"""Several `monitor run` processes on one PostgreSQL: shared work, no double alert, no loss.

Real processes, a real PostgreSQL, 200 local feeds that keep publishing
(tests/support/publisher.py) and the Slack Web API stand-in. The outage test stops and starts
the machine's PostgreSQL cluster itself (and always restarts it).
"""

from __future__ import annotations

import itertools
import random
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from monitor.metrics import sample_value
from monitor.store import db
from monitor.store.tables import AlertRow, SourceRow
from tests.support.cluster import SLACK_TOKEN, Replica, replica_env, start_replica
from tests.support.publisher import WATCHLIST_YAML, Item, Publisher
from tests.support.slackfake import SlackFake

pytestmark = pytest.mark.slow  # several `monitor run` processes, kills and a PostgreSQL restart

SOURCES = 200
INTERVAL = "10s"


def wait_for(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    with Publisher(SOURCES, baseline=2) as pub:
        yield pub


@pytest.fixture
def slack() -> Iterator[SlackFake]:
    with SlackFake(SLACK_TOKEN) as fake:
        yield fake


@pytest.fixture
def config_dir(tmp_path: Path, publisher: Publisher) -> Path:
    folder = tmp_path / "watchlists"
    folder.mkdir()
    (folder / "replica-test.yaml").write_text(WATCHLIST_YAML)
    (folder / "sources.yaml").write_text(publisher.sources_yaml(every=INTERVAL))
    return folder


class Cluster:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = env
        self.replicas: dict[str, Replica] = {}

    def start(self, *names: str) -> list[Replica]:
        started = [start_replica(n, self.env, self.tmp / "logs") for n in names]
        for replica in started:
            replica.wait_listening()
            self.replicas[replica.name] = replica
        return started

    def close(self) -> None:
        for replica in self.replicas.values():
            replica.close()


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, config_dir: Path, slack: SlackFake) -> Iterator[Cluster]:
    db.upgrade(pg_url)
    env = replica_env(
        database_url=pg_url,
        watchlists_dir=config_dir,
        slack_api_url=slack.url,
        extra={"MONITOR_LEASE_SECONDS": "6", "MONITOR_SHUTDOWN_GRACE_SECONDS": "6"},
    )
    group = Cluster(tmp_path, env)
    try:
        yield group
    finally:
        group.close()


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    eng = db.make_engine(pg_url)
    yield eng
    eng.dispose()


def polled_sources(engine: Engine) -> int:
    with Session(engine) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(SourceRow)
                .where(col(SourceRow.first_poll_done).is_(True))
            )
            or 0
        )


def alerts_by_status(engine: Engine) -> Counter[str]:
    with Session(engine) as session:
        return Counter(
            {
                str(status): int(n)
                for status, n in session.execute(
                    select(col(AlertRow.status), func.count()).group_by(col(AlertRow.status))
                )
            }
        )


def posted_guids(slack: SlackFake) -> Counter[str]:
    """How many Slack posts mention each published item."""
    counts: Counter[str] = Counter()
    for message in slack.messages:
        text = message.text + str(message.blocks)
        for guid in set(_guids(text)):
            counts[guid] += 1
    return counts


def _guids(text: str) -> list[str]:
    return re.findall(r"\bs\d+-n\d+\b", text)


def publish_rounds(
    publisher: Publisher, rounds: int, per_round: int, pause: float, *, during: Callable[[int], Any]
) -> list[Item]:
    rng = random.Random(11)
    items: list[Item] = []
    for number in range(rounds):
        sources = rng.sample(range(SOURCES), per_round)
        items += publisher.publish_many(sources[:-1], matching=True)
        publisher.publish_many(sources[-1:], matching=False)
        during(number)
        time.sleep(pause)
    return items


def assert_each_alerted_once(slack: SlackFake, publisher: Publisher, items: list[Item]) -> None:
    wanted = {item.guid for item in items}
    wait_for(
        lambda: wanted <= set(posted_guids(slack)),
        timeout=75,
        what=f"{len(wanted)} alerts in Slack",
    )
    time.sleep(2)  # a duplicate would arrive now
    counts = posted_guids(slack)
    doubles = {g: n for g, n in counts.items() if n > 1}
    assert not doubles, f"posted more than once: {doubles}"
    unexpected = set(counts) - wanted
    baseline_or_noise = [publisher.published[g] for g in unexpected if g in publisher.published]
    assert not baseline_or_noise, f"alerts nobody should get: {baseline_or_noise[:5]}"


def assert_no_double_polls(publisher: Publisher, min_gap: float) -> None:
    for source, times in publisher.fetch_times.items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap >= min_gap for gap in gaps), (source, gaps)


def leases_of(engine: Engine, owner: str) -> int:
    with Session(engine) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(SourceRow)
                .where(col(SourceRow.lease_owner) == owner)
            )
            or 0
        )


def pause_holding_leases(replica: Replica, engine: Engine, timeout: float = 20) -> None:
    """SIGSTOP the replica at a moment it holds source leases (checked after the stop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if leases_of(engine, replica.name):
            replica.signal(signal.SIGSTOP)
            time.sleep(0.1)
            if leases_of(engine, replica.name):
                return
            replica.signal(signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError(f"{replica.name} never held a lease to be paused with")


def test_three_replicas_share_the_sources_and_alert_once(
    cluster: Cluster, publisher: Publisher, slack: SlackFake, engine: Engine
) -> None:
    replicas = cluster.start("r1", "r2", "r3")
    wait_for(lambda: polled_sources(engine) == SOURCES, 40, "the catch-up poll of 200 sources")
    assert not slack.messages, "the first poll of a source must alert nobody"
    publisher.reset_counts()

    items = publish_rounds(publisher, rounds=5, per_round=5, pause=3, during=lambda _n: None)
    assert_each_alerted_once(slack, publisher, items)
    assert_no_double_polls(publisher, min_gap=5.0)
    assert alerts_by_status(engine)["sent"] == len(items)

    # Every replica did part of the polling.
    for replica in replicas:
        status, body = replica.get("/metrics")
        assert status == 200
        assert sample_value(body, "monitor_feed_fetches_total", {"outcome": "not_modified"}) > 0
        assert sample_value(body, "monitor_replicas_alive") == 3
    status, data = replicas[0].get_json("/status?format=json")
    assert status == 200 and {r["name"] for r in data["replicas"]} == {"r1", "r2", "r3"}
    assert data["outbox"]["waiting"] == 0

    for replica in replicas:
        code, seconds = replica.terminate()
        assert code == 0 and seconds < 10, (replica.name, code, seconds, replica.tail())
    with Session(engine) as session:
        leased = session.scalar(
            select(func.count())
            .select_from(SourceRow)
            .where(col(SourceRow.lease_owner).isnot(None))
        )
    assert leased == 0


def test_killed_and_paused_replicas_neither_lose_nor_double(
    cluster: Cluster, publisher: Publisher, slack: SlackFake, engine: Engine
) -> None:
    r1, r2, r3 = cluster.start("r1", "r2", "r3")
    wait_for(lambda: polled_sources(engine) == SOURCES, 40, "the catch-up poll of 200 sources")

    def chaos(round_number: int) -> None:
        if round_number == 1:
            r1.signal(signal.SIGKILL)
        if round_number == 2:
            pause_holding_leases(r2, engine)
        if round_number == 5:  # stopped for ~9 s, past its 6 s lease
            r2.signal(signal.SIGCONT)

    items = publish_rounds(publisher, rounds=7, per_round=4, pause=3, during=chaos)
    assert r1.proc.wait(5) == -signal.SIGKILL
    assert_each_alerted_once(slack, publisher, items)
    assert r2.proc.poll() is None and r3.proc.poll() is None
    status, _ = r2.get("/livez")
    assert status == 200  # the paused replica recovered
    # It woke up holding leases that others had taken over: its late results were refused.
    dropped = [r for r in r2.records() if "lease lost" in str(r.get("event"))]
    assert dropped, "the paused replica should have found its leases fenced off"
    for replica in (r2, r3):
        code, seconds = replica.terminate()
        assert code == 0 and seconds < 10, (replica.name, replica.tail())


def pg_cluster(action: str) -> None:
    subprocess.run(["pg_ctlcluster", "15", "main", action], check=True, timeout=60)


def test_health_follows_the_database_going_down_and_back(
    cluster: Cluster, publisher: Publisher, slack: SlackFake, engine: Engine
) -> None:
    (replica,) = cluster.start("solo")
    wait_for(lambda: polled_sources(engine) == SOURCES, 40, "the catch-up poll")
    wait_for(lambda: replica.get("/readyz")[0] == 200, 10, "readiness")
    engine.dispose()
    pg_cluster("stop")
    try:
        items = publisher.publish_many([1, 2, 3], matching=True)
        wait_for(lambda: replica.get("/readyz", timeout=8)[0] == 503, 15, "/readyz 503")
        status, ready = replica.get_json("/readyz", timeout=8)
        assert ready["checks"]["database"]["ok"] is False
        assert ready["checks"]["watchlists"]["ok"] is True
        assert replica.get("/livez")[0] == 200  # no restart storm
        status, body = replica.get("/metrics", timeout=8)
        assert status == 200 and sample_value(body, "monitor_database_up") == 0
        status, data = replica.get_json("/status?format=json", timeout=8)
        assert status == 503 and data["database"]["ok"] is False
        time.sleep(3)  # a few ticks fail while the database is away
        assert replica.proc.poll() is None
    finally:
        pg_cluster("start")
    wait_for(lambda: replica.get("/readyz", timeout=8)[0] == 200, 45, "readiness after restart")
    status, body = replica.get("/metrics")
    assert sample_value(body, "monitor_database_up") == 1
    assert_each_alerted_once(slack, publisher, items)
    code, seconds = replica.terminate()
    assert code == 0 and seconds < 10


def test_second_replica_on_one_sqlite_file_refuses(
    tmp_path: Path, config_dir: Path, slack: SlackFake
) -> None:
    env = replica_env(
        database_url=f"sqlite:///{tmp_path / 'monitor.db'}",
        watchlists_dir=config_dir,
        slack_api_url=slack.url,
    )
    first = start_replica("first", env, tmp_path / "logs")
    try:
        first.wait_listening()
        second = start_replica("second", env, tmp_path / "logs")
        code = second.proc.wait(30)
        assert code != 0
        assert "SQLite is single-replica" in second.tail()
        second.close()
        assert first.proc.poll() is None
        code, seconds = first.terminate()
        assert code == 0 and seconds < 10
    finally:
        first.close()
