"""Never lose an alert: outages, the retry horizon, loud dead alerts and failed completions.

Everything runs through the real path: the dispatcher, a migrated SQLite database, the local
Slack stand-in (which refuses connections while `down()`) and the aiosmtpd server. Long outages
run on a clock the test moves: the dispatcher, its leases and breakers, and the Slack stand-in's
message timestamps all read it, so five minutes or a day pass in a moment.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from monitor import logs
from monitor.clock import utcnow
from monitor.deliver import PROBE_CAP_SECONDS, Dispatcher
from monitor.metrics import ServiceMetrics, sample_value
from monitor.settings import Settings
from monitor.store import alerts as outbox
from monitor.store import db
from monitor.store.tables import BreakerRow
from monitor.watchlists import WatchlistRegistry
from monitor.web import WebServer
from tests.support.alerts import enqueue, item, rows, run, settings, watchlist
from tests.support.slackfake import Fault, SlackFake
from tests.support.smtpserver import SmtpServer

TOKEN = "xoxb-test-token"
REPO = Path(__file__).resolve().parents[1]


class SimClock:
    """Time that moves only when the test says so (aware UTC, like `utcnow`)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def epoch(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


TICK = 2  # seconds between two dispatcher ticks in the outage tests (MONITOR_DELIVER_TICK_SECONDS)


def slack_cfg(fake: SlackFake, **kw: object) -> Settings:
    base: dict[str, object] = {
        "slack_bot_token": TOKEN,
        "slack_api_url": fake.url,
        "slack_timeout": 2,
        "deliver_retry_base_seconds": 2.0,
    }
    base.update(kw)
    return settings(**base)


def add_alerts(engine: Engine, cfg: Settings, ids: range, now: datetime) -> None:
    enqueue(engine, [item(i, story=(i, True)) for i in ids], [watchlist()], cfg, now)


@pytest.fixture
def json_logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The service's JSON log lines, as the operator's log pipeline would read them."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, structlog.get_config())
    logs.configure("INFO", "json", stream=stream)
    # No logger may cache this setup: later tests capture logs with their own.
    structlog.configure(cache_logger_on_first_use=False)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]

    try:
        yield lines
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        structlog.configure(**saved[2])


# --- a five-minute outage ----------------------------------------------------------------------


def test_five_minute_slack_outage_delivers_every_alert_once(sq_engine: Engine) -> None:
    """Slack refuses connections for five minutes while alerts keep coming, then recovers.

    Every alert arrives exactly once and none is dead; during the outage the breaker lets one
    probe through at a time, ever more rarely up to once a minute, instead of every alert
    retrying on its own (eight attempts from a 2 s base used to kill them all within minutes).
    """
    sim = SimClock(utcnow())
    with SlackFake(TOKEN, clock=sim.epoch) as slack:
        cfg = slack_cfg(slack)
        attempts: list[tuple[float, str]] = []  # (sim seconds, outcome) of every attempt
        start = sim.epoch()
        dispatcher = Dispatcher(
            cfg,
            sq_engine,
            owner="a",
            clock=sim,
            on_result=lambda _ch, outcome: attempts.append((sim.epoch() - start, outcome)),
        )
        add_alerts(sq_engine, cfg, range(1, 4), sim())
        assert run(dispatcher) == 3  # Slack works

        slack.down()
        outage = sim.epoch() - start
        add_alerts(sq_engine, cfg, range(4, 6), sim())
        next_id = 6
        for second in range(TICK, 301, TICK):
            sim.advance(TICK)
            if second % 30 == 0:  # the desk keeps publishing
                add_alerts(sq_engine, cfg, range(next_id, next_id + 1), sim())
                next_id += 1
            run(dispatcher)
            if second == 150:
                with Session(sq_engine) as session:
                    (breaker,) = session.query(BreakerRow).all()
                    assert breaker.open_until is not None and breaker.failures >= 3
                    assert breaker.key == f"slack:127.0.0.1:{slack.port}"
        recovered = sim.epoch() - start
        slack.up()
        for _ in range(0, int(PROBE_CAP_SECONDS) + 30, TICK):
            sim.advance(TICK)
            run(dispatcher)

    found = rows(sq_engine)
    assert len(found) == next_id - 1 == 15
    assert {r.status for r in found} == {"sent"}, [(r.id, r.status, r.last_error) for r in found]
    by_alert = slack.by_alert()
    assert {str(r.id): len(by_alert.get(str(r.id), [])) for r in found} == {
        str(r.id): 1 for r in found
    }
    during = [t for t, outcome in attempts if outage < t <= recovered]
    assert all(outcome == "retry" for t, outcome in attempts if outage < t <= recovered)
    # The two alerts in flight when Slack went away fail together and open the breaker; then
    # one probe at a time, after 2, 4, 8, 16, 32, 60, 60, … seconds: 8 in five minutes, where
    # every alert retrying on its own would have made dozens of attempts and died.
    first = [t for t in during if t == during[0]]
    probes = [t for t in during if t > during[0]]
    assert len(first) == 2 and 5 <= len(probes) <= 9, during
    gaps = [b - a for a, b in itertools.pairwise([during[0], *probes])]
    assert all(gap >= 2 for gap in gaps) and gaps == sorted(gaps), gaps
    assert max(gaps) <= PROBE_CAP_SECONDS + 1


@pytest.mark.slow
def test_a_send_that_may_have_landed_is_reconciled_across_an_outage(sq_engine: Engine) -> None:
    """The connection drops after Slack stored the message, then Slack is down for five
    minutes: every probe's look-up fails, and when Slack is back the look-up still starts
    from the first, ambiguous attempt, so the message is found instead of posted again."""
    sim = SimClock(utcnow())
    with SlackFake(TOKEN, clock=sim.epoch) as slack:
        cfg = slack_cfg(slack)
        dispatcher = Dispatcher(cfg, sq_engine, owner="a", clock=sim)
        add_alerts(sq_engine, cfg, range(1, 2), sim())
        assert run(dispatcher) == 1  # the channel id is learned
        add_alerts(sq_engine, cfg, range(2, 4), sim())
        slack.fail_next("chat.postMessage", Fault("drop_after_store"))
        run(dispatcher)
        slack.down()
        for _ in range(300):
            sim.advance(1)
            run(dispatcher)
        slack.up()
        for _ in range(int(PROBE_CAP_SECONDS) + 30):
            sim.advance(1)
            run(dispatcher)
    found = rows(sq_engine)
    assert {r.status for r in found} == {"sent"}
    assert sorted(len(v) for v in slack.by_alert().values()) == [1, 1, 1]
    assert len(slack.posts()) == 3  # the dropped post was found, not posted again
    assert slack.posts("conversations.history")


@pytest.mark.slow
def test_replicas_share_one_breaker(engine: Engine) -> None:
    """Three dispatchers (replicas) on one database while Slack is down: the breaker is shared,
    so together they make the attempts one would, and one probe per round, not three."""
    sim = SimClock(utcnow())
    with SlackFake(TOKEN, clock=sim.epoch) as slack:
        cfg = slack_cfg(slack)
        attempts: list[float] = []
        start = sim.epoch()
        replicas = [
            Dispatcher(
                cfg,
                engine,
                owner=name,
                clock=sim,
                on_result=lambda _c, _o: attempts.append(sim.epoch() - start),
            )
            for name in ("a", "b", "c")
        ]
        add_alerts(engine, cfg, range(1, 7), sim())
        slack.down()

        async def all_tick() -> None:
            await asyncio.gather(*(r.tick() for r in replicas))

        for _ in range(0, 130, TICK):
            asyncio.run(all_tick())
            sim.advance(TICK)
        # The six claimed at once fail together; then probes at 2, 6, 14, 30, 62, 122 s.
        probes = [t for t in attempts if t > 0]
        assert attempts.count(0.0) == 6 and len(probes) == len(set(probes)) <= 6, attempts
        slack.up()
        for _ in range(0, int(PROBE_CAP_SECONDS) + 10, TICK):
            sim.advance(TICK)
            asyncio.run(all_tick())
    assert {r.status for r in rows(engine)} == {"sent"}
    assert sorted(len(v) for v in slack.by_alert().values()) == [1] * 6


def test_smtp_outage_opens_one_breaker_for_the_server(sq_engine: Engine) -> None:
    """Mail to three addresses through one SMTP server that is down: one probe per round, not
    one attempt per address; once the server is back every mail goes out once."""
    sim = SimClock(utcnow())
    with SmtpServer() as smtp:
        cfg = settings(
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_security="none",
            smtp_timeout=2,
            deliver_retry_base_seconds=2.0,
        )
        addresses = ("a@example.org", "b@example.org", "c@example.org")
        enqueue(sq_engine, [item(1)], [watchlist(slack=(), email=addresses)], cfg, sim())
        smtp.down()
        outcomes: list[str] = []
        dispatcher = Dispatcher(
            cfg, sq_engine, owner="a", clock=sim, on_result=lambda _c, o: outcomes.append(o)
        )
        for _ in range(0, 120, TICK):
            run(dispatcher)
            sim.advance(TICK)
        assert 3 <= len(outcomes) <= 9, outcomes  # the first batch, then one probe per round
        with Session(sq_engine) as session:
            (breaker,) = session.query(BreakerRow).all()
        assert breaker.key == f"smtp:127.0.0.1:{smtp.port}" and breaker.channel == "email"
        smtp.up()
        for _ in range(0, int(PROBE_CAP_SECONDS) + 10, TICK):
            sim.advance(TICK)
            run(dispatcher)
    assert sorted(m.rcpt_tos[0] for m in smtp.received) == list(addresses)
    assert {r.status for r in rows(sq_engine)} == {"sent"}


# --- the retry horizon and loud dead alerts ----------------------------------------------------


@dataclass
class _Health:
    started: float = field(default_factory=time.time)
    heartbeat: float = field(default_factory=time.monotonic)
    draining: bool = False


@dataclass
class _Service:
    """What the web server reads from the running service, all real objects."""

    settings: Settings
    engine: Engine
    registry: WatchlistRegistry
    metrics: ServiceMetrics
    owner: str = "test-replica"
    health: _Health = field(default_factory=_Health)


async def _status(engine: Engine, metrics: ServiceMetrics) -> tuple[dict[str, Any], str, str]:
    """/status (JSON and HTML) and /metrics of a real listener on this database."""
    token = "status-token"
    cfg = Settings(
        database_url="sqlite://",  # type: ignore[arg-type]
        http_host="127.0.0.1",
        http_port=0,
        admin_token=token,  # type: ignore[arg-type]
    )
    registry = WatchlistRegistry(REPO / "watchlists")
    registry.reload()
    server = WebServer(_Service(cfg, engine, registry, metrics))
    await server.start()
    auth = {"Authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession() as client:
            async with client.get(server.url + "/status?format=json", headers=auth) as resp:
                data = await resp.json()
            async with client.get(server.url + "/status?format=html", headers=auth) as resp:
                html = await resp.text()
            async with client.get(server.url + "/metrics") as resp:
                exposition = await resp.text()
    finally:
        await server.stop()
    return data, html, exposition


def test_past_the_horizon_an_alert_is_dead_loudly(
    sq_engine: Engine, json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    """Slack down for more than a day: each alert gets 24 h from when it first became due,
    then it is dead with an ERROR line, a counted metric and a line on /status. An alert the
    breaker held back the whole time is given up on too; a younger one keeps waiting."""
    sim = SimClock(utcnow())
    t0 = sim()
    with SlackFake(TOKEN, clock=sim.epoch) as slack:
        slack.down()
        cfg = slack_cfg(slack)
        metrics = ServiceMetrics(commit="test")
        metrics.watch_channels(["slack"])
        dispatcher = Dispatcher(
            cfg, sq_engine, owner="a", clock=sim, on_result=metrics.observe_delivery
        )
        add_alerts(sq_engine, cfg, range(1, 2), sim())  # A: tried, fails, opens the breaker
        run(dispatcher)
        sim.advance(1)
        add_alerts(sq_engine, cfg, range(2, 3), sim())  # C: held back by the breaker
        run(dispatcher)
        sim.advance(3600)
        add_alerts(sq_engine, cfg, range(3, 4), sim())  # B: an hour younger
        sim.now = t0 + timedelta(hours=24, seconds=-60)
        run(dispatcher)  # a probe (A): still inside its day
        assert [r.status for r in rows(sq_engine)] == ["retry", "pending", "pending"]
        first = rows(sq_engine)[0]
        assert first.next_attempt_at <= t0 + timedelta(hours=24)  # the last try is at 24 h
        sim.now = t0 + timedelta(hours=24, seconds=1)
        run(dispatcher)  # the next probe (A) fails past its horizon; C passed its horizon too
        a, c, b = rows(sq_engine)
        assert (a.status, c.status, b.status) == ("dead", "dead", "pending")
        assert a.last_error is not None and a.last_error.startswith("gave up after 24 h")
        assert "cannot connect to Slack" in a.last_error
        assert c.last_error is not None and "gave up after 24 h" in c.last_error

        dead_lines = [
            line for line in json_logs() if line.get("event") == "alert dead"
        ]
        assert [(d["alert"], d["level"]) for d in dead_lines] == [(a.id, "error"), (c.id, "error")]
        for line in dead_lines:
            assert line["watchlist"] == "nk" and line["destination"] == "#nk"
            assert line["channel"] == "slack" and "cannot connect to Slack" in line["error"]
            assert TOKEN not in json.dumps(line)

        data, html, exposition = asyncio.run(_status(sq_engine, metrics))
        assert sample_value(exposition, "monitor_alerts_dead_total", {"channel": "slack"}) == 2
        dead = {"channel": "slack", "state": "dead"}
        assert sample_value(exposition, "monitor_alerts", dead) == 2
        assert sample_value(exposition, "monitor_delivery_breakers_open", {"channel": "slack"}) == 1
        assert data["outbox"]["dead"] == 2
        newest = data["outbox"]["newest_dead"]
        assert newest["id"] == c.id and newest["watchlist"] == "nk"
        assert newest["destination"] == "#nk" and "gave up after 24 h" in newest["error"]
        (down,) = data["breakers"]
        assert down["target"] == f"slack:127.0.0.1:{slack.port}" and down["channel"] == "slack"
        assert f"2 dead alerts; newest: #{c.id} (nk → slack #nk" in html
        assert "monitor alerts retry --dead" in html

        # The operator fixes the cause and retries: each dead alert gets a fresh day.
        with Session(sq_engine) as session, session.begin():
            assert outbox.retry_alerts(session, dead=True, now=sim()) == 2
        sim.advance(PROBE_CAP_SECONDS + 1)
        run(dispatcher)
        assert [r.status for r in rows(sq_engine)] == ["retry", "pending", "pending"]
        slack.up()
        sim.advance(PROBE_CAP_SECONDS + 1)
        run(dispatcher)
        run(dispatcher)
    assert {r.status for r in rows(sq_engine)} == {"sent"}
    assert sorted(len(v) for v in slack.by_alert().values()) == [1, 1, 1]


def test_permanent_errors_are_still_dead_at_once(
    sq_engine: Engine, json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    with SlackFake(TOKEN) as slack:
        slack.missing_channels.add("nk")
        cfg = slack_cfg(slack)
        add_alerts(sq_engine, cfg, range(1, 2), utcnow())
        run(Dispatcher(cfg, sq_engine, owner="a"))
    (row,) = rows(sq_engine)
    assert row.status == "dead" and "channel_not_found" in (row.last_error or "")
    (line,) = [x for x in json_logs() if x.get("event") == "alert dead"]
    assert line["level"] == "error" and line["cause"] == "permanent failure"
    assert line["alert"] == row.id and line["watchlist"] == "nk"


# --- a completion the database refuses ---------------------------------------------------------


class DatabaseLock:
    """Another connection holding SQLite's write lock: a real fault, not a mocked one."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.taken = threading.Event()
        self.released = threading.Event()

    def hold(self, seconds: float) -> None:
        """Take the lock now (once), give it back after `seconds`."""
        if self.taken.is_set():
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self.taken.set()

        def release() -> None:
            self.conn.execute("COMMIT")
            self.released.set()

        threading.Timer(seconds, release).start()

    def close(self) -> None:
        self.released.wait(30)
        self.conn.close()


def short_busy_engine(url: str) -> Engine:
    """The service's engine, but a writer gives up on a held lock after 0.1 s, not 30 s."""
    engine = db.make_engine(url)

    @event.listens_for(engine, "connect")
    def _busy(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=100")

    return engine


@pytest.mark.parametrize("channel", ["slack", "email"])
def test_a_completion_refused_once_is_retried_and_delivered_once(
    sqlite_url: str,
    tmp_path: Path,
    channel: str,
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    """The send succeeds, then recording it hits a database lock another connection holds.
    The completion is logged and retried after a short pause, and the alert is delivered once."""
    db.upgrade(sqlite_url)
    engine = short_busy_engine(sqlite_url)
    lock = DatabaseLock(tmp_path / "monitor.db")
    try:
        if channel == "slack":
            with SlackFake(TOKEN, on_post=lambda _m: lock.hold(0.5)) as slack:
                cfg = slack_cfg(slack)
                add_alerts(engine, cfg, range(1, 2), utcnow())
                assert run(Dispatcher(cfg, engine, owner="a")) == 1
            assert len(slack.posts()) == 1 and not slack.posts("conversations.history")
        else:
            with SmtpServer() as smtp:
                smtp.on_receive = lambda _m: lock.hold(0.5)
                cfg = settings(smtp_host=smtp.host, smtp_port=smtp.port, smtp_security="none")
                wl = watchlist(slack=(), email=("desk@example.org",))
                enqueue(engine, [item(1)], [wl], cfg, utcnow())
                assert run(Dispatcher(cfg, engine, owner="a")) == 1
            assert len(smtp.received) == 1
        assert lock.taken.is_set()
        (row,) = rows(engine)
        assert row.status == "sent" and row.lease_owner is None
        refused = [x for x in json_logs() if x.get("event") == "alert sent could not be recorded"]
        assert refused and refused[0]["level"] == "error" and refused[0]["alert"] == row.id
        assert "database is locked" in refused[0]["error"]
    finally:
        lock.close()
        engine.dispose()


@pytest.mark.slow  # the lock is held past the quick retries: three seconds of real time
@pytest.mark.parametrize("who", ["same process", "another replica"])
def test_a_completion_refused_for_long_is_never_sent_again(
    sqlite_url: str, tmp_path: Path, who: str
) -> None:
    """The database refuses the completion longer than the quick retries last. The process
    keeps the result and records it when it can, never claiming the row again meanwhile; a
    replica that takes the row over after the lease looks it up instead of posting it."""
    db.upgrade(sqlite_url)
    engine = short_busy_engine(sqlite_url)
    lock = DatabaseLock(tmp_path / "monitor.db")
    sim = SimClock(utcnow())
    try:
        with SlackFake(TOKEN, clock=sim.epoch, on_post=lambda _m: lock.hold(3.0)) as slack:
            cfg = slack_cfg(slack)
            add_alerts(engine, cfg, range(1, 2), sim())
            first = Dispatcher(cfg, engine, owner="a", clock=sim)
            assert run(first) == 1
            assert first._unrecorded  # sent, not recorded yet
            assert lock.released.wait(10)
            (row,) = rows(engine)
            assert row.status == "sending"
            sim.advance(first.lease_seconds + 1)  # the lease ran out meanwhile
            if who == "another replica":
                assert run(Dispatcher(cfg, engine, owner="b", clock=sim)) == 1
                assert slack.posts("conversations.history")  # looked up, not posted
            run(first)
            run(first)
        assert len(slack.posts()) == 1 and len(slack.messages) == 1
        (row,) = rows(engine)
        assert row.status == "sent" and row.provider_ref == (
            f"{slack.channel_id('nk')} {slack.messages[0].ts}"
        )
        assert not first._unrecorded
    finally:
        lock.close()
        engine.dispose()
