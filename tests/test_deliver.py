"""The dispatcher against a real local Slack stand-in: retries, reconciliation, pacing, drain."""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from monitor import logs
from monitor.clock import utcnow
from monitor.deliver import Dispatcher, backoff
from monitor.notify import Outgoing
from monitor.notify.slack import SlackNotifier
from monitor.render import AlertContent
from monitor.settings import Settings
from monitor.store import alerts as outbox
from monitor.store.tables import AlertRow, DestinationRow
from tests.support.alerts import enqueue, item, rows, run, run_due, settings, watchlist
from tests.support.slackfake import Fault, SlackFake

TOKEN = "xoxb-test-token"



@pytest.fixture
def slack() -> Iterator[SlackFake]:
    with SlackFake(TOKEN) as fake:
        yield fake


def cfg_for(fake: SlackFake, **kw: object) -> Settings:
    base: dict[str, object] = {"slack_timeout": 2}
    base.update(kw)
    return settings(slack_bot_token=TOKEN, slack_api_url=fake.url, **base)


def queue(
    engine: Engine,
    cfg: Settings,
    n: int = 1,
    *,
    channels: tuple[str, ...] = ("#nk",),
    start: int = 1,
) -> None:
    items = [item(i, story=(i, True)) for i in range(start, start + n)]
    enqueue(engine, items, [watchlist(slack=channels)], cfg, utcnow())


def test_post_carries_metadata_and_disables_parsing(sq_engine: Engine, slack: SlackFake) -> None:
    cfg = cfg_for(slack)
    queue(sq_engine, cfg)
    assert run(Dispatcher(cfg, sq_engine, owner="a")) == 1
    (post,) = slack.posts()
    args = post.args
    assert args["unfurl_links"] is False and args["unfurl_media"] is False
    assert args["link_names"] is False and args["parse"] == "none"
    assert args["metadata"]["event_type"] == "monitor_alert"
    (row,) = rows(sq_engine)
    assert args["metadata"]["event_payload"]["alert_id"] == str(row.id)
    assert row.status == "sent"
    assert row.provider_ref == f"{slack.channel_id('nk')} {slack.messages[0].ts}"
    with Session(sq_engine) as session:
        dest = session.get(DestinationRow, "slack:#nk")
        assert dest is not None and dest.channel_ref == slack.channel_id("nk")


def test_429_retry_after_is_persisted(sq_engine: Engine, slack: SlackFake) -> None:
    cfg = cfg_for(slack)
    queue(sq_engine, cfg)
    slack.fail_next("chat.postMessage", Fault("429", retry_after=2))
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")
    before = utcnow()
    assert run(dispatcher) == 0
    (row,) = rows(sq_engine)
    assert row.status == "retry" and row.attempts == 0 and row.attempt_started_at is None
    assert row.next_attempt_at >= before + timedelta(seconds=2)
    with Session(sq_engine) as session:
        dest = session.get(DestinationRow, "slack:#nk")
        assert dest is not None and dest.not_before >= before + timedelta(seconds=2)
    assert run(dispatcher, before + timedelta(seconds=1)) == 0
    assert len(slack.posts()) == 1  # nothing sent before Retry-After
    assert run(dispatcher, before + timedelta(seconds=2.5)) == 1
    assert len(slack.messages) == 1


@pytest.mark.parametrize("fault", ["500_after_store", "drop_after_store", "hang_after_store"])
def test_ambiguous_failure_is_reconciled_to_one_message(
    sq_engine: Engine, slack: SlackFake, fault: str
) -> None:
    cfg = cfg_for(slack, slack_timeout=1)
    queue(sq_engine, cfg)
    slack.fail_next("chat.postMessage", Fault(fault, seconds=4))
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")
    assert run(dispatcher) == 0
    (row,) = rows(sq_engine)
    assert row.status == "retry" and row.attempt_started_at is not None, row.last_error
    assert run_due(dispatcher) == 1
    (row,) = rows(sq_engine)
    assert row.status == "sent"
    assert len(slack.posts()) == 1, "re-posted although the first post had landed"
    assert len(slack.by_alert()[str(row.id)]) == 1
    history = slack.posts("conversations.history")
    assert history and history[0].args["channel"] == slack.channel_id("nk")  # id, not name


def test_lost_request_is_posted_again_once(sq_engine: Engine, slack: SlackFake) -> None:
    cfg = cfg_for(slack)
    queue(sq_engine, cfg)
    slack.fail_next("chat.postMessage", Fault("500"))
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")
    assert run(dispatcher) == 0
    assert run_due(dispatcher) == 1
    assert len(slack.posts()) == 2 and len(slack.messages) == 1
    # It looked first (the channel name is resolved; the fake never saw that channel).
    assert len(slack.posts("conversations.list")) == 1


def test_followups_thread_and_reconcile_through_replies(
    sq_engine: Engine, slack: SlackFake
) -> None:
    cfg = cfg_for(slack)
    wl = watchlist()
    enqueue(sq_engine, [item(1, story=(9, True))], [wl], cfg, utcnow())
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")
    assert run(dispatcher) == 1
    enqueue(sq_engine, [item(2, source="b", story=(9, False))], [wl], cfg, utcnow(), source="b")
    edit = item(1, story=None, change="update", content_hash="v2", title="Kim edited")
    enqueue(sq_engine, [edit], [wl], cfg, utcnow())
    slack.fail_next("chat.postMessage", Fault("500_after_store"))
    for _ in range(3):
        run_due(dispatcher)
    parent = slack.messages[0]
    replies = [m for m in slack.messages if m.thread_ts == parent.ts]
    assert len(slack.messages) == 3 and len(replies) == 2
    assert any("Also reported by" in m.text for m in replies)
    assert any(m.text.startswith("Updated:") for m in replies)
    assert slack.posts("conversations.replies"), "thread replies are looked up in the thread"
    assert {r.status for r in rows(sq_engine)} == {"sent"}


def test_followup_waits_for_its_parent(sq_engine: Engine, slack: SlackFake) -> None:
    cfg = cfg_for(slack)
    wl = watchlist()
    enqueue(sq_engine, [item(1, story=(9, True))], [wl], cfg, utcnow())
    enqueue(sq_engine, [item(2, source="b", story=(9, False))], [wl], cfg, utcnow(), source="b")
    slack.fail_next("chat.postMessage", Fault("429", retry_after=1))
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")
    run(dispatcher)
    assert slack.messages == []  # the follow-up did not go out top-level meanwhile
    run_due(dispatcher)
    run_due(dispatcher)
    assert len(slack.messages) == 2 and slack.messages[1].thread_ts == slack.messages[0].ts


@pytest.mark.parametrize("error", ["channel_not_found", "invalid_auth"])
def test_permanent_errors_go_dead_with_the_reason(
    sq_engine: Engine, slack: SlackFake, error: str
) -> None:
    if error == "channel_not_found":
        slack.missing_channels.add("nk")
        cfg = cfg_for(slack)
    else:
        cfg = settings(slack_bot_token="xoxb-wrong", slack_api_url=slack.url, slack_timeout=2)
    queue(sq_engine, cfg)
    assert run(Dispatcher(cfg, sq_engine, owner="a")) == 0
    (row,) = rows(sq_engine)
    assert row.status == "dead" and error in (row.last_error or "")
    run_due(Dispatcher(cfg, sq_engine, owner="a"))
    assert len(slack.posts()) == 1  # never retried


def test_gives_up_by_time_not_by_attempts(sq_engine: Engine, slack: SlackFake) -> None:
    """Ten failures inside the horizon keep the alert; the first failure past it is final."""
    cfg = cfg_for(slack, deliver_retry_hours=1)
    start = utcnow()
    queue(sq_engine, cfg)
    slack.fail_next("chat.postMessage", Fault("500"), times=20)
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")
    run(dispatcher)
    for _ in range(9):
        run_due(dispatcher)
    (row,) = rows(sq_engine)
    assert row.status == "retry" and row.attempts == 10, row.last_error
    assert row.next_attempt_at <= start + timedelta(hours=1, seconds=1)  # never past the horizon
    with Session(sq_engine) as session, session.begin():
        session.execute(
            update(AlertRow).values(first_due_at=start - timedelta(hours=1, seconds=1))
        )
    run_due(dispatcher)
    (row,) = rows(sq_engine)
    assert row.status == "dead" and row.dead_at is not None
    assert "gave up after 1 h (11 attempts): Slack HTTP 500" in (row.last_error or "")


@pytest.mark.slow
def test_one_message_per_second_per_channel(sq_engine: Engine, slack: SlackFake) -> None:
    cfg = cfg_for(slack, slack_channel_interval=1.0)
    queue(sq_engine, cfg, 4, channels=("#busy",))
    queue(sq_engine, cfg, 1, channels=("#quiet",), start=10)
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")

    async def drive() -> None:
        deadline = time.monotonic() + 15
        while len(slack.messages) < 5 and time.monotonic() < deadline:
            await dispatcher.tick()
            await asyncio.sleep(0.05)

    asyncio.run(drive())
    busy = [m.at for m in slack.in_channel("busy")]
    quiet = [m.at for m in slack.in_channel("quiet")]
    assert len(busy) == 4 and len(quiet) == 1
    assert_paced(busy, 1.0)
    assert quiet[0] - busy[0] < 0.5  # another channel is not held back by the pacing


def assert_paced(times: list[float], interval: float) -> None:
    """Sends follow the claim pacing: unpaced, all rows would go out in one tick (gaps near 0).

    The pacing is applied when rows are claimed, so on a loaded machine one send can reach
    Slack late and land next to the following one: a burst of two, which Slack allows. What
    must hold is that no three messages share one interval and the rate over all rows.
    """
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(c - a >= interval for a, c in zip(times, times[2:], strict=False)), gaps
    assert times[-1] - times[0] >= interval * (len(times) - 2), gaps


@pytest.mark.slow
def test_two_dispatchers_share_the_channel_budget(engine: Engine, slack: SlackFake) -> None:
    cfg = cfg_for(slack, slack_channel_interval=1.0)
    queue(engine, cfg, 4, channels=("#busy",))
    first = Dispatcher(cfg, engine, owner="a")
    second = Dispatcher(cfg, engine, owner="b")

    async def drive() -> None:
        deadline = time.monotonic() + 15
        while len(slack.messages) < 4 and time.monotonic() < deadline:
            await asyncio.gather(first.tick(), second.tick())
            await asyncio.sleep(0.05)

    asyncio.run(drive())
    times = [m.at for m in slack.in_channel("busy")]
    assert len(times) == 4 and len(slack.by_alert()) == 4
    assert_paced(times, 1.0)


def test_crash_mid_send_is_reconciled_by_another_process(
    sq_engine: Engine, slack: SlackFake
) -> None:
    cfg = cfg_for(slack)
    queue(sq_engine, cfg, 2)
    # Process A claims both and dies: the first after Slack stored it, the second before.
    with Session(sq_engine) as session, session.begin():
        claims = outbox.claim(
            session, owner="A", now=utcnow(), lease_seconds=0.2, limit=10, slack_interval=0
        )
    assert len(claims) == 2
    notifier = SlackNotifier(TOKEN, base_url=slack.url, timeout=2)
    first = claims[0]
    content = AlertContent.from_json(first.payload_json)

    async def post() -> None:
        await notifier.send(Outgoing(first.id, first.dedup_key, "#nk", content))
        await notifier.aclose()

    asyncio.run(post())
    time.sleep(0.3)  # A's leases run out
    b = Dispatcher(cfg, sq_engine, owner="B")
    sent = run(b) + run_due(b)
    assert sent == 2
    by_alert = slack.by_alert()
    assert [len(by_alert[str(c.id)]) for c in claims] == [1, 1]
    assert len(slack.posts()) == 2
    # A wakes up: its fenced completion must not overwrite B's work.
    with Session(sq_engine) as session, session.begin():
        assert not outbox.complete_sent(session, first, owner="A", provider_ref="x", now=utcnow())


@pytest.mark.slow
def test_drain_returns_fast_and_keeps_the_row_for_reconciliation(
    sq_engine: Engine, slack: SlackFake
) -> None:
    cfg = cfg_for(slack, slack_timeout=20)
    queue(sq_engine, cfg)
    slack.fail_next("chat.postMessage", Fault("hang_after_store", seconds=30))
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")

    async def go() -> float:
        tick = asyncio.create_task(dispatcher.tick())
        await asyncio.sleep(0.5)
        started = time.monotonic()
        await dispatcher.drain(grace=1.0)
        elapsed = time.monotonic() - started
        tick.cancel()
        await asyncio.gather(tick, return_exceptions=True)
        await dispatcher.aclose()
        return elapsed

    assert asyncio.run(go()) < 4
    (row,) = rows(sq_engine)
    assert row.status == "retry" and row.lease_owner is None
    assert row.attempt_started_at is not None  # the next claim looks before posting
    again = Dispatcher(cfg, sq_engine, owner="b")
    assert run(again) == 1
    assert len(slack.by_alert()[str(row.id)]) == 1


def test_webhook_mode(sq_engine: Engine, slack: SlackFake) -> None:
    cfg = settings(slack_webhook_url=slack.webhook_url, slack_timeout=2)
    queue(sq_engine, cfg, 2)
    assert run(Dispatcher(cfg, sq_engine, owner="a")) == 2
    hooks = [m for m in slack.messages if m.channel == "webhook"]
    assert len(hooks) == 2 and all(m.args.get("unfurl_links") is False for m in hooks)
    assert {r.provider_ref for r in rows(sq_engine)} == {"webhook"}


def test_webhook_bad_url_is_dead(sq_engine: Engine, slack: SlackFake) -> None:
    cfg = settings(slack_webhook_url=slack.webhook_url + "x", slack_timeout=2)
    queue(sq_engine, cfg)
    run(Dispatcher(cfg, sq_engine, owner="a"))
    (row,) = rows(sq_engine)
    assert row.status == "dead" and "MONITOR_SLACK_WEBHOOK_URL" in (row.last_error or "")
    assert slack.webhook_url not in (row.last_error or "")


def test_dry_run_changes_nothing(sq_engine: Engine, slack: SlackFake) -> None:
    cfg = cfg_for(slack)
    queue(sq_engine, cfg, 2)
    out = io.StringIO()
    dry = Dispatcher(cfg, sq_engine, owner="a", dry_run=True, console=out)
    assert run(dry) == 2
    assert run(dry) == 0  # shown once, not on every tick of `monitor run --dry-run`
    assert slack.requests == []
    assert {r.status for r in rows(sq_engine)} == {"pending"}
    assert out.getvalue().count("[dry run]") == 2


def test_retry_command_query_requeues_dead(sq_engine: Engine, slack: SlackFake) -> None:
    slack.missing_channels.add("nk")
    cfg = cfg_for(slack)
    queue(sq_engine, cfg)
    run(Dispatcher(cfg, sq_engine, owner="a"))
    slack.missing_channels.clear()
    with Session(sq_engine) as session, session.begin():
        assert outbox.retry_alerts(session, dead=True, now=utcnow()) == 1
    assert run(Dispatcher(cfg, sq_engine, owner="a")) == 1
    assert len(slack.messages) == 1


def test_secrets_never_reach_logs(
    sq_engine: Engine, slack: SlackFake, capfd: pytest.CaptureFixture[str]
) -> None:
    token = "xoxb-SENTINEL-1"
    password = "pw-SENTINEL-2"
    webhook = "https://hooks.slack.com/services/T1/B1/SENTINEL3"
    cfg = settings(
        slack_bot_token=token,
        slack_api_url=slack.url,
        slack_timeout=2,
        smtp_host="127.0.0.1",
        smtp_port=1,
        smtp_username="u",
        smtp_password=password,
        smtp_security="none",
        slack_webhook_url=webhook,
    )
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    logs.configure("DEBUG", "json", stream=stream, secrets=[token, password, webhook])
    try:
        enqueue(sq_engine, [item(1)], [watchlist(email=("a@example.org",))], cfg, utcnow())
        dispatcher = Dispatcher(cfg, sq_engine, owner="a")
        run(dispatcher)
        run_due(dispatcher)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    captured = stream.getvalue() + "".join(capfd.readouterr())
    stored = " ".join(r.last_error or "" for r in rows(sq_engine))
    assert "alert dead" in captured or "will retry" in captured
    for secret in (token, password, "SENTINEL3", "SENTINEL"):
        assert secret not in captured and secret not in stored


def test_backoff_has_full_jitter_and_a_cap() -> None:
    import random

    rng = random.Random(1)
    values = [backoff(3, 2.0, rng) for _ in range(200)]
    assert min(values) >= 1.0 and max(values) <= 8.0 and len(set(values)) > 150
    assert backoff(40, 2.0, rng) <= 3600


def test_claim_is_shared_on_postgresql(engine: Engine) -> None:
    """SKIP LOCKED on PostgreSQL (plain transactions on SQLite): no row is claimed twice."""
    cfg = settings(smtp_host="127.0.0.1", flood_threshold=100)
    enqueue(
        engine,
        [item(i) for i in range(1, 31)],
        [watchlist(slack=(), email=("a@x.org",))],
        cfg,
        utcnow(),
    )
    from concurrent.futures import ThreadPoolExecutor

    def grab(owner: str) -> list[int]:
        got: list[int] = []
        for _ in range(10):
            with Session(engine) as session, session.begin():
                got += [
                    c.id
                    for c in outbox.claim(
                        session, owner=owner, now=utcnow(), lease_seconds=60, limit=3
                    )
                ]
        return got

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(grab, ["a", "b", "c"]))
    flat = [i for r in results for i in r]
    assert len(flat) == len(set(flat)) == 30
    with Session(engine) as session:
        owners = set(session.scalars(select(AlertRow.lease_owner)))  # type: ignore[call-overload]
    assert owners <= {"a", "b", "c"}


def test_check_reports_a_bad_token(slack: SlackFake, sq_engine: Engine) -> None:
    good = Dispatcher(cfg_for(slack), sq_engine, owner="a")
    bad = Dispatcher(
        settings(slack_bot_token="xoxb-nope", slack_api_url=slack.url), sq_engine, owner="b"
    )

    async def go() -> tuple[list[str], list[str]]:
        try:
            return await good.check(), await bad.check()
        finally:
            await good.aclose()
            await bad.aclose()

    ok, problems = asyncio.run(go())
    assert ok == []
    assert len(problems) == 1 and "invalid_auth" in problems[0] and "xoxb-nope" not in problems[0]
    assert slack.posts("auth.test")


def test_failed_lookup_keeps_the_row_marked(sq_engine: Engine, slack: SlackFake) -> None:
    cfg = cfg_for(slack)
    queue(sq_engine, cfg)
    slack.fail_next("chat.postMessage", Fault("500_after_store"))
    slack.fail_next("conversations.history", Fault("500"))
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")
    run(dispatcher)
    run_due(dispatcher)  # the look-up fails: nothing is posted, the mark stays
    (row,) = rows(sq_engine)
    assert row.status == "retry" and row.attempt_started_at is not None
    assert "reconciling" in (row.last_error or "")
    assert run_due(dispatcher) == 1
    assert len(slack.posts()) == 1 and len(slack.messages) == 1


def test_results_are_reported_for_metrics(sq_engine: Engine, slack: SlackFake) -> None:
    cfg = cfg_for(slack)
    queue(sq_engine, cfg, 2)
    seen: list[tuple[str, str]] = []
    slack.fail_next("chat.postMessage", Fault("500_after_store"))
    dispatcher = Dispatcher(cfg, sq_engine, owner="a", on_result=lambda c, o: seen.append((c, o)))
    run(dispatcher)
    run_due(dispatcher)
    assert sorted(seen) == [("slack", "reconciled"), ("slack", "retry"), ("slack", "sent")]


def test_a_backlog_in_one_channel_does_not_hold_up_another(
    sq_engine: Engine, slack: SlackFake
) -> None:
    cfg = cfg_for(slack, slack_channel_interval=5.0, deliver_batch=2)
    queue(sq_engine, cfg, 20, channels=("#busy",))
    queue(sq_engine, cfg, 1, channels=("#quiet",), start=100)
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")
    assert run(dispatcher) == 2
    assert len(slack.in_channel("busy")) == 1 and len(slack.in_channel("quiet")) == 1
    assert run(dispatcher) == 0  # #busy waits for its interval


def test_rows_claimed_during_shutdown_go_back_unchanged(
    sq_engine: Engine, slack: SlackFake
) -> None:
    cfg = cfg_for(slack)
    queue(sq_engine, cfg, 2)
    dispatcher = Dispatcher(cfg, sq_engine, owner="a")
    real_claim = dispatcher._claim

    def claim_then_stop(now: datetime) -> list[outbox.ClaimedAlert]:
        claims = real_claim(now)
        dispatcher.draining = True  # SIGTERM arrives while the claim transaction runs
        return claims

    dispatcher._claim = claim_then_stop  # type: ignore[method-assign]
    assert run(dispatcher) == 0
    assert slack.requests == []
    found = rows(sq_engine)
    assert {(r.status, r.attempts, r.attempt_started_at, r.lease_owner) for r in found} == {
        ("retry", 0, None, None)
    }
